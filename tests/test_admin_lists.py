"""Lists in the browser: uploading a supporter file, checking it, importing it in the background."""

from __future__ import annotations

import codecs
import csv
import io
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlmodel import col, select

from mailer.config import Settings
from mailer.store import Database, Event, MailingList, Membership, Supporter, SupporterStatus
from mailer.supporters import import_csv
from mailer.supporters.upload import MAX_LINE_BYTES
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import make_settings
from tests.factories import Person, add_people

# A spreadsheet's "CSV UTF-8" export in a European locale: semicolons, a BOM, CRLF.
SPREADSHEET = (
    codecs.BOM_UTF8
    + (
        "E-mail;First Name;Last Name;ZIP;Language;Chapter\r\n"
        "ana@example.org;Ana;Nguyễn;94110;Spanish;Oakland\r\n"
        'eve@example.org;"=HYPERLINK(""evil.example"",""click"")";;;;\r\n'
        "bo@example.org;Bo;Lee;10001;en;Bronx\r\n"
        "not-an-address;Cy;Doe;;;\r\n"
        "ANA@example.org;Ana again;;;;\r\n"
        ";Nobody;;;;\r\n"
        "gone@example.org;Gone;;;;\r\n"
    ).encode()
)


def settings_for(tmp_path: Path, **imports: object) -> Settings:
    sections: dict[str, dict[str, object]] = {
        "import": {"upload_dir": str(tmp_path / "uploads"), **imports}
    }
    return make_settings(**sections)  # type: ignore[arg-type]


def serve_site(db: Database, tmp_path: Path) -> Iterator[tuple[str, Database, Path]]:
    add_users(db)
    add_people(db, "old", [Person("gone@example.org", status=SupporterStatus.UNSUBSCRIBED)])
    with serve(db, settings_for(tmp_path)) as url:
        yield url, db, tmp_path / "uploads"


@pytest.fixture
def site(db: Database, tmp_path: Path) -> Iterator[tuple[str, Database, Path]]:
    """On SQLite and PostgreSQL: for the tests that store supporters."""
    yield from serve_site(db, tmp_path)


@pytest.fixture
def sqlite_site(sqlite_db: Database, tmp_path: Path) -> Iterator[tuple[str, Database, Path]]:
    """On SQLite only: for the tests of what is refused before anything is stored."""
    yield from serve_site(sqlite_db, tmp_path)


def upload(client: httpx.Client, csrf: str, name: str, data: bytes) -> httpx.Response:
    return client.post(
        "/admin/lists/upload",
        data={"csrf": csrf},
        files={"file": (name, data, "text/csv")},
    )


def token_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    found = re.search(r"/admin/lists/uploads/([A-Za-z0-9_-]{22})", response.headers["location"])
    assert found is not None
    return found.group(1)


def imported(client: httpx.Client, csrf: str, token: str, list_name: str) -> dict[str, object]:
    """Confirm the import, then wait for it through the status endpoint."""
    started = client.post(
        f"/admin/lists/uploads/{token}/import", data={"csrf": csrf, "list": list_name}
    )
    assert started.status_code == 303, started.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state: dict[str, object] = client.get(f"/admin/lists/uploads/{token}/status").json()
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def members(db: Database, list_name: str) -> set[str]:
    with db.session() as session:
        return set(
            session.exec(
                select(Supporter.email)
                .join(Membership, col(Membership.supporter_id) == col(Supporter.id))
                .join(MailingList, col(MailingList.id) == col(Membership.list_id))
                .where(MailingList.name == list_name)
            )
        )


def leftovers(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def test_a_spreadsheet_export_is_shown_then_imported_like_the_cli_does(
    site: tuple[str, Database, Path], tmp_path: Path
) -> None:
    url, db, root = site
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        token = token_of(upload(client, csrf, "members (export).csv", SPREADSHEET))
        page = client.get(f"/admin/lists/uploads/{token}")
        assert page.status_code == 200
        for shown in (
            "UTF-8 with byte-order mark",
            "semicolon",
            "→ email",
            "→ first_name",
            "custom: chapter",
            "Nguyễn",
            "Import 7 rows",
        ):
            assert shown in page.text
        # The formula is shown as text, escaped, never as markup.
        assert "=HYPERLINK(&#34;evil.example&#34;" in page.text
        assert members(db, "members") == set()  # nothing before the organizer confirms

        state = imported(client, csrf, token, "members")
        assert state["state"] == "done", state
        assert state["summary"] == {
            "rows": 7,
            "added": 3,
            "updated": 1,
            "unchanged": 0,
            "duplicates": 1,
            "rejected": 2,
            "new_members": 4,
        }
        done = client.get(f"/admin/lists/uploads/{token}")
        assert "Imported into members" in done.text and "duplicate of line 2" in done.text
        assert 'http-equiv="refresh"' not in done.text

        rejects = client.get(f"/admin/lists/uploads/{token}/rejects.csv")
        assert rejects.status_code == 200
        assert rejects.headers["content-type"].startswith("text/csv")
        assert "members%20%28export%29-rejected.csv" in rejects.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(rejects.content.decode("utf-8-sig"))))
        assert rows[0][:2] == ["line", "reason"]
        assert [r[:2] for r in rows[1:]] == [
            ["5", rows[1][1]],
            ["6", "duplicate of line 2"],
            ["7", "email: missing"],
        ]
        assert rows[1][1].startswith("email: ")
        assert not (root / token / "upload.csv").exists()  # the file is not kept

        again = client.post(
            f"/admin/lists/uploads/{token}/import", data={"csrf": csrf, "list": "x"}
        )
        assert "imported already" in client.get(again.headers["location"]).text
        listing = client.get("/admin/lists").text
        assert re.search(r"<td>members</td><td class=\"num\">4</td>", listing)
        assert re.search(r"<td>old</td><td class=\"num\">1</td>", listing)

    assert members(db, "members") == {
        "ana@example.org",
        "bo@example.org",
        "gone@example.org",
        "eve@example.org",
    }
    with db.session() as session:
        gone = session.exec(select(Supporter).where(Supporter.email == "gone@example.org")).one()
        assert gone.status is SupporterStatus.UNSUBSCRIBED  # suppression is kept
        ana = session.exec(select(Supporter).where(Supporter.email == "ana@example.org")).one()
        assert (ana.language, ana.custom) == ("es", {"chapter": "Oakland"})
        events = session.exec(select(Event).where(Event.action == "list.imported")).all()
    assert [(e.actor, e.detail["file"], e.detail["list"]) for e in events] == [
        ("organizer", "members (export).csv", "members")
    ]
    # The CLI's importer, given the same file, agrees row for row.
    copy = tmp_path / "same.csv"
    copy.write_bytes(SPREADSHEET)
    cli = import_csv(db, copy, "cli-list")
    assert (cli.rows, cli.added, cli.duplicates, cli.rejected) == (7, 0, 1, 2)
    assert members(db, "cli-list") == members(db, "members")


def test_a_windows_1252_file_is_refused_naming_the_line(
    sqlite_site: tuple[str, Database, Path],
) -> None:
    url, db, root = sqlite_site
    data = "email,first_name\r\nana@example.org,Ana\r\njose@example.org,José\r\n".encode("cp1252")
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        refused = upload(client, csrf, "excel.csv", data)
    assert refused.status_code == 400
    assert "excel.csv, line 3: not UTF-8 text (byte 0xe9)" in refused.text
    assert "Windows-1252" in refused.text and "CSV UTF-8" in refused.text
    assert leftovers(root) == []
    assert members(db, "excel") == set()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04" + bytes(range(256)) * 4, "ZIP archive"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "PNG image"),
        (b"email\n" + b"\0" * 5000, "NUL bytes"),
        ("email\n".encode("utf-16"), "UTF-16"),
        (b"email,note\na@example.org," + b"x" * (MAX_LINE_BYTES + 10) + b"\n", "line 2 is longer"),
        (b"", "the file is empty"),
        (b"Dear friends,\nthe statement is below.\n", "no email column"),
        (b'email,name\n"a@example.org,Ana\n' + b"b@example.org,Bo\n" * 3, "Import"),
    ],
    ids=["xlsx", "png", "nuls", "utf16", "huge-line", "empty", "letter", "open-quote"],
)
def test_hostile_files_get_a_clear_message_and_leave_nothing(
    sqlite_site: tuple[str, Database, Path], data: bytes, message: str
) -> None:
    url, _db, root = sqlite_site
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        answer = upload(client, csrf, "file.csv", data)
        if answer.status_code == 303:
            answer = client.get(answer.headers["location"])
    assert message in answer.text
    if message == "Import":  # a broken quote is one rejected record, as in the CLI
        assert answer.status_code == 200
        return
    assert answer.status_code == 400
    assert leftovers(root) == []


def test_nul_bytes_inside_a_cell_are_removed_as_the_cli_does(
    site: tuple[str, Database, Path],
) -> None:
    url, db, _ = site
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        token = token_of(upload(client, csrf, "n.csv", b"email,first_name\na@example.org,A\0na\n"))
        assert imported(client, csrf, token, "n")["state"] == "done"
    with db.session() as session:
        assert (
            session.exec(
                select(Supporter.first_name).where(Supporter.email == "a@example.org")
            ).one()
            == "Ana"
        )


def test_a_file_over_the_cap_is_refused_and_not_kept(db: Database, tmp_path: Path) -> None:
    add_users(db)
    root = tmp_path / "uploads"
    with (
        serve(db, settings_for(tmp_path, max_upload_mb=1)) as url,
        httpx.Client(base_url=url) as client,
    ):
        csrf = sign_in(client, "organizer")
        big = b"email\n" + b"someone@example.org\n" * 60_000  # 1.2 MB
        refused = upload(client, csrf, "big.csv", big)
        assert refused.status_code == 413
        assert "too large: at most 1 MB" in refused.text

        # Streamed without a length: stopped once the file passes the cap.
        def body() -> Iterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + csrf.encode()
            yield b"\r\n--b\r\n"
            yield b'Content-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\n'
            for _ in range(30):
                yield b"email\n" + b"x@example.org\n" * 5000
            yield b"\r\n--b--\r\n"

        streamed = client.post(
            "/admin/lists/upload",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
    assert leftovers(root) == [] or all(p.is_dir() for p in leftovers(root))


def test_viewers_may_not_upload_and_a_wrong_token_writes_nothing(
    sqlite_site: tuple[str, Database, Path],
) -> None:
    url, _db, root = sqlite_site
    with httpx.Client(base_url=url) as client:
        assert client.get("/admin/lists").status_code == 303  # signed out: to the sign-in page
        csrf = sign_in(client, "viewer")
        page = client.get("/admin/lists")
        assert page.status_code == 200 and "Upload supporters" not in page.text
        assert upload(client, csrf, "a.csv", SPREADSHEET).status_code == 403
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        assert "Upload supporters" in client.get("/admin/lists").text
        forged = upload(client, "forged-token", "a.csv", SPREADSHEET)
        assert forged.status_code == 403
        assert client.get("/admin/lists/uploads/../../etc").status_code == 404
        assert client.get("/admin/lists/uploads/" + "A" * 22).status_code == 404
    assert leftovers(root) == [] or all(p.is_dir() for p in leftovers(root))


def test_an_upload_is_streamed_to_disk_not_held_in_memory(
    sqlite_db: Database, tmp_path: Path
) -> None:
    add_users(sqlite_db)
    rows = 150_000
    data = b"email,first_name,zip\n" + b"".join(
        b"supporter%06d@example.org,Name%d,94%03d\n" % (i, i, i % 1000) for i in range(rows)
    )
    assert len(data) > 6_000_000
    with (
        serve(sqlite_db, settings_for(tmp_path)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        csrf = sign_in(client, "admin")
        tracemalloc.start()
        try:
            token = token_of(upload(client, csrf, "big.csv", data))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert f"Import {rows:,} rows" in client.get(f"/admin/lists/uploads/{token}").text
    # The client holds the body (and httpx copies it); the server adds little to that.
    assert peak < 3 * len(data), peak


def test_the_progress_page_reloads_itself_while_the_import_runs(
    sqlite_site: tuple[str, Database, Path],
) -> None:
    url, _db, _ = sqlite_site
    data = b"email\n" + b"".join(b"p%05d@example.org\n" % i for i in range(5000))
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        token = token_of(upload(client, csrf, "p.csv", data))
        client.post(f"/admin/lists/uploads/{token}/import", data={"csrf": csrf, "list": "p"})
        page = client.get(f"/admin/lists/uploads/{token}")
        if "Importing into p" in page.text:
            assert '<meta http-equiv="refresh" content="1">' in page.text
            assert "<progress" in page.text
        deadline = time.monotonic() + 60
        while client.get(f"/admin/lists/uploads/{token}/status").json()["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        final = client.get(f"/admin/lists/uploads/{token}/status").json()
        assert (final["state"], final["done_rows"], final["total_rows"]) == ("done", 5000, 5000)
        assert "Content-Security-Policy" in client.get(f"/admin/lists/uploads/{token}").headers


@given(
    content=st.binary(max_size=300),
    list_name=st.text(max_size=250),
    token=st.text(max_size=30),
    boundary=st.from_regex(r"[A-Za-z0-9'()+_,./:=?-]{1,70}", fullmatch=True),
)
@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_uploads_and_forms_never_fail_the_server(
    admin_site: tuple[str, str, httpx.Client],
    content: bytes,
    list_name: str,
    token: str,
    boundary: str,
) -> None:
    _url, csrf, client = admin_site
    answer = upload(client, csrf, "r.csv", content)
    assert answer.status_code in (303, 400, 413), answer.text
    if answer.status_code == 303:
        found = token_of(answer)
        confirm = client.post(
            f"/admin/lists/uploads/{found}/import", data={"csrf": csrf, "list": list_name}
        )
        assert confirm.status_code in (303, 400)
    quoted = quote(token, safe="")
    for path in (f"/admin/lists/uploads/{quoted}", f"/admin/lists/uploads/{quoted}/status"):
        assert client.get(path).status_code in (200, 404)
    raw = client.post(
        "/admin/lists/upload",
        content=content,
        headers={"content-type": "multipart/form-data; boundary=" + boundary},
    )
    assert raw.status_code in (400, 403, 413)


@pytest.fixture(scope="module")
def admin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, httpx.Client]]:
    from mailer.store import open_database

    tmp_path = tmp_path_factory.mktemp("hyp")
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", create=True)
    add_users(db)
    with serve(db, settings_for(tmp_path)) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        yield url, csrf, client
    db.dispose()


def test_an_import_that_fails_half_way_stores_nothing(site: tuple[str, Database, Path]) -> None:
    url, db, root = site
    good = b"email\n" + b"".join(b"h%05d@example.org\n" % i for i in range(2000))
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        token = token_of(upload(client, csrf, "half.csv", good))
        # The file changes on disk after it was checked: line 1,502 is no longer UTF-8,
        # after three chunks of 500 supporters were written in the import's transaction.
        (root / token / "upload.csv").write_bytes(good + b"caf\xe9@example.org\n")
        state = imported(client, csrf, token, "half")
        assert state["state"] == "failed"
        assert "half.csv, line 2002: not UTF-8 text (byte 0xe9)" in str(state["error"])
        page = client.get(f"/admin/lists/uploads/{token}").text
        assert "Not imported" in page and "Nothing was stored" in page
    assert members(db, "half") == set()
    with db.session() as session:
        stored = session.exec(select(Supporter.email)).all()
        assert stored == ["gone@example.org"]  # only the one the fixture added
        assert session.exec(select(MailingList).where(MailingList.name == "half")).first() is None
        [event] = session.exec(select(Event).where(Event.action == "list.import_failed")).all()
    assert (event.actor, event.detail["file"], event.detail["list"]) == (
        "organizer",
        "half.csv",
        "half",
    )

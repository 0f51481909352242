"""Importing supporters from CSV files, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from email_validator import validate_email
from sqlmodel import select

from mailer.errors import ImportFileError
from mailer.store import Database, Event, MailingList, Membership, Supporter, SupporterStatus
from mailer.supporters import (
    ImportSummary,
    Reject,
    import_csv,
    write_rejects,
)
from mailer.supporters import columns as columns_module
from mailer.supporters import importer as importer_module

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)
HEADER = "email,first_name,last_name,zip,region,language\n"
SAMPLE = Path(__file__).resolve().parent.parent / "lists" / "sample-supporters.csv"


# -- helpers -------------------------------------------------------------------


def write(tmp_path: Path, text: str, *, name: str = "people.csv", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def run(
    db: Database, path: Path, list_name: str = "Members", *, at: datetime = T0, **kw: Any
) -> ImportSummary:
    return import_csv(db, path, list_name, now=lambda: at, **kw)


def supporters(db: Database) -> dict[str, Supporter]:
    with db.session() as session:
        return {s.email: s for s in session.exec(select(Supporter))}


def members(db: Database, list_name: str = "Members") -> set[str]:
    with db.session() as session:
        query = (
            select(Supporter.email)
            .join(Membership, Membership.supporter_id == Supporter.id)  # type: ignore[arg-type]
            .join(MailingList, MailingList.id == Membership.list_id)  # type: ignore[arg-type]
            .where(MailingList.name == list_name)
        )
        return set(session.exec(query))


def events(db: Database) -> list[Event]:
    with db.session() as session:
        return list(session.exec(select(Event).where(Event.action == "list.imported")))


def add_supporter(db: Database, email: str, **fields: Any) -> None:
    with db.session() as session:
        session.add(
            Supporter(
                email=email,
                status_changed_at=T0,
                created_at=T0,
                updated_at=T0,
                **fields,
            )
        )


# -- reading the file ----------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_imports_a_simple_file_with_any_line_end(
    db: Database, tmp_path: Path, newline: str
) -> None:
    path = write(
        tmp_path,
        HEADER + "ana@example.org,Ana,Pérez,94110,CA,es\nbo@example.com,Bo,Ng,02139,MA,\n",
        newline=newline,
    )
    summary = run(db, path)
    assert (summary.rows, summary.added, summary.rejected, summary.new_members) == (2, 2, 0, 2)
    stored = supporters(db)
    ana = stored["ana@example.org"]
    assert (ana.first_name, ana.last_name, ana.zip, ana.region, ana.language) == (
        "Ana",
        "Pérez",
        "94110",
        "CA",
        "es",
    )
    assert stored["bo@example.com"].zip == "02139"  # leading zero kept: values are text
    assert stored["bo@example.com"].language == "en"
    assert members(db) == {"ana@example.org", "bo@example.com"}


def test_byte_order_mark_is_accepted(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfEmail,First Name\r\nzoe@example.net,Zo\xc3\xab\r\n")
    summary = run(db, path)
    assert summary.added == 1
    assert supporters(db)["zoe@example.net"].first_name == "Zoë"


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (HEADER.encode() + b"a@example.org,Ana,,,,\nb@example.org,Jos\xe9,,,,\n", 3),
        (b"\xef\xbb\xbfemail,first_name\r\na@example.org,x\r\n\r\nb@example.org,Ren\xe9e\r\n", 4),
        (b"email,first_name\ra@example.org,x\rb@example.org,Ren\xe9e\r", 3),
        (b"em\xe9il,first_name\n", 1),
    ],
    ids=["LF", "BOM-CRLF-blank", "CR", "header"],
)
def test_non_utf8_file_names_file_line_and_byte(
    db: Database, tmp_path: Path, content: bytes, line: int
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as caught:
        run(db, path)
    message = str(caught.value)
    assert "people.csv" in message
    assert f"line {line}:" in message
    assert "0xe9" in message
    assert "UTF-8" in message
    assert supporters(db) == {}  # nothing stored, not even the first good row
    assert events(db) == []


def test_quoted_fields_with_commas_quotes_and_line_breaks(db: Database, tmp_path: Path) -> None:
    text = (
        HEADER
        + 'a@example.org,"Ana\nMaría","King, Jr.",20001,"Washington, DC",es\n'
        + 'b@example.org,"Bo ""Bobby""",Ng,,,\n'
        + "not-an-address,x,y,,,\n"
    )
    summary = run(db, write(tmp_path, text))
    stored = supporters(db)
    assert stored["a@example.org"].first_name == "Ana María"
    assert stored["a@example.org"].last_name == "King, Jr."
    assert stored["a@example.org"].region == "Washington, DC"
    assert stored["b@example.org"].first_name == 'Bo "Bobby"'
    # The record of line 2 spans two lines, so the bad row is on line 5.
    assert [reject.line for reject in summary.rejects] == [5]


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("email;first_name;last_name\na@example.org;Ana;Pérez\nb@example.org;Bo;Ng\n", ";"),
        ("email\tfirst_name\tlast_name\na@example.org\tAna\tPérez\nb@example.org\tBo\tNg\n", "\t"),
        (
            'email,first_name,last_name\na@example.org,Ana,Pérez\nb@example.org,"Bo; B",Ng\n',
            ",",
        ),
    ],
    ids=["semicolon", "tab", "comma"],
)
def test_delimiter_is_detected(db: Database, tmp_path: Path, text: str, delimiter: str) -> None:
    summary = run(db, write(tmp_path, text))
    assert (summary.added, summary.rejected) == (2, 0)
    assert supporters(db)["a@example.org"].last_name == "Pérez"


def test_single_column_file_falls_back_to_comma(db: Database, tmp_path: Path) -> None:
    summary = run(db, write(tmp_path, "Email\na@example.org\nb@example.org\n"))
    assert summary.added == 2


def test_blank_lines_are_skipped_and_not_counted(db: Database, tmp_path: Path) -> None:
    text = HEADER + "\na@example.org,Ana,,,,\n\n   \n,,,,,\nbad,x,,,,\n\n"
    summary = run(db, write(tmp_path, text))
    assert summary.rows == 2
    assert summary.added == 1
    assert [(r.line, r.reason.split(":")[0]) for r in summary.rejects] == [(7, "email")]


def test_broken_quoting_rejects_the_record_and_goes_on(db: Database, tmp_path: Path) -> None:
    text = HEADER + 'a@example.org,"Ana"x,,,,\nb@example.org,Bo,,,,\nc@example.org,"Cy,,,,\n'
    summary = run(db, write(tmp_path, text))
    assert set(supporters(db)) == {"b@example.org"}
    assert [(reject.line, reject.reason) for reject in summary.rejects] == [
        (2, "unreadable: text after a closing quote (',' expected after '\"')"),
        (4, "unreadable: a quote is opened and never closed"),
    ]
    assert summary.rejected == 2


def test_missing_file(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"nowhere\.csv"):
        run(db, tmp_path / "nowhere.csv")


# -- the header ----------------------------------------------------------------


def test_header_aliases_and_custom_columns(db: Database, tmp_path: Path) -> None:
    text = (
        "E-mail,First Name,Surname,Postal Code,State,Preferred-Language,Phone Number,Ward\n"
        "Ana@Example.org,Ana,Pérez,94110,CA,Spanish,555-0100,\n"
    )
    run(db, write(tmp_path, text))
    ana = supporters(db)["ana@example.org"]
    assert (ana.first_name, ana.last_name, ana.zip, ana.region, ana.language) == (
        "Ana",
        "Pérez",
        "94110",
        "CA",
        "es",
    )
    assert ana.custom == {"phone_number": "555-0100"}  # empty "Ward" cell not stored


def test_no_email_column(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "Name,Phone\nAna,555\n")
    with pytest.raises(ImportFileError) as caught:
        run(db, path)
    message = str(caught.value)
    assert "people.csv, line 1" in message
    assert "'Name'" in message
    assert "'Phone'" in message


def test_two_columns_meaning_email(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="both mean 'email'"):
        run(db, write(tmp_path, "Email,E-mail\na@example.org,b@example.org\n"))


@pytest.mark.parametrize(
    "content", [b"", b"\xef\xbb\xbf", b"\n\n  \r\n"], ids=["empty", "bom", "blank"]
)
def test_empty_file(db: Database, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=r"people\.csv.*empty"):
        run(db, path)


def test_header_only_imports_nothing(db: Database, tmp_path: Path) -> None:
    summary = run(db, write(tmp_path, HEADER))
    assert (summary.rows, summary.added) == (0, 0)
    assert len(events(db)) == 1


# -- rows ------------------------------------------------------------------------

GOOD: dict[str, str] = {
    "email": "ana@example.org",
    "first_name": "Ana",
    "last_name": "Pérez",
    "zip": "94110",
    "region": "CA",
    "language": "es",
}


def one_row(tmp_path: Path, row: dict[str, str]) -> Path:
    path = tmp_path / "people.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(GOOD))
        writer.writeheader()
        writer.writerow(row)
    return path


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"email": ""}, "email: missing"),
        ({"email": "   "}, "email: missing"),
        ({"email": "ana.example.org"}, "email: An email address must have an @-sign."),
        ({"email": "ana@@example.org"}, "email: The part after the @-sign contains"),
        ({"email": "ana@b@example.org"}, "email: The part after the @-sign contains"),
        ({"email": "ana@exam ple.org"}, "email: The part after the @-sign contains"),
        ({"email": "ana@localhost"}, "email: The part after the @-sign is not valid"),
        ({"email": "José@example.org"}, "email: Internationalized characters before"),
        ({"email": "Ana <ana@example.org>"}, "email: "),
        ({"first_name": "A" * 201}, "first_name: too long (201 characters, at most 200)"),
        ({"last_name": "B" * 250}, "last_name: too long"),
        ({"zip": "1" * 21}, "zip: too long"),
        ({"region": "R" * 101}, "region: too long"),
        ({"language": "x" * 17}, "language: too long"),
        ({"email": "", "zip": "1" * 21}, "email: missing; zip: too long"),
    ],
)
def test_bad_rows_are_rejected(
    db: Database, tmp_path: Path, changes: dict[str, str], reason: str
) -> None:
    row = {**GOOD, **changes}
    summary = run(db, one_row(tmp_path, row))
    assert (summary.rows, summary.added, summary.rejected, summary.duplicates) == (1, 0, 1, 0)
    [reject] = summary.rejects
    assert reject.line == 2
    assert reject.reason.startswith(reason)
    assert reject.row == row
    assert supporters(db) == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {}),
        ({"email": "  Ana@EXAMPLE.org "}, {}),
        ({"email": "ANA@example.ORG"}, {}),
        ({"email": "ana@MÜNCHEN.example"}, {"email": "ana@xn--mnchen-3ya.example"}),
        ({"first_name": "  Ana \t María\n"}, {"first_name": "Ana María"}),
        ({"first_name": "Ana\u2028María"}, {"first_name": "Ana María"}),
        ({"first_name": "Ana\x00\x07"}, {"first_name": "Ana"}),
        ({"last_name": "Nguyễn\r\nBcc: x@example.com"}, {"last_name": "Nguyễn Bcc: x@example.com"}),
        ({"first_name": ""}, {"first_name": ""}),
        ({"first_name": "A" * 200}, {"first_name": "A" * 200}),
        ({"language": "es-MX"}, {"language": "es"}),
        ({"language": "Spanish"}, {"language": "es"}),
        ({"language": "español"}, {"language": "es"}),
        ({"language": "English"}, {"language": "en"}),
        ({"language": "en-US"}, {"language": "en"}),
        ({"language": ""}, {"language": "en"}),
        ({"language": "fr-CA"}, {"language": "fr"}),
        ({"language": "x" * 16}, {"language": "x" * 16}),
    ],
)
def test_good_rows_are_cleaned_and_stored(
    db: Database, tmp_path: Path, changes: dict[str, str], expected: dict[str, str]
) -> None:
    summary = run(db, one_row(tmp_path, {**GOOD, **changes}))
    assert (summary.added, summary.rejected) == (1, 0)
    want = {**GOOD, "email": "ana@example.org", **expected}
    [stored] = supporters(db).values()
    assert stored.model_dump(include=set(want)) == want


def test_more_fields_than_the_header(db: Database, tmp_path: Path) -> None:
    text = (
        "email,first_name,last_name,zip,region\n"
        "a@example.org,Ana,Pérez,94110,CA,es,extra\n"
        "b@example.org,Bo,Ng,02139,MA,,\n"
    )
    summary = run(db, write(tmp_path, text))
    [reject] = summary.rejects
    assert (reject.line, reject.reason) == (2, "7 fields but the header has 5")
    assert reject.row["email"] == "a@example.org"
    assert reject.row["extra_2"] == "extra"
    assert set(supporters(db)) == {"b@example.org"}  # empty extra cells are harmless


def test_fewer_fields_than_the_header(db: Database, tmp_path: Path) -> None:
    summary = run(db, write(tmp_path, HEADER + "a@example.org,Ana\n"))
    assert summary.added == 1
    ana = supporters(db)["a@example.org"]
    assert (ana.first_name, ana.last_name, ana.zip, ana.language) == ("Ana", "", "", "en")


def test_duplicates_in_the_file(db: Database, tmp_path: Path) -> None:
    text = (
        HEADER
        + "ana@example.org,Ana,,,,\n"
        + "bo@example.org,Bo,,,,\n"
        + "ANA@Example.org,Anita,,,,\n"
        + " bo@example.org ,Bobby,,,,\n"
        + "ana@example.org,Ana,,,,\n"
    )
    summary = run(db, write(tmp_path, text))
    assert (summary.rows, summary.added, summary.duplicates, summary.rejected) == (5, 2, 3, 0)
    assert [(r.line, r.reason) for r in summary.rejects] == [
        (4, "duplicate of line 2"),
        (5, "duplicate of line 3"),
        (6, "duplicate of line 2"),
    ]
    assert summary.rejects[0].row["first_name"] == "Anita"
    assert supporters(db)["ana@example.org"].first_name == "Ana"  # the first one wins


def test_a_duplicate_chunks_after_its_first_line_names_that_line(
    db: Database, tmp_path: Path
) -> None:
    # The addresses seen are kept on disk, not in the chunk in hand: a repeat three
    # chunks later is still a duplicate of its first line.
    rows = [f"p{i}@example.org,P{i},,,,\n" for i in range(3 * importer_module.LOOKUP_CHUNK)]
    text = HEADER + "".join(rows) + "P7@Example.org,Again,,,,\n" + rows[-1]
    summary = run(db, write(tmp_path, text))
    assert (summary.added, summary.duplicates) == (3 * importer_module.LOOKUP_CHUNK, 2)
    assert [(r.line, r.reason) for r in summary.rejects] == [
        (3 * importer_module.LOOKUP_CHUNK + 2, "duplicate of line 9"),
        (
            3 * importer_module.LOOKUP_CHUNK + 3,
            f"duplicate of line {3 * importer_module.LOOKUP_CHUNK + 1}",
        ),
    ]
    assert supporters(db)["p7@example.org"].first_name == "P7"


def test_rejected_row_does_not_make_a_later_one_a_duplicate(db: Database, tmp_path: Path) -> None:
    text = HEADER + f"ana@example.org,{'A' * 201},,,,\nana@example.org,Ana,,,,\n"
    summary = run(db, write(tmp_path, text))
    assert (summary.added, summary.rejected, summary.duplicates) == (1, 1, 0)


# -- storing -----------------------------------------------------------------------


def test_new_supporters_are_active_and_stamped(db: Database, tmp_path: Path) -> None:
    run(db, write(tmp_path, HEADER + "a@example.org,Ana,,,,\n"), at=T1)
    ana = supporters(db)["a@example.org"]
    assert ana.status == SupporterStatus.ACTIVE
    assert ana.created_at == ana.updated_at == ana.status_changed_at == T1


def test_existing_supporters_are_updated_not_blanked(db: Database, tmp_path: Path) -> None:
    add_supporter(
        db,
        "ana@example.org",
        first_name="Ana",
        last_name="Pérez",
        zip="94110",
        region="CA",
        language="es",
        custom={"ward": "9", "phone": "555"},
    )
    add_supporter(db, "bo@example.org", first_name="Bo", last_name="Ng", language="en")
    text = (
        "email,first_name,last_name,zip,region,language,phone,team\n"
        "ANA@example.org,,Pérez-Soto,,,,,blue\n"  # empty cells must not blank anything
        "bo@example.org,Bo,,,,en,,\n"  # nothing new
        "cy@example.org,Cy,,,,,,\n"
    )
    summary = run(db, write(tmp_path, text), at=T1)
    assert (summary.added, summary.updated, summary.unchanged) == (1, 1, 1)
    stored = supporters(db)
    ana = stored["ana@example.org"]
    assert (ana.first_name, ana.last_name, ana.zip, ana.region, ana.language) == (
        "Ana",
        "Pérez-Soto",
        "94110",
        "CA",
        "es",
    )
    assert ana.custom == {"ward": "9", "phone": "555", "team": "blue"}
    assert ana.updated_at == T1
    assert ana.created_at == T0
    assert stored["bo@example.org"].updated_at == T0


@pytest.mark.parametrize(
    "status",
    [SupporterStatus.UNSUBSCRIBED, SupporterStatus.BOUNCED, SupporterStatus.COMPLAINED],
)
def test_import_never_changes_status(db: Database, tmp_path: Path, status: SupporterStatus) -> None:
    add_supporter(db, "gone@example.org", first_name="G", status=status)
    summary = run(db, write(tmp_path, HEADER + "gone@example.org,Gina,,,,\n"), at=T1)
    assert summary.updated == 1
    gone = supporters(db)["gone@example.org"]
    assert gone.status == status
    assert gone.status_changed_at == T0
    assert gone.first_name == "Gina"
    assert members(db) == {"gone@example.org"}  # harmless: blasts skip inactive supporters


def test_list_is_created_or_reused_and_members_added_once(db: Database, tmp_path: Path) -> None:
    first = write(tmp_path, HEADER + "a@example.org,A,,,,\nb@example.org,B,,,,\n", name="1.csv")
    second = write(tmp_path, HEADER + "b@example.org,B,,,,\nc@example.org,C,,,,\n", name="2.csv")
    assert run(db, first, "  Volunteers ").new_members == 2
    summary = run(db, second, "Volunteers")
    assert (summary.added, summary.unchanged, summary.new_members) == (1, 1, 1)
    assert run(db, second, "Donors").new_members == 2
    assert members(db, "Volunteers") == {"a@example.org", "b@example.org", "c@example.org"}
    assert members(db, "Donors") == {"b@example.org", "c@example.org"}
    with db.session() as session:
        names = set(session.exec(select(MailingList.name)))
    assert names == {"Volunteers", "Donors"}


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_list_name(db: Database, tmp_path: Path, name: str) -> None:
    with pytest.raises(ImportFileError, match="list name"):
        run(db, write(tmp_path, HEADER + "a@example.org,A,,,,\n"), name)


def test_importing_twice_changes_nothing(db: Database, tmp_path: Path) -> None:
    add_supporter(db, "old@example.org", first_name="Old", language="en")
    text = (
        HEADER
        + "new@example.org,New,Person,,,es\n"
        + "old@example.org,Older,,,,\n"
        + "bad,x,,,,\n"
        + "NEW@example.org,dup,,,,\n"
    )
    path = write(tmp_path, text)
    first = run(db, path, at=T0)
    before = {email: s.updated_at for email, s in supporters(db).items()}
    second = run(db, path, at=T1)
    assert (first.added, first.updated, first.unchanged, first.new_members) == (1, 1, 0, 2)
    assert (second.added, second.updated, second.new_members) == (0, 0, 0)
    assert second.unchanged == first.added + first.updated + first.unchanged
    assert (second.rejected, second.duplicates) == (first.rejected, first.duplicates)
    assert {email: s.updated_at for email, s in supporters(db).items()} == before


def test_one_event_per_import(db: Database, tmp_path: Path) -> None:
    text = HEADER + "a@example.org,A,,,,\nbad,x,,,,\na@example.org,A,,,,\n"
    run(db, write(tmp_path, text), actor="cli:maria", at=T1)
    [event] = events(db)
    assert (event.actor, event.at) == ("cli:maria", T1)
    assert event.detail == {
        "file": str(tmp_path / "people.csv"),
        "list": "Members",
        "rows": 3,
        "added": 1,
        "updated": 0,
        "unchanged": 0,
        "duplicates": 1,
        "rejected": 1,
    }


def test_file_error_late_in_the_file_stores_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_module, "LOOKUP_CHUNK", 5)  # earlier chunks get flushed
    good = "".join(f"p{n}@example.org,P{n},,,,\n" for n in range(23))
    path = tmp_path / "people.csv"
    path.write_bytes((HEADER + good).encode() + b"late@example.org,Andr\xe9,,,,\n")
    with pytest.raises(ImportFileError, match="line 25"):
        run(db, path)
    assert supporters(db) == {}
    with db.session() as session:
        assert list(session.exec(select(MailingList))) == []
    assert events(db) == []


def test_existing_supporters_are_looked_up_in_chunks(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_module, "LOOKUP_CHUNK", 10)
    for n in range(0, 35, 3):
        add_supporter(db, f"p{n}@example.org", first_name=f"P{n}")
    path = write(tmp_path, HEADER + "".join(f"p{n}@example.org,P{n},,,,\n" for n in range(35)))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        summary = run(db, path)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert (summary.added, summary.unchanged, summary.new_members) == (23, 12, 35)
    lookups = [s for s in statements if s.startswith("SELECT") and "FROM supporter " in s]
    assert len(lookups) == 4  # 35 addresses, 10 per query


def test_deliverability_check_is_passed_on(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def spy(address: str, **kw: Any) -> Any:
        seen.append(kw)
        return validate_email(address, check_deliverability=False, allow_smtputf8=False)

    monkeypatch.setattr(columns_module, "validate_email", spy)
    monkeypatch.setattr(columns_module, "caching_resolver", lambda **_kw: None)
    run(db, write(tmp_path, HEADER + "a@example.org,A,,,,\n"), check_deliverability=True)
    run(db, write(tmp_path, HEADER + "b@example.org,B,,,,\n"))
    assert [kw["check_deliverability"] for kw in seen] == [True, False]
    assert all(kw["allow_smtputf8"] is False for kw in seen)


# -- rejects file ------------------------------------------------------------------


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def test_rejects_file(db: Database, tmp_path: Path) -> None:
    text = 'Email,First Name\nbad,Zoë\na@example.org,A\nA@example.org,"Multi\nLine"\n,Nobody\n'
    rejects = tmp_path / "people.rejects.csv"
    summary = run(db, write(tmp_path, text), rejects_path=rejects)
    assert len(summary.rejects) == 3
    assert read_csv(rejects) == [
        ["line", "reason", "Email", "First Name"],
        ["2", "email: An email address must have an @-sign.", "bad", "Zoë"],
        ["4", "duplicate of line 3", "A@example.org", "Multi\nLine"],
        ["6", "email: missing", "", "Nobody"],
    ]


def test_no_rejects_file_without_rejects(db: Database, tmp_path: Path) -> None:
    rejects = tmp_path / "people.rejects.csv"
    run(db, write(tmp_path, HEADER + "a@example.org,A,,,,\n"), rejects_path=rejects)
    assert not rejects.exists()


def test_write_rejects_takes_columns_from_all_rows(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_rejects(
        [
            Reject(2, "email: missing", {"email": "", "name": "Ana"}),
            Reject(3, "3 fields but the header has 2", {"email": "x", "name": "B", "extra_1": "z"}),
            Reject(4, "unreadable: unexpected end of data", {}),
        ],
        path,
    )
    assert read_csv(path) == [
        ["line", "reason", "email", "name", "extra_1"],
        ["2", "email: missing", "", "Ana", ""],
        ["3", "3 fields but the header has 2", "x", "B", "z"],
        ["4", "unreadable: unexpected end of data", "", "", ""],
    ]


# -- the sample list ---------------------------------------------------------------


def test_sample_list(db: Database) -> None:
    summary = run(db, SAMPLE, "Sample")
    stored = supporters(db)
    assert summary.rows == 200
    assert (summary.added, summary.rejected, summary.duplicates) == (190, 6, 4)
    assert summary.new_members == 190
    assert len(stored) == 190
    assert sum(s.language == "es" for s in stored.values()) == 30
    assert {s.language for s in stored.values()} == {"en", "es"}
    assert sum(s.first_name == "" for s in stored.values()) == 4
    assert any(s.region == "Washington, DC" for s in stored.values())
    assert any(s.last_name == "Nguyễn" for s in stored.values())
    domains = {s.email.split("@")[1] for s in stored.values()}
    reserved = ("example.org", "example.com", "example.net")
    assert all(d in reserved or d.endswith(tuple("." + r for r in reserved)) for d in domains)
    reasons = [r.reason for r in summary.rejects]
    assert sum(r.startswith("duplicate of line ") for r in reasons) == 4
    assert sum(r.startswith("email: ") for r in reasons) == 6

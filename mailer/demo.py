"""The demo: one action alert, end to end, on the embedded defaults.

Everything real, nothing faked: a local SMTP server that keeps what it gets in
a Maildir, a SQLite database, the sample supporter list imported through the
normal importer, a blast sent through the normal sender, and the HTTP app
answering real requests for a few tracking links and one unsubscribe.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import mailbox
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailer import config, resources
from mailer.blasts import create_blast, send_now
from mailer.devsmtp import DevSmtpServer, free_port
from mailer.report import blast_report
from mailer.send.engine import Progress
from mailer.store import Database, open_database
from mailer.supporters.importer import ImportSummary, import_csv
from mailer.web import app_for
from mailer.web.server import BackgroundServer

DEMO_LIST = "supporters"
DEMO_BLAST = "Executive orders: tell the White House"
DEMO_TEMPLATE = "executive-orders"
CLICKS_TO_FOLLOW = 5


@dataclass
class DemoResult:
    folder: Path
    config_path: Path
    database: Path
    outbox: Path
    summary: ImportSummary
    report: dict[str, Any]
    followed: list[tuple[str, int, str]]  # (url, status, location)
    unsubscribed: tuple[str, int]  # (url, status)


def write_config(folder: Path, *, smtp_port: int, web_port: int, templates: Path) -> Path:
    """The demo's settings, as a file the user can reuse with --config."""
    path = folder / "mailer.toml"
    path.write_text(
        f"""# Written by `mailer demo`. Try: mailer --config {path} report 1
[database]
url = "sqlite:///mailer.db"

[smtp]
host = "127.0.0.1"
port = {smtp_port}

[sender]
name = "Rapid Response Team"
address = "alerts@example.org"

[organization]
name = "Immigrant Rights Network (demo)"
postal_address = "100 Example Avenue, Suite 5, Oakland, CA 94600"

[web]
base_url = "http://127.0.0.1:{web_port}"
host = "127.0.0.1"
port = {web_port}

[security]
secret_key = "{secrets.token_urlsafe(32)}"

[templates]
dir = "{templates.as_posix()}"

[tracking]
# The demo clicks seconds after sending; real clicks that fast come from link scanners.
scanner_window = 0
""",
        "utf-8",
    )
    return path


def _request(method: str, url: str, body: str | None = None) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        conn.request(method, parts.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location") or ""
    finally:
        conn.close()


def _messages(outbox: Path) -> list[EmailMessage]:
    found = []
    for key in sorted(mailbox.Maildir(outbox, create=False).keys()):
        with open(outbox / "new" / key, "rb") as fh:
            msg = email.message_from_binary_file(fh, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def _text_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def run_demo(
    folder: Path,
    *,
    say: Callable[[str], None] = print,
    progress: Progress | None = None,
) -> DemoResult:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    outbox = folder / "outbox"
    web_port = free_port()
    with DevSmtpServer(outbox) as smtp:
        say(f"local SMTP server on 127.0.0.1:{smtp.port}, keeping messages in {outbox}")
        config_path = write_config(
            folder, smtp_port=smtp.port, web_port=web_port, templates=resources.templates_dir()
        )
        settings = config.load(config_path, env={})
        db: Database = open_database(settings.database.url, create=True)
        try:
            summary = import_csv(
                db,
                resources.sample_list(),
                DEMO_LIST,
                rejects_path=folder / "sample-supporters.rejects.csv",
            )
            say(
                f"imported {summary.rows} rows: {summary.added} added, "
                f"{summary.duplicates} duplicates, "
                f"{summary.rejected} rejected (see {folder / 'sample-supporters.rejects.csv'})"
            )
            blast = create_blast(
                db,
                settings,
                name=DEMO_BLAST,
                template=DEMO_TEMPLATE,
                list_names=[DEMO_LIST],
                actor="demo",
            )
            assert blast.id is not None
            say(f"created blast {blast.id}: {blast.name!r} -> {blast.cta_url}")
            result = send_now(db, settings, blast.id, progress=progress, actor="demo")
            if result.error:
                raise RuntimeError(f"the demo blast paused: {result.error}")
            say(f"sent: {result.counts['sent']} messages handed to the SMTP server")

            app = app_for(db, settings)
            followed: list[tuple[str, int, str]] = []
            with BackgroundServer(app, port=web_port):
                messages = _messages(outbox)
                for msg in messages[:CLICKS_TO_FOLLOW]:
                    links = re.findall(
                        rf"{re.escape(settings.web.base_url)}/c/[A-Za-z0-9_-]+", _text_part(msg)
                    )
                    if links:
                        status, location = _request("GET", links[0])
                        followed.append((links[0], status, location))
                        say(f"clicked {links[0]} -> {status} {location}")
                last = messages[-1]
                unsub = re.search(r"<(https?://[^>]+/u/[^>]+)>", str(last["List-Unsubscribe"]))
                assert unsub is not None, "a delivered message lacks its List-Unsubscribe link"
                status, _ = _request("POST", unsub.group(1), body="List-Unsubscribe=One-Click")
                say(f"one-click unsubscribe of {last['To']} -> {status}")
            report = blast_report(db, blast.id)
        finally:
            db.dispose()
    return DemoResult(
        folder=folder,
        config_path=config_path,
        database=folder / "mailer.db",
        outbox=outbox,
        summary=summary,
        report=report,
        followed=followed,
        unsubscribed=(unsub.group(1), status),
    )

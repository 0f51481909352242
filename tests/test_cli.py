"""The command line as an organizer uses it, each command a real process."""

from __future__ import annotations

import contextlib
import json
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from mailer.devsmtp import free_port
from tests import processes
from tests.conftest import REPO, TEST_SECRET
from tests.processes import MAILER, mailer_env, run_mailer
from tests.smtpserver import S550_NO_SUCH_USER, SmtpTestServer

pytestmark = pytest.mark.processes  # every test here starts mailer processes

T = TypeVar("T")
SAMPLE = REPO / "lists" / "sample-supporters.csv"


def write_config(folder: Path, smtp_port: int, *, secret: str = TEST_SECRET) -> Path:
    return processes.write_config(
        folder,
        database_url="sqlite:///m.db",
        smtp_port=smtp_port,
        sections={
            "sender": {"name": "Rapid Response"},
            "organization": {"postal_address": "1 Example Way, Oakland, CA 94600"},
            "security": {"secret_key": secret},
        },
    )


def mailer(cwd: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args, config=config)


@contextlib.contextmanager
def running(cwd: Path, config: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running `mailer` command as a process, terminated afterwards."""
    process = subprocess.Popen(
        [*MAILER, *args],
        cwd=cwd,
        env=mailer_env(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for(process: subprocess.Popen[bytes], connect: Callable[[], T]) -> T:
    """``connect()`` once the process listens (it raises a connection error until then)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return connect()
        except (OSError, httpx.TransportError):
            assert process.poll() is None, "the command exited"
            assert time.monotonic() < deadline, "the command did not start listening"
            time.sleep(0.1)


def test_organizer_flow_import_create_preview_send_report(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    config = write_config(tmp_path, smtp_server.port)
    first = next(
        line.split(",")[0] for line in SAMPLE.read_text("utf-8").splitlines()[1:] if "@" in line
    )
    smtp_server.handler.refuse[first.lower()] = S550_NO_SUCH_USER

    assert mailer(tmp_path, "init", config=config).returncode == 0
    imported = mailer(tmp_path, "import", str(SAMPLE), "--list", "supporters", config=config)
    assert imported.returncode == 0, imported.stderr
    assert "added           190" in imported.stdout and "rejected        6" in imported.stdout
    assert "line " in imported.stderr  # every rejected row is named by its line
    rejects = tmp_path / "sample-supporters.rejects.csv"
    assert rejects.read_text("utf-8-sig").startswith(
        "line,reason,"
    )  # BOM: opens cleanly in spreadsheets

    again = mailer(tmp_path, "import", str(SAMPLE), "--list", "supporters", config=config)
    assert "added           0" in again.stdout and "unchanged       190" in again.stdout

    created = mailer(
        tmp_path,
        "blast",
        "create",
        "EO alert",
        "--template",
        "executive-orders",
        "--list",
        "supporters",
        config=config,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "1"

    preview = mailer(tmp_path, "preview", "EO alert", "--to", first, "--out", "prev", config=config)
    assert preview.returncode == 0, preview.stderr
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in preview.stdout
    assert "https://act.example.org/c/" in preview.stdout
    assert list((tmp_path / "prev").glob("*.html")) and list((tmp_path / "prev").glob("*.eml"))
    assert smtp_server.handler.received == []  # a preview sends nothing

    sent = mailer(tmp_path, "blast", "send", "1", config=config)
    assert sent.returncode == 0, sent.stderr
    assert "189 sent, 1 failed" in sent.stdout

    report = json.loads(mailer(tmp_path, "report", "1", "--json", config=config).stdout)
    for key in (
        "blast",
        "recipients",
        "sent",
        "failed",
        "clicks_unique",
        "clicks_total",
        "unsubscribed",
    ):
        assert key in report
    assert (report["recipients"], report["sent"], report["failed"]) == (190, 189, 1)
    table = mailer(tmp_path, "report", "EO alert", config=config)
    assert "Click-through rate" in table.stdout and "189" in table.stdout
    failed = mailer(tmp_path, "log", "1", "--state", "failed", config=config)
    assert failed.returncode == 0, failed.stderr
    lines = failed.stdout.strip().splitlines()
    assert len(lines) == 2 and first.lower() in lines[1] and "550" in lines[1]
    assert "5.1.1 No such user here" in lines[1]
    everything = mailer(tmp_path, "log", "1", "--csv", config=config).stdout.splitlines()
    assert everything[0].startswith("delivery,email,state,attempts,reply_code,reply_text")
    assert len(everything) == 191
    listing = mailer(tmp_path, "blast", "list", config=config)
    assert "done" in listing.stdout and "EO alert" in listing.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["report", "nope"], 1, "error: no blast 'nope'"),
        (
            ["blast", "create", "x", "--template", "missing", "--list", "l"],
            1,
            "known: executive-orders",
        ),
        (
            ["blast", "create", "x", "--template", "executive-orders", "--list", "l"],
            1,
            "no list 'l'",
        ),
    ],
)
def test_errors_are_one_clear_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    config = write_config(tmp_path, 2525)
    mailer(tmp_path, "init", config=config)
    done = mailer(tmp_path, *args, config=config)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_setting_is_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[smtp]\nprot = 25\n", "utf-8")
    done = mailer(tmp_path, "--config", str(config), "init")
    assert done.returncode == 2
    assert "configuration error: smtp.prot: unknown setting" in done.stderr


def test_missing_secret_is_named_before_anything_is_sent(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    config = write_config(tmp_path, smtp_server.port, secret="")
    mailer(tmp_path, "import", str(SAMPLE), "--list", "supporters", config=config)
    mailer(
        tmp_path,
        "blast",
        "create",
        "b",
        "--template",
        "executive-orders",
        "--list",
        "supporters",
        config=config,
    )
    done = mailer(tmp_path, "blast", "send", "b", config=config)
    assert done.returncode == 2
    assert "security.secret_key" in done.stderr
    assert smtp_server.handler.received == []


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(
        "email,first_name\nana@example.org,Ana\njose@example.org,Jos\xe9\n".encode("latin-1")
    )
    done = mailer(tmp_path, "import", str(bad), "--list", "l", config=config)
    assert done.returncode == 1
    assert "latin1.csv" in done.stderr and "line 3" in done.stderr
    assert "Traceback" not in done.stderr


def test_database_must_exist_for_reports(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    done = mailer(tmp_path, "report", "1", config=config)
    assert done.returncode == 2 and "mailer init" in done.stderr


def test_every_command_has_help(tmp_path: Path) -> None:
    for args in (
        ["--help"],
        ["blast", "--help"],
        ["import", "--help"],
        ["demo", "--help"],
        ["web", "--help"],
    ):
        done = mailer(tmp_path, *args)
        assert done.returncode == 0 and "Usage:" in done.stdout


def test_web_command_serves_the_app(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    mailer(tmp_path, "init", config=config)
    port = free_port()
    with running(tmp_path, config, "web", "--port", str(port)) as process:
        response = wait_for(
            process, lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        )
        assert response.text == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/c/forged", timeout=2).status_code == 404
        process.terminate()  # SIGTERM, as a service manager stops it: a clean exit
        assert process.wait(timeout=20) == 0


def test_suppress_import_and_export(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    (tmp_path / "never.txt").write_text("A@Example.org\nbad address\nb@example.org\n", "utf-8")
    imported = mailer(
        tmp_path, "suppress", "import", "never.txt", "--reason", "legacy", config=config
    )
    assert imported.returncode == 0, imported.stderr
    assert "2 added, 0 already suppressed, 1 rejected" in imported.stdout
    assert "line 2" in imported.stderr
    exported = mailer(tmp_path, "suppress", "export", config=config).stdout.splitlines()
    assert exported[0] == "email,reason,source,added"
    assert [line.split(",")[:2] for line in exported[1:]] == [
        ["a@example.org", "legacy"],
        ["b@example.org", "legacy"],
    ]


def test_bounces_import_reads_a_mailbox(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    mailer(tmp_path, "init", config=config)
    mbox = tmp_path / "bounces.mbox"
    mbox.write_text(
        "From MAILER-DAEMON Sat Nov 28 09:00:00 2026\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        "To: bounces@example.org\nSubject: Out of office\nAuto-Submitted: auto-replied\n\n"
        "I am away.\n",
        "utf-8",
    )
    done = mailer(tmp_path, "bounces", "import", str(mbox), config=config)
    assert done.returncode == 0, done.stderr
    assert "1 messages read from mbox" in done.stdout
    broken = mailer(tmp_path, "bounces", "import", str(tmp_path), config=config)
    assert broken.returncode == 1 and str(tmp_path) in broken.stderr


def test_inbound_command_listens_and_answers(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    mailer(tmp_path, "init", config=config)
    port = free_port()
    with running(tmp_path, config, "inbound", "--port", str(port)) as process:
        client = wait_for(process, lambda: smtplib.SMTP("127.0.0.1", port, timeout=5))
        with client:
            refused = client.sendmail(
                "MAILER-DAEMON@mx.example.net",
                ["bounces+nothing@example.org"],
                b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undeliverable\r\n\r\nhello\r\n",
            )
        assert refused == {}

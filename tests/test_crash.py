"""A sender as a real process: killed, paused from another process, stopped by SIGTERM.

Invariant 1: after ``kill -9`` and ``blast resume`` every recipient has exactly one
message at the server, except the few in flight at the kill, which are reported
``unknown`` (and have at most one).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import (
    MAILER,
    mailer_env,
    numbered,
    run_mailer,
    update_config,
    write_config,
    write_people,
)
from tests.smtpserver import SmtpTestServer

pytestmark = pytest.mark.processes  # every test here starts mailer processes

RECIPIENTS = 150


@pytest.fixture
def slow_server() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer()
    server.handler.delay = 0.02  # about 50 messages a second per connection
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path, slow_server: SmtpTestServer) -> Path:
    write_config(
        tmp_path,
        database_url="sqlite:///m.db",
        smtp_port=slow_server.port,
        sections={"sending": {"connections": 2, "batch_size": 50, "control_interval": 0.2}},
    )
    write_people(tmp_path, numbered(RECIPIENTS, "r", lambda i: f"d{i % 5}.example.org"))
    assert mailer(tmp_path, "import", "people.csv", "--list", "all").returncode == 0
    created = mailer(tmp_path, "blast", "create", "b", "-t", "executive-orders", "-l", "all")
    assert created.stdout.strip() == "1"
    return tmp_path


def mailer(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args)


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_sender_outlives_its_test() -> Iterator[None]:
    """A failed assertion must not leave a sender running into the next test."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def start_sending(cwd: Path, command: str = "send") -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*MAILER, "blast", command, "1"],
        cwd=cwd,
        env=mailer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(process)
    return process


def wait_until_received(server: SmtpTestServer, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(server.handler.received) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def per_recipient(server: SmtpTestServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in server.handler.received)


def everyone() -> set[str]:
    return {f"r{i}@d{i % 5}.example.org" for i in range(RECIPIENTS)}


def unknown_addresses(cwd: Path) -> set[str]:
    listed = mailer(cwd, "log", "1", "--state", "unknown", "--csv")
    assert listed.returncode == 0, listed.stderr
    return {row["email"] for row in csv.DictReader(io.StringIO(listed.stdout))}


def test_kill_9_then_resume_sends_everyone_once_except_the_reported_unknown(
    workdir: Path, slow_server: SmtpTestServer
) -> None:
    sender = start_sending(workdir)
    wait_until_received(slow_server, 40, sender)
    os.kill(sender.pid, signal.SIGKILL)
    sender.communicate(timeout=10)

    resumed = mailer(workdir, "blast", "resume", "1")
    assert resumed.returncode == 0, resumed.stderr
    unknown = unknown_addresses(workdir)
    counts = per_recipient(slow_server)
    # In doubt: the message on each connection, plus those accepted by the server
    # whose outcome waited for the next group commit (every 50 ms, ~5 messages here).
    assert len(unknown) <= 10
    for address in everyone() - unknown:
        assert counts[address] == 1, address
    for address in unknown:
        assert counts[address] <= 1, address
    assert "unknown" in resumed.stdout or not unknown

    # Sending the in-doubt ones is a deliberate act.
    assert mailer(workdir, "blast", "requeue-unknown", "1").returncode == 0
    assert mailer(workdir, "blast", "resume", "1").returncode == 0
    counts = per_recipient(slow_server)
    assert all(counts[a] >= 1 for a in everyone()) and unknown_addresses(workdir) == set()


def test_pause_from_another_process_then_resume(workdir: Path, slow_server: SmtpTestServer) -> None:
    # Slower, so the rest is still being sent when a command started under load
    # (a new Python process: a second or more on a busy machine) arrives.
    slow_server.handler.delay = 0.08
    sender = start_sending(workdir)
    wait_until_received(slow_server, 20, sender)
    paused = mailer(workdir, "blast", "pause", "1")
    assert paused.returncode == 0, paused.stderr
    asked = time.monotonic()
    out, _ = sender.communicate(timeout=30)
    assert time.monotonic() - asked < 2.0  # the running sender noticed within 2 seconds
    assert sender.returncode == 0 and "paused" in out
    got = len(slow_server.handler.received)
    assert got < RECIPIENTS
    time.sleep(0.5)
    assert len(slow_server.handler.received) == got  # nothing more goes out while paused

    assert mailer(workdir, "blast", "resume", "1").returncode == 0
    assert per_recipient(slow_server) == {a: 1 for a in everyone()}
    assert unknown_addresses(workdir) == set()


def test_sigterm_drains_and_leaves_the_blast_resumable(
    workdir: Path, slow_server: SmtpTestServer
) -> None:
    # Slower, so the rest is still being sent when a command started under load
    # (a new Python process: a second or more on a busy machine) arrives.
    slow_server.handler.delay = 0.08
    sender = start_sending(workdir)
    wait_until_received(slow_server, 20, sender)
    sender.send_signal(signal.SIGTERM)
    _, err = sender.communicate(timeout=30)
    assert sender.returncode == 1 and "stopped by SIGTERM" in err
    listing = mailer(workdir, "blast", "list")
    assert "paused" in listing.stdout
    assert unknown_addresses(workdir) == set()  # in-flight messages were finished and recorded
    assert mailer(workdir, "blast", "resume", "1").returncode == 0
    assert per_recipient(slow_server) == {a: 1 for a in everyone()}


def helper_joined(cwd: Path) -> bool:
    with contextlib.closing(sqlite3.connect(cwd / "m.db")) as conn:
        found = conn.execute(
            "SELECT count(*) FROM event WHERE action = 'blast.joined' AND actor LIKE 'helper:%'"
        ).fetchone()
    return bool(found[0])


def test_sigterm_to_a_send_with_helper_processes_stops_them_all(
    workdir: Path, slow_server: SmtpTestServer
) -> None:
    update_config(workdir / "mailer.toml", "sending", processes=2)
    slow_server.handler.delay = 0.08
    sender = start_sending(workdir)
    wait_until_received(slow_server, 20, sender)
    deadline = time.monotonic() + 30  # a helper process has joined the blast
    while not helper_joined(workdir):
        assert time.monotonic() < deadline and sender.poll() is None
        time.sleep(0.2)
    sender.send_signal(signal.SIGTERM)
    _, err = sender.communicate(timeout=30)  # it waits for its helper to stop
    assert sender.returncode == 1 and "stopped by SIGTERM" in err
    got = len(slow_server.handler.received)
    assert got < RECIPIENTS
    time.sleep(0.5)
    assert len(slow_server.handler.received) == got  # no helper goes on sending
    assert "paused" in mailer(workdir, "blast", "list").stdout
    assert unknown_addresses(workdir) == set()
    assert mailer(workdir, "blast", "resume", "1").returncode == 0
    assert per_recipient(slow_server) == {a: 1 for a in everyone()}

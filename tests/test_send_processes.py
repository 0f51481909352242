"""``[sending] processes``: helper sender processes on one blast (real processes, real SMTP)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import col, select

from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.send import control, processes
from mailer.send.policy import connections_for
from mailer.send.processes import (
    AUTO_MAX_SERVER,
    AUTO_MAX_SQLITE,
    AUTO_MESSAGES_PER_PROCESS,
    SenderProcesses,
    sender_count,
)
from mailer.store import Blast, BlastStatus, Database, Delivery, DeliveryState, Event
from mailer.store.models import utcnow
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.processes import blast_site, update_config
from tests.smtpserver import SmtpTestServer


def new_blast(db: Database, settings: Settings, count: int, domains: int = 4) -> int:
    everyone = [p for d in range(domains) for p in people(count // domains, f"d{d}.example.org")]
    add_people(db, "members", everyone)
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    return blast.id


def per_recipient(server: SmtpTestServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in server.handler.received)


def states(db: Database, blast_id: int) -> Counter[str]:
    with db.session() as session:
        found = session.exec(select(Delivery.state).where(Delivery.blast_id == blast_id)).all()
    return Counter(str(s) for s in found)


def joined_by_helpers(db: Database, blast_id: int) -> list[Event]:
    with db.session() as session:
        return list(
            session.exec(
                select(Event).where(
                    Event.blast_id == blast_id,
                    Event.action == "blast.joined",
                    col(Event.actor).startswith("helper:"),
                )
            ).all()
        )


@pytest.mark.processes
def test_two_processes_send_each_recipient_once(db: Database, smtp_server: SmtpTestServer) -> None:
    # Slow (alone, about 20 messages a second), so that the helper, a new Python
    # process that may take seconds to start on a busy machine, joins while work is left.
    smtp_server.handler.delay = 0.1
    settings = make_settings(
        smtp_port=smtp_server.port,
        sending={"processes": 2, "connections": 2, "control_interval": 0.2},
    )
    blast_id = new_blast(db, settings, 120)
    advanced: list[int] = []

    class Counting:
        def start(self, total: int, done: int) -> None:
            pass

        def advance(self, count: int) -> None:
            advanced.append(count)

        def finish(self) -> None:
            pass

    result = send_now(db, settings, blast_id, progress=Counting())

    assert result.status is BlastStatus.DONE and result.error == ""
    assert result.counts["sent"] == 120
    counts = per_recipient(smtp_server)
    assert len(counts) == 120 and set(counts.values()) == {1}
    assert states(db, blast_id) == {"sent": 120}
    assert len(joined_by_helpers(db, blast_id)) == 1  # a second process really sent
    assert sum(advanced) == 120  # the helper's progress reached the parent's bar


def test_a_helper_never_resumes_a_paused_blast(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = new_blast(sqlite_db, settings, 20)
    with sqlite_db.session() as session:
        blast = session.get(Blast, blast_id)
        assert blast is not None
        blast.status = BlastStatus.SENDING  # as if a sender had started it
        control.pause(session, blast, actor="test", now=utcnow())

    url = sqlite_db.engine.url.render_as_string(hide_password=False)
    with SenderProcesses(url, settings, blast_id, 1, None) as helpers:
        pass
    assert [p.exitcode for p in helpers.processes] == [0]
    with sqlite_db.session() as session:
        blast = session.get(Blast, blast_id)
        assert blast is not None and blast.status is BlastStatus.PAUSED
    assert smtp_server.handler.received == []


@pytest.mark.processes
def test_processes_divide_the_rate_between_them(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(
        smtp_port=smtp_server.port,
        sending={"processes": 2, "rate": 20.0, "control_interval": 0.2},
    )
    blast_id = new_blast(sqlite_db, settings, 120)
    result = send_now(sqlite_db, settings, blast_id)
    assert result.counts["sent"] == 120
    assert len(joined_by_helpers(sqlite_db, blast_id)) == 1
    # Measured at the server over the busiest stretch, once both senders ran: each
    # process alone would take the whole 20 a second.
    times = sorted(r.at for r in smtp_server.handler.received)
    window = times[-1] - times[20]
    assert window > 0 and (len(times) - 21) / window <= 23.0


def test_processes_may_not_be_negative(sqlite_db: Database, smtp_server: SmtpTestServer) -> None:
    settings = make_settings(smtp_port=smtp_server.port, sending={"processes": -1})
    blast_id = new_blast(sqlite_db, settings, 4)
    with pytest.raises(ConfigError, match=r"sending\.processes"):
        send_now(sqlite_db, settings, blast_id)
    assert states(sqlite_db, blast_id) == {}  # nothing started


def test_the_default_is_a_sender_per_core_within_bounds() -> None:
    assert Settings().sending.processes == 0  # what `mailer init` writes

    def auto(backend: str = "sqlite", messages: int = 10**6, cores: int = 2) -> int:
        return sender_count(0, backend=backend, in_memory=False, messages=messages, cores=cores)

    assert auto(cores=2) == 2 and auto(cores=1) == 1
    assert auto(cores=64) == AUTO_MAX_SQLITE  # SQLite has one writer
    assert auto("postgresql", cores=64) == AUTO_MAX_SERVER
    # A helper's start (a fresh interpreter) is not worth it for a small blast.
    assert auto(messages=AUTO_MESSAGES_PER_PROCESS * 2 - 1, cores=8) == 1
    assert auto(messages=AUTO_MESSAGES_PER_PROCESS * 2, cores=8) == 2
    assert auto(messages=0) == 1
    # An in-memory SQLite database cannot be shared with another process.
    assert sender_count(0, backend="sqlite", in_memory=True, messages=10**6, cores=8) == 1
    # A number set by hand is taken as it is.
    assert sender_count(3, backend="sqlite", in_memory=False, messages=1, cores=1) == 3


def test_automatic_connections_share_32_over_the_processes() -> None:
    assert Settings().sending.connections == 0  # what `mailer init` writes
    assert [connections_for(0, n) for n in (1, 2, 3, 4, 8, 16, 64)] == [16, 16, 10, 8, 4, 2, 1]
    assert connections_for(5, 4) == 5  # a number set by hand is taken as it is
    # Each process's settings carry its share, so helpers open the same number.
    settings = processes.for_processes(Settings(), 4)
    assert settings.sending.connections == 8
    assert processes.for_processes(settings, 2) is settings  # resolved stays as it is


def test_by_default_a_small_blast_is_sent_by_one_process(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    assert settings.sending.processes == 0
    blast_id = new_blast(sqlite_db, settings, 40)
    result = send_now(sqlite_db, settings, blast_id)
    assert result.counts["sent"] == 40
    assert joined_by_helpers(sqlite_db, blast_id) == []


@pytest.mark.processes
def test_by_default_a_large_enough_blast_gets_a_sender_per_core(
    sqlite_db: Database, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 120 messages count as large here, so that the test stays short.
    monkeypatch.setattr(processes, "AUTO_MESSAGES_PER_PROCESS", 30)
    smtp_server.handler.delay = 0.1  # slow, so that the helpers join while work is left
    settings = make_settings(smtp_port=smtp_server.port, sending={"connections": 2})
    blast_id = new_blast(sqlite_db, settings, 120)
    result = send_now(sqlite_db, settings, blast_id)
    assert result.status is BlastStatus.DONE and result.counts["sent"] == 120
    counts = per_recipient(smtp_server)
    assert len(counts) == 120 and set(counts.values()) == {1}
    wanted = min(processes.usable_cores(), AUTO_MAX_SQLITE, 4)
    assert len(joined_by_helpers(sqlite_db, blast_id)) == wanted - 1


def catches_sigterm(pid: int | None) -> bool:
    """Whether process ``pid`` has a handler of its own for SIGTERM (Linux's /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_helpers_told_to_stop_before_the_blast_starts_leave_quietly(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = new_blast(sqlite_db, settings, 20)
    url = sqlite_db.engine.url.render_as_string(hide_password=False)
    helpers = SenderProcesses(url, settings, blast_id, 1, None)

    def parent_fails() -> None:
        with helpers:
            deadline = time.monotonic() + 60  # the helper is up (a new interpreter)
            while not catches_sigterm(helpers.processes[0].pid):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.5)  # and waiting for the parent's snapshot
            raise RuntimeError("the parent failed before it started the blast")

    with pytest.raises(RuntimeError):
        parent_fails()
    assert [p.exitcode for p in helpers.processes] == [0]  # it left, was not killed
    assert states(sqlite_db, blast_id) == {}
    assert smtp_server.handler.received == []


def test_a_helper_started_before_the_parent_waits_for_its_snapshot(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    smtp_server.handler.delay = 0.01
    settings = make_settings(smtp_port=smtp_server.port, sending={"control_interval": 0.2})
    blast_id = new_blast(sqlite_db, settings, 80)
    url = sqlite_db.engine.url.render_as_string(hide_password=False)
    with SenderProcesses(url, settings, blast_id, 1, None):
        time.sleep(1.0)  # the helper is up and finds a draft: it must wait, not start it
        assert states(sqlite_db, blast_id) == {}
        result = send_now(sqlite_db, settings, blast_id)
    assert result.counts["sent"] == 80
    counts = per_recipient(smtp_server)
    assert len(counts) == 80 and set(counts.values()) == {1}
    assert states(sqlite_db, blast_id) == {DeliveryState.SENT.value: 80}


def test_helpers_are_forked_only_on_sqlite_from_a_process_without_other_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mailer.send.processes.threading.active_count", lambda: 1)
    assert processes.start_method("sqlite:///mailer.db") == "fork"
    # A copy of a connection to a database server would share the parent's socket.
    assert processes.start_method("postgresql+psycopg://127.0.0.1/test") == "spawn"
    # Another thread could hold a lock at the fork that the copy would wait on for ever.
    monkeypatch.setattr("mailer.send.processes.threading.active_count", lambda: 2)
    assert processes.start_method("sqlite:///mailer.db") == "spawn"


@pytest.mark.processes
def test_the_cli_forks_its_helper_and_each_recipient_gets_one_message(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    """`mailer blast send` runs no other thread: its helper is a fork, at work at once."""
    url = f"sqlite:///{tmp_path / 'mailer.db'}"
    site = blast_site(tmp_path, url, smtp_server, people=60, blast="b", organization_name=None)
    try:
        smtp_server.handler.delay = 0.05  # the parent alone would take seconds
        update_config(site.config, "sending", processes=2, connections=2)
        done = site.mailer("-v", "blast", "send", "1")
        assert done.returncode == 0, done.stderr
        assert "starting 1 helper sender process by fork" in done.stderr
        counts = per_recipient(smtp_server)
        assert len(counts) == 60 and set(counts.values()) == {1}
        assert states(site.db, 1) == {"sent": 60}
        assert len(joined_by_helpers(site.db, 1)) == 1
    finally:
        site.close()

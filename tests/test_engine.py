"""The sending engine under faults, with real aiosmtpd servers and real databases.

Each test names the invariant of DESIGN.md it proves.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from mailer.assemble import composer_for, make_sender
from mailer.blasts import create_blast, send_now
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.send import control, marks
from mailer.send.engine import SendResult, delivery_counts
from mailer.send.policy import skipped_row
from mailer.send.run import AsyncLedger, BlastRun, Stop
from mailer.store import BlastStatus, Database, Delivery, DeliveryState, Supporter, find_blast
from mailer.store.models import utcnow
from tests.conftest import TEST_SECRET, both_smtp_paths, make_settings
from tests.factories import Person, add_people, people
from tests.smtpserver import S550_NO_SUCH_USER, SmtpTestServer

S421_TOO_MANY = "421 4.7.0 Too many messages, slow down"
S451_LOCAL_ERROR = "451 4.3.0 Local error, try again"


def blast(db: Database, settings: Settings, *, segment: dict[str, object] | None = None) -> int:
    created = create_blast(
        db,
        settings,
        name="alert",
        template="executive-orders",
        list_names=["members"],
        segment=segment,
    )
    assert created.id is not None
    return created.id


def states(db: Database, blast_id: int) -> dict[str, DeliveryState]:
    with db.session() as session:
        rows = session.exec(
            select(Supporter.email, Delivery.state)
            .join(Delivery, Delivery.supporter_id == Supporter.id)  # type: ignore[arg-type]
            .where(Delivery.blast_id == blast_id)
        ).all()
    return {email: DeliveryState(state) for email, state in rows}


def received_once_each(server: SmtpTestServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in server.handler.received)


def test_temporary_failures_for_a_fraction_all_end_sent(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    """Invariant 4: 421/451 are retried with backoff; invariant 1: nobody twice."""
    throttled = [Person(f"t{i}@busy{i}.example.net") for i in range(3)]
    everyone = people(17) + throttled
    add_people(db, "members", everyone)
    for p in everyone[:3]:
        smtp_server.handler.refuse_first[p.email] = (S451_LOCAL_ERROR, 2)
    for p in throttled:  # 421 also pauses the domain (adaptive backoff, 2 s at first)
        smtp_server.handler.refuse_first[p.email] = (S421_TOO_MANY, 1)
    settings = make_settings(smtp_port=smtp_server.port)
    result = send_now(db, settings, blast(db, settings))
    assert result.status is BlastStatus.DONE and result.counts["sent"] == 20
    assert received_once_each(smtp_server) == {p.email: 1 for p in everyone}
    assert all(smtp_server.handler.rcpt_attempts[p.email] == 3 for p in everyone[:3])
    assert all(smtp_server.handler.rcpt_attempts[p.email] == 2 for p in throttled)


@both_smtp_paths
def test_permanent_failure_is_not_retried(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(db, "members", people(3))
    smtp_server.handler.refuse["p1@example.org"] = S550_NO_SUCH_USER
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = blast(db, settings)
    send_now(db, settings, blast_id)
    assert states(db, blast_id)["p1@example.org"] is DeliveryState.FAILED
    assert smtp_server.handler.rcpt_attempts["p1@example.org"] == 1


@both_smtp_paths
def test_connection_dropped_during_data_is_retried_not_doubled(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(5))
    smtp_server.handler.drop_in_data["p2@example.org"] = 1
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = blast(db, settings)
    result = send_now(db, settings, blast_id)
    assert result.status is BlastStatus.DONE and result.counts["sent"] == 5
    assert smtp_server.handler.data_attempts["p2@example.org"] == 2
    assert received_once_each(smtp_server) == {p.email: 1 for p in people(5)}


@both_smtp_paths
def test_a_stalling_server_times_out_and_is_retried(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(3))
    smtp_server.handler.stall_in_data["p0@example.org"] = (3.0, 1)
    settings = make_settings(smtp_port=smtp_server.port, smtp={"timeout": 0.5})
    blast_id = blast(db, settings)
    result = send_now(db, settings, blast_id)
    assert result.status is BlastStatus.DONE and result.counts["sent"] == 3
    with db.session() as session:
        row = session.exec(
            select(Delivery)
            .join(Supporter, Supporter.id == Delivery.supporter_id)  # type: ignore[arg-type]
            .where(Supporter.email == "p0@example.org")
        ).one()
    assert row.attempts == 2
    assert received_once_each(smtp_server)["p0@example.org"] == 1


def test_k_connections_carry_the_blast(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(db, "members", [Person(f"s{i}@d{i % 8}.example.org") for i in range(40)])
    smtp_server.handler.delay = 0.02
    settings = make_settings(smtp_port=smtp_server.port, sending={"connections": 4})
    result = send_now(db, settings, blast(db, settings))
    assert result.counts["sent"] == 40
    assert len(smtp_server.handler.peers) == 4  # four sessions, each carrying many messages


def test_automatic_connections_are_sixteen_for_one_process(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", [Person(f"s{i}@d{i % 8}.example.org") for i in range(64)])
    smtp_server.handler.delay = 0.05  # slow enough that every connection gets work
    settings = make_settings(smtp_port=smtp_server.port, sending={"processes": 1})
    assert settings.sending.connections == 0
    result = send_now(db, settings, blast(db, settings))
    assert result.counts["sent"] == 64
    assert len(smtp_server.handler.peers) == 16


def test_per_domain_concurrency_is_observed_at_the_server(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    add_people(
        db,
        "members",
        [Person(f"u{i}@big.example.org") for i in range(12)]
        + [Person(f"v{i}@small.example.net") for i in range(4)],
    )
    smtp_server.handler.delay = 0.05
    settings = make_settings(
        smtp_port=smtp_server.port, sending={"connections": 6, "domain_concurrency": 2}
    )
    result = send_now(db, settings, blast(db, settings))
    assert result.counts["sent"] == 16
    assert smtp_server.handler.max_in_data["big.example.org"] == 2
    assert smtp_server.handler.max_in_data["small.example.net"] <= 2


def test_failover_relay_takes_over(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(db, "members", people(3))
    settings = make_settings(
        smtp_port=free_port(),  # nobody listens there
        smtp={"failover": [f"127.0.0.1:{smtp_server.port}"]},
    )
    result = send_now(db, settings, blast(db, settings))
    assert result.status is BlastStatus.DONE and len(smtp_server.handler.received) == 3


def test_segment_narrows_the_audience(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(
        db,
        "members",
        [
            Person("ana@example.org", "Ana", "es"),
            Person("bo@example.org", "Bo", "en"),
            Person("cy@example.org", "Cy", "es"),
        ],
    )
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = blast(db, settings, segment={"language": ["es"]})
    send_now(db, settings, blast_id)
    assert sorted(states(db, blast_id)) == ["ana@example.org", "cy@example.org"]


class Sending:
    """``send_now`` of one blast on a thread of its own, started at once: what it
    returned, or what it raised, is kept for the test to look at."""

    def __init__(self, db: Database, settings: Settings, blast_id: int) -> None:
        self.returned: SendResult | None = None
        self.raised: BaseException | None = None
        self._thread = threading.Thread(target=self._send, args=(db, settings, blast_id))
        self._thread.start()

    def _send(self, db: Database, settings: Settings, blast_id: int) -> None:
        try:
            self.returned = send_now(db, settings, blast_id)
        except BaseException as exc:
            self.raised = exc

    def join(self, timeout: float) -> None:
        """Wait for the send to end; a test failure if it does not within ``timeout`` s."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"send_now still running after {timeout} s"

    def result(self) -> SendResult:
        """What the ended send returned; what it raised is raised again here."""
        assert not self._thread.is_alive(), "the send has not ended: join() first"
        if self.raised is not None:
            raise self.raised
        assert self.returned is not None
        return self.returned


def wait_for(condition: object, seconds: float = 20.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_pause_stops_a_running_sender_and_resume_finishes(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    everyone = people(30)
    add_people(db, "members", everyone)
    smtp_server.handler.delay = 0.05
    settings = make_settings(smtp_port=smtp_server.port, sending={"connections": 1})
    blast_id = blast(db, settings)
    sending = Sending(db, settings, blast_id)
    wait_for(lambda: len(smtp_server.handler.received) >= 5)
    with db.session() as session:
        control.pause(session, find_blast(session, blast_id), actor="test", now=utcnow())
    paused_at = time.monotonic()
    sending.join(timeout=10)
    assert time.monotonic() - paused_at < 2.0
    result = sending.result()
    assert result.status is BlastStatus.PAUSED
    got = len(smtp_server.handler.received)
    assert got < 30 and result.counts["sending"] == 0
    result = send_now(db, settings, blast_id)  # resume
    assert result.status is BlastStatus.DONE
    assert received_once_each(smtp_server) == {p.email: 1 for p in everyone}


def test_outcomes_taken_for_writing_survive_a_cancelled_recorder(db: Database) -> None:
    """Invariant 2: a recorded outcome is never dropped on the way to the database.

    The recorder is cancelled when a run ends; if its write was still waiting for
    the database thread then, the rows it had taken must be written all the same.
    """
    add_people(db, "members", people(3))
    settings = make_settings()
    blast_id = blast(db, settings)
    sender = make_sender(db, settings)
    sender.start(blast_id)
    claimed = sender.ledger.claim(blast_id, 0, 10)
    with db.session() as session:
        composer = composer_for(db, settings, find_blast(session, blast_id))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        database_thread = ThreadPoolExecutor(max_workers=1)
        ledger = AsyncLedger(sender.ledger, database_thread)
        run = BlastRun(ledger, blast_id, composer, sender.transport_factory, stop=Stop())
        gate = threading.Event()
        busy = loop.run_in_executor(database_thread, gate.wait)  # the thread is busy
        for item in claimed:
            run.add_outcome(skipped_row(item, now=utcnow()))
        recorder = asyncio.create_task(run.flush_outcomes())
        await asyncio.sleep(0.05)
        recorder.cancel()
        gate.set()
        await busy
        await loop.run_in_executor(database_thread, lambda: None)  # what was queued has run
        await ledger.close()
        database_thread.shutdown(wait=True)

    asyncio.run(scenario())
    assert len(claimed) == 3
    assert delivery_counts(db, blast_id)["skipped"] == 3


def test_cancel_skips_what_is_not_sent(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(db, "members", people(30))
    smtp_server.handler.delay = 0.05
    settings = make_settings(smtp_port=smtp_server.port, sending={"connections": 1})
    blast_id = blast(db, settings)
    sending = Sending(db, settings, blast_id)
    wait_for(lambda: len(smtp_server.handler.received) >= 3)
    with db.session() as session:
        control.cancel(session, find_blast(session, blast_id), actor="test", now=utcnow())
    sending.join(timeout=10)
    result = sending.result()
    assert result.status is BlastStatus.CANCELLED
    counts = result.counts
    assert counts["sent"] == len(smtp_server.handler.received)
    assert counts["sent"] + counts["skipped"] == 30 and counts["queued"] == 0


def test_hourly_cap_holds_the_rest_back(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(db, "members", people(5))
    settings = make_settings(smtp_port=smtp_server.port, sending={"hourly_limit": 3})
    blast_id = blast(db, settings)
    sending = Sending(db, settings, blast_id)
    wait_for(lambda: len(smtp_server.handler.received) >= 3)
    time.sleep(1.0)
    assert len(smtp_server.handler.received) == 3  # the window is full: the rest waits
    with db.session() as session:
        control.pause(session, find_blast(session, blast_id), actor="test", now=utcnow())
    sending.join(timeout=10)
    assert sending.result().counts["queued"] == 2


def test_a_recipient_whose_message_cannot_be_built_fails_alone(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    # Not importable (the importer takes ASCII addresses only), but a list can be filled by
    # other means: a non-ASCII local part cannot go into an SMTP envelope without SMTPUTF8.
    add_people(db, "members", [*people(2), Person("zoë@example.org", "Zoë")])
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = blast(db, settings)
    result = send_now(db, settings, blast_id)
    assert result.status is BlastStatus.DONE
    assert states(db, blast_id)["zoë@example.org"] is DeliveryState.FAILED
    assert result.counts["sent"] == 2


def test_verp_envelope_sender_names_the_delivery(db: Database, smtp_server: SmtpTestServer) -> None:
    add_people(db, "members", people(2))
    settings = make_settings(
        smtp_port=smtp_server.port,
        sender={"return_path": "bounces@example.org", "verp": True},
    )
    blast_id = blast(db, settings)
    send_now(db, settings, blast_id)
    signer = TokenSigner(TEST_SECRET)
    with db.session() as session:
        ids = {
            email: d_id
            for email, d_id in session.exec(
                select(Supporter.email, Delivery.id)
                .join(Delivery, Delivery.supporter_id == Supporter.id)  # type: ignore[arg-type]
                .where(Delivery.blast_id == blast_id)
            ).all()
        }
    for item in smtp_server.handler.received:
        local, domain = item.mail_from.split("@")
        assert domain == "example.org" and local.startswith("bounces+")
        assert signer.read_bounce(local.removeprefix("bounces+")) == ids[item.rcpt_tos[0]]
        assert item.message()["From"].addresses[0].addr_spec == "alerts@example.org"


def one_connection_blast(
    db: Database, smtp_server: SmtpTestServer
) -> tuple[list[Person], Settings, int, sqlite3.Connection]:
    """30 people, sent over one slowed connection; and another connection to the file."""
    everyone = people(30)
    add_people(db, "members", everyone)
    smtp_server.handler.delay = 0.01
    settings = make_settings(smtp_port=smtp_server.port, sending={"connections": 1})
    blast_id = blast(db, settings)
    other = sqlite3.connect(str(db.engine.url.database), isolation_level=None, timeout=30)
    return everyone, settings, blast_id, other


def test_marks_wait_out_the_write_lock_another_process_holds(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    """On SQLite the marks are written on the event loop's thread without waiting in
    SQLite: a taken write lock holds the next messages back until it is let go."""
    everyone, settings, blast_id, other = one_connection_blast(sqlite_db, smtp_server)
    sending = Sending(sqlite_db, settings, blast_id)
    try:
        wait_for(lambda: len(smtp_server.handler.received) >= 3)
        other.execute("BEGIN IMMEDIATE")  # as another process would: the write lock
        held_from = len(smtp_server.handler.received)
        time.sleep(0.5)
        held_to = len(smtp_server.handler.received)
        other.execute("COMMIT")
    finally:
        sending.join(timeout=30)
        other.close()
    # One connection: what was marked before the lock was taken (the message on the
    # wire, and the next one) may still go; nothing more until the lock is let go.
    assert held_to - held_from <= 2
    assert sending.result().status is BlastStatus.DONE
    assert received_once_each(smtp_server) == {p.email: 1 for p in everyone}


def test_a_failing_mark_stops_the_send_before_anything_unmarked_goes(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    add_people(sqlite_db, "members", people(5))
    settings = make_settings(smtp_port=smtp_server.port)
    blast_id = blast(sqlite_db, settings)
    with sqlite_db.engine.begin() as conn:  # the database refuses every mark
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_marks BEFORE UPDATE OF state ON delivery"
            " WHEN NEW.state = 'sending' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(sqlite3.DatabaseError, match="disk on fire"):
        send_now(sqlite_db, settings, blast_id)
    assert smtp_server.handler.received == []
    assert set(states(sqlite_db, blast_id).values()) == {DeliveryState.QUEUED}


def test_marks_give_up_on_a_write_lock_held_past_the_busy_timeout(
    sqlite_db: Database, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(marks, "BUSY_TIMEOUT", 0.2)
    _, settings, blast_id, other = one_connection_blast(sqlite_db, smtp_server)
    sending = Sending(sqlite_db, settings, blast_id)
    try:
        wait_for(lambda: len(smtp_server.handler.received) >= 3)
        other.execute("BEGIN IMMEDIATE")
        time.sleep(1.0)  # well past the marks' 0.2 s
        other.execute("COMMIT")
    finally:
        sending.join(timeout=30)
        other.close()
    with pytest.raises(
        sqlite3.OperationalError, match=r"database is locked: no write lock for the marks in 0\.2 s"
    ):
        sending.result()
    got = received_once_each(smtp_server)
    assert set(got.values()) == {1} and len(got) < 30

"""`mailer scheduler` and `mailer worker` as real processes, on SQLite and PostgreSQL.

Two schedulers: one acts, the other stands by; ``kill -9`` the active one and
the other takes over and starts the next blast once. A scheduler alone never
sends; a worker sends what schedulers start and drains on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from mailer.schedule import planner
from mailer.schedule.leader import scheduler_lock
from mailer.store import Database, Delivery, Event, Supporter, migrate, open_database
from tests.conftest import pg_schema
from tests.processes import (
    Site,
    blast_site,
    numbered,
    stop_while_holding,
    update_config,
    wait_for,
    write_people,
)
from tests.smtpserver import SmtpTestServer

PEOPLE = 12
SITE: dict[str, Any] = {"people": PEOPLE, "blast": "b", "organization_name": None}


@pytest.fixture
def site(tmp_path: Path, empty_url: str, smtp_server: SmtpTestServer) -> Iterator[Site]:
    site = blast_site(tmp_path, empty_url, smtp_server, **SITE)
    yield site
    site.close()


def received(server: SmtpTestServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in server.handler.received)


@pytest.mark.processes
def test_a_standby_scheduler_takes_over_after_kill_9_and_starts_the_blast_once(
    site: Site,
) -> None:
    first = site.start("scheduler")
    wait_for(lambda: "scheduler.active" in site.events(first))
    second = site.start("scheduler")
    wait_for(lambda: "scheduler.standby" in site.events(second))

    at = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    site.ok("blast", "schedule", "1", "--at", at.isoformat())
    wait_for(lambda: "blast.job_set" in site.events(first))
    assert "blast.job_set" not in site.events(second)  # the standby does nothing

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    took = wait_for(lambda: "scheduler.active" in site.events(second), seconds=10)
    assert took < 3.0, f"took over after {took:.1f} s"
    assert datetime.now(UTC) < at, "the takeover must happen before the blast is due"

    wait_for(lambda: site.blast().status == "sending")
    started = site.blast().started_at
    assert started is not None and abs((started - at).total_seconds()) <= 2.0
    assert site.count(Delivery, Delivery.blast_id == 1) == PEOPLE
    assert site.count(Event, Event.action == "blast.started") == 1
    time.sleep(1.0)
    assert site.smtp.handler.received == []  # schedulers never send

    worker = site.start("worker")
    wait_for(lambda: site.blast().status == "done")
    counts = received(site.smtp)
    assert len(counts) == PEOPLE and set(counts.values()) == {1}
    assert site.count(Event, Event.action == "blast.started") == 1
    site.stop(worker)
    site.stop(second)


@pytest.mark.processes
def test_a_worker_drains_on_sigterm_and_another_finishes_the_blast(site: Site) -> None:
    site.smtp.handler.delay = 0.15  # slow enough to stop the worker midway
    # Fewer connections than recipients, so that some are still queued when it stops.
    update_config(site.config, "sending", connections=4)
    later = datetime.now(UTC) + timedelta(hours=1)
    site.ok("blast", "schedule", "1", "--at", later.isoformat(timespec="seconds"))
    with site.db.session() as session:  # what a scheduler does when the blast is due
        assert planner.start_due(
            session, 1, now=datetime.now(UTC), dialect=site.db.engine.dialect.name, actor="test"
        )
    worker = site.start("worker")
    wait_for(lambda: len(site.smtp.handler.received) >= 2)
    site.stop(worker)
    assert "blast.sending" in site.events(worker)
    sent_first = len(site.smtp.handler.received)
    assert 2 <= sent_first < PEOPLE
    assert site.blast().status == "sending"  # left for the next worker, not paused
    assert site.count(Delivery, Delivery.state == "sending") == 0
    assert site.count(Delivery, Delivery.state == "sent") == sent_first

    site.smtp.handler.delay = 0.0
    again = site.start("worker")
    wait_for(lambda: site.blast().status == "done")
    counts = received(site.smtp)
    assert len(counts) == PEOPLE and set(counts.values()) == {1}
    site.stop(again)


@pytest.mark.parametrize("empty_url", ["postgresql"], indirect=True)
@pytest.mark.processes
def test_three_workers_share_a_blast_and_survive_a_kill_9(site: Site) -> None:
    """Invariant 1 with `mailer worker` processes: one killed with SIGKILL mid-blast,
    the other two take its rows over; everyone gets the alert once, except what
    was in flight at the kill, which is reported as unknown (and sent at most once)."""
    more = 48
    write_people(site.path, numbered(more, letter="q"))
    site.ok("import", "people.csv", "--list", "all")  # 60 in all, before the snapshot
    # Small claims, one connection each and short leases, so that all three share the
    # blast and the killed one's rows are taken over quickly.
    update_config(site.config, "sending", batch_size=4, connections=1, lease_seconds=1.0)
    site.smtp.handler.delay = 0.1
    later = datetime.now(UTC) + timedelta(hours=1)
    site.ok("blast", "schedule", "1", "--at", later.isoformat(timespec="seconds"))
    with site.db.session() as session:  # what a scheduler does when the blast is due
        assert planner.start_due(
            session, 1, now=datetime.now(UTC), dialect=site.db.engine.dialect.name, actor="test"
        )
    workers = [site.start("worker") for _ in range(3)]
    wait_for(lambda: len(site.smtp.handler.received) >= 12)
    stop_while_holding(site.db, workers[0])
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait(timeout=10)
    wait_for(lambda: site.blast().status == "done", seconds=60)

    everyone = PEOPLE + more
    assert site.count(Delivery, Delivery.blast_id == 1) == everyone
    with site.db.session() as session:
        unknown = set(
            session.exec(
                select(Supporter.email)
                .join(Delivery, Delivery.supporter_id == Supporter.id)  # type: ignore[arg-type]
                .where(Delivery.state == "unknown")
            ).all()
        )
    # One connection: the message on the wire, the next one (already marked), and one
    # sent whose outcome was still waiting for its group commit (every 50 ms).
    assert len(unknown) <= 3
    counts = received(site.smtp)
    assert set(counts.values()) <= {1}
    missing = {f"p{i}@example.org" for i in range(PEOPLE)} | {
        f"q{i}@example.org" for i in range(more)
    }
    missing -= set(counts)
    assert missing <= unknown  # nobody is left out but a reported unknown
    assert site.count(Event, Event.action == "blast.senders_recovered") >= 1
    for worker in workers[1:]:
        site.stop(worker)


def test_one_lock_holder_per_database(empty_url: str) -> None:
    db = open_database(empty_url, create=True)
    try:
        first, second = scheduler_lock(db.engine), scheduler_lock(db.engine)
        assert first.acquire() and first.held()
        assert not second.acquire() and not second.held()
        first.release()
        assert not first.held()
        assert second.acquire()
        second.release()
    finally:
        db.dispose()


def test_locks_of_different_postgresql_schemas_are_independent(pg_db: Database) -> None:
    with pg_schema() as other_url:
        other = open_database(other_url)
        try:
            mine, theirs = scheduler_lock(pg_db.engine), scheduler_lock(other.engine)
            assert mine.acquire() and theirs.acquire()
            mine.release()
            theirs.release()
        finally:
            other.dispose()


def test_the_scheduler_steps_down_when_its_lock_connection_dies(pg_db: Database) -> None:
    lock = scheduler_lock(pg_db.engine)
    assert lock.acquire()
    with pg_db.engine.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND classid = 1835100524 AND granted"
                " AND objid::int = hashtext(current_schema())"
            )
        )
    assert not lock.held()
    other = scheduler_lock(pg_db.engine)
    assert wait_for(lambda: other.acquire(), seconds=5) < 5
    other.release()
    lock.release()


@pytest.mark.processes
def test_the_organizer_commands_work_on_postgresql(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    """The CLI suite runs on SQLite; here every data command once more on PostgreSQL."""
    with pg_schema() as pg_url:
        site = blast_site(
            tmp_path, pg_url, smtp_server, **SITE
        )  # init (on import), import, blast create
        try:
            (tmp_path / "blocked.csv").write_text("email\np1@example.org\n", "utf-8")
            site.ok("suppress", "import", "blocked.csv", "--reason", "asked")
            assert "p1@example.org" in site.ok("suppress", "export")
            assert site.ok("db", "current").strip() == f"{migrate.head()} (newest)"
            site.ok("check", "1")
            assert "List-Unsubscribe" in site.ok("preview", "1", "--to", "p0@example.org")
            site.ok("blast", "test", "1", "--to", "seed@example.org")
            later = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
            site.ok("blast", "schedule", "1", "--at", later)
            assert "scheduled" in site.ok("blast", "list")
            site.ok("blast", "unschedule", "1")
            assert f"{PEOPLE - 1} sent" in site.ok("blast", "send", "1")
            report = json.loads(site.ok("report", "1", "--json"))
            assert (report["recipients"], report["sent"]) == (PEOPLE - 1, PEOPLE - 1)
            assert len(site.ok("log", "1", "--csv").splitlines()) == PEOPLE
            assert site.ok("blast", "follow-up", "1", "--after", "1h").strip() == "2"
            assert "blast 2 scheduled" in site.ok("status")
            assert site.blast().status == "done"
        finally:
            site.close()


def test_pool_settings_reach_the_postgresql_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer.cli import AppContext

    with pg_schema() as pg_url:
        (tmp_path / "mailer.toml").write_text(f'[database]\nurl = "{pg_url}"\n', "utf-8")
        monkeypatch.setenv("MAILER_DATABASE_POOL_SIZE", "2")
        monkeypatch.setenv("MAILER_DATABASE_MAX_OVERFLOW", "1")
        app = AppContext(tmp_path / "mailer.toml")
        try:
            pool = app.db(create=True).engine.pool
            assert isinstance(pool, sa.QueuePool)
            assert (pool.size(), pool._max_overflow) == (2, 1)
        finally:
            app.close()

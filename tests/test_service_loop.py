"""The service as an object in this process: what it keeps to itself, and what it runs where.

``test_service.py`` drives ``mailer run`` as a process; these tests run
:class:`~mailer.schedule.service.Service` on an event loop of the test, on
real SQLite files and the test SMTP server.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from mailer.blasts import create_blast
from mailer.schedule import planner
from mailer.schedule.service import SCHEDULER, WORKER, Service
from mailer.store import Blast, BlastStatus, Database, Event, find_blast, open_database
from mailer.store.models import utcnow
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import SmtpTestServer

ROLES = frozenset({SCHEDULER, WORKER})


def scheduled_blast(db: Database, domain: str, port: int, in_seconds: float) -> None:
    settings = make_settings(smtp_port=port)
    add_people(db, "all", people(3, domain=domain))
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["all"]
    )
    with db.session() as session:
        now = utcnow()
        found = find_blast(session, blast.id or 0)
        planner.schedule(session, found, now + timedelta(seconds=in_seconds), actor="test", now=now)


def status(db: Database) -> BlastStatus:
    with db.session() as session:
        return BlastStatus(session.exec(select(Blast.status)).one())


async def until(condition: list[Database], seconds: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not all([await asyncio.to_thread(status, db) is BlastStatus.DONE for db in condition]):
        assert loop.time() < deadline, "the blasts did not finish in time"
        await asyncio.sleep(0.1)


def test_two_services_in_one_process_each_start_their_own_blast(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    """Nothing module-global ties a fired job to a service: each starts its own blast,
    though both blasts have id 1 and fire within the same second."""
    settings = make_settings(
        smtp_port=smtp_server.port, schedule={"poll_interval": 0.2, "misfire_grace": 30}
    )
    dbs = [open_database(f"sqlite:///{tmp_path / f'{n}.db'}", create=True) for n in "ab"]
    try:
        for name, db in zip("ab", dbs, strict=True):
            scheduled_blast(db, f"{name}.example.org", smtp_server.port, in_seconds=1.5)
        services = [Service(db, settings, host="127.0.0.1", port=0, roles=ROLES) for db in dbs]

        async def run_both() -> None:
            runs = [asyncio.create_task(service.run()) for service in services]
            try:
                await until(dbs)
            finally:
                for service in services:
                    service.request_stop()
                await asyncio.gather(*runs)

        asyncio.run(run_both())
        for db, service in zip(dbs, services, strict=True):
            with db.session() as session:
                due = session.exec(select(Event).where(Event.action == "blast.due")).all()
            assert [e.actor for e in due] == [f"service:{service.name}"]
    finally:
        for db in dbs:
            db.dispose()
    received = Counter(r.rcpt_tos[0] for r in smtp_server.handler.received)
    assert sorted(received) == sorted(
        f"p{i}@{d}.example.org" for i in range(3) for d in "ab"
    ) and set(received.values()) == {1}


def test_the_service_does_its_database_work_off_the_event_loop(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    """The look at the database, the due start and the pre-flight check run on the
    service's own thread, never on the loop the senders and the HTTP app share."""
    settings = make_settings(
        smtp_port=smtp_server.port, schedule={"poll_interval": 0.2, "misfire_grace": 30}
    )
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", create=True)
    seen: dict[str, set[str]] = {}

    class Watched(Service):
        def _look(self) -> list[int]:
            seen.setdefault("look", set()).add(threading.current_thread().name)
            return super()._look()

        def _claim_due(self, blast_id: int) -> bool:
            seen.setdefault("claim", set()).add(threading.current_thread().name)
            return super()._claim_due(blast_id)

        def _prepare(self, blast_id: int) -> object:  # type: ignore[override]
            seen.setdefault("prepare", set()).add(threading.current_thread().name)
            return super()._prepare(blast_id)

    try:
        scheduled_blast(db, "example.org", smtp_server.port, in_seconds=1.0)
        service = Watched(db, settings, host="127.0.0.1", port=0, roles=ROLES)

        async def run() -> str:
            task = asyncio.create_task(service.run())
            try:
                await until([db])
            finally:
                service.request_stop()
                await task
            return threading.current_thread().name

        loop_thread = asyncio.run(run())
    finally:
        db.dispose()
    assert set(seen) == {"look", "claim", "prepare"}
    threads = set().union(*seen.values())
    assert loop_thread not in threads
    assert len(threads) == 1 and next(iter(threads)).startswith("mailer-service-db")

"""`mailer run`: the scheduler, the sender and the HTTP app in one process.

The same class runs each part alone, by its roles: ``mailer scheduler``
(scheduling only), ``mailer worker`` (sending only); ``mailer web`` serves
the HTTP app by itself. See docs/deployment.md.

Every ``schedule.poll_interval`` seconds the service

- mirrors scheduled blasts (the ``blast`` table is the truth; organizers change
  it from any terminal) into APScheduler, whose job store lives in the
  mailer's own database, so a schedule survives restarts;
- gives waiting follow-ups their time once their original has finished;
- starts a sender for every blast that is ``sending`` without one here, which
  is how a blast interrupted by a stop or crash resumes on the next start.

When a job fires, the blast is started with one conditional update
(``scheduled`` → ``sending``): only one service can win it. A job that fires
later than ``schedule.misfire_grace`` after its time (the service was down)
is not run: the blast is marked ``missed`` with the reason.

SIGTERM or Ctrl-C stop the service gracefully: senders finish and record what
is in flight and leave their blasts ``sending`` (to resume on the next start),
the HTTP app finishes its requests, and the service says goodbye in the log.

Only one scheduler acts at a time (:mod:`mailer.schedule.leader`): a process
with the scheduler role that cannot take the lock waits as a standby and
tries again every poll, so it takes over within seconds when the active one
dies. A scheduler without the worker role does not send: when a blast is due
it takes the audience snapshot and leaves the blast ``sending`` for a worker.

Several services on one database (by mistake, or on purpose) never send a
message twice: they share the sending of a blast the way several senders do
(each claims its own deliveries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import uvicorn
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from mailer.assemble import composer_for, make_sender
from mailer.check import gate
from mailer.config import Settings
from mailer.errors import ConfigError, MailerError
from mailer.lifecycle import transition_where
from mailer.schedule import planner
from mailer.schedule.leader import scheduler_lock
from mailer.schedule.times import show
from mailer.send.engine import BlastSender, SendResult
from mailer.store import Blast, BlastStatus, Database, ServiceInstance
from mailer.store.models import utcnow
from mailer.web import app_for

log = logging.getLogger("mailer.service")

JOBS_TABLE = "apscheduler_jobs"
SCHEDULER, WORKER, WEB = "scheduler", "worker", "web"
ALL_ROLES = frozenset({SCHEDULER, WORKER, WEB})
_current: Service | None = None


def job_id(blast_id: int) -> str:
    return f"blast-{blast_id}"


async def run_scheduled(blast_id: int) -> None:
    """The APScheduler job of a scheduled blast (stored by this module path)."""
    if _current is None:  # pragma: no cover - jobs only run inside a service
        log.warning("blast %d is due but no service is running it", blast_id)
        return
    await _current.start_scheduled(blast_id)


class _Web(uvicorn.Server):
    """uvicorn without its own signal handling: the service shuts it down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _LogProgress:
    """A blast's progress as a log line every ``every`` seconds."""

    def __init__(self, blast_id: int, every: float = 10.0) -> None:
        self.blast_id = blast_id
        self.every = every
        self.total = self.done = 0
        self.last = 0.0

    def start(self, total: int, done: int) -> None:
        self.total, self.done, self.last = total, done, time.monotonic()
        self._line()

    def advance(self, count: int) -> None:
        self.done += count
        if time.monotonic() - self.last >= self.every:
            self._line()

    def finish(self) -> None:
        self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        log.info(
            "blast %d: %d/%d done",
            self.blast_id,
            self.done,
            self.total,
            extra={
                "event": "progress",
                "blast": self.blast_id,
                "done": self.done,
                "total": self.total,
            },
        )


@dataclass
class _Running:
    sender: BlastSender
    task: asyncio.Task[SendResult]


class Service:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        host: str,
        port: int,
        clock: Callable[[], datetime] = utcnow,
        roles: frozenset[str] = ALL_ROLES,
    ) -> None:
        self.db = db
        self.roles = roles
        self.settings = settings
        self.host = host
        self.port = port
        self.clock = clock
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.grace = settings.schedule.misfire_grace
        # APScheduler counts the grace in whole seconds, at least one.
        self.grace_seconds = max(1, int(self.grace))
        self.known: dict[int, datetime] = {}  # blast id -> time its job is set for
        self.running: dict[int, _Running] = {}
        self.scheduler: AsyncIOScheduler | None = None  # set while this is the active scheduler
        self.lock = scheduler_lock(db.engine) if SCHEDULER in roles else None
        self._said_standby = False

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        global _current
        _current = self
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self._register()
        self._tick()
        web: _Web | None = None
        web_task: asyncio.Task[None] | None = None
        if WEB in self.roles:
            app = app_for(self.db, self.settings)
            web = _Web(uvicorn.Config(app, host=self.host, port=self.port, log_level="warning"))
            web_task = asyncio.create_task(web.serve(), name="web")
        log.info(
            "service %s started (%s)%s",
            self.name,
            ", ".join(sorted(self.roles)),
            f"; web app on http://{self.host}:{self.port}" if web else "",
            extra={"event": "service.started", "roles": sorted(self.roles)},
        )
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.schedule.poll_interval)
                if web_task is not None and web_task.done():
                    web_task.result()  # the web app died: let the error out
                    break
                if not stop.is_set():
                    self._tick()
        finally:
            log.info("service stopping", extra={"event": "service.stopping"})
            for running in list(self.running.values()):
                running.sender.request_stop("the service is stopping", pause_blast=False)
            await asyncio.gather(*(r.task for r in self.running.values()), return_exceptions=True)
            self._step_down()
            if self.lock is not None:
                self.lock.release()
            if web is not None and web_task is not None:
                web.should_exit = True
                await asyncio.gather(web_task, return_exceptions=True)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            self._unregister()
            _current = None
            log.info("service stopped", extra={"event": "service.stopped"})

    def _tick(self) -> None:
        """One look at the database: schedules, follow-ups, blasts to send, heartbeat."""
        try:
            self._heartbeat()
            if self.lock is not None and self._lead():
                self._mirror_schedules()
            if WORKER in self.roles:
                self._resume_sending()
        except (MailerError, ConfigError) as exc:
            log.error("%s", exc, extra={"event": "service.error"})
            self._heartbeat(error=str(exc))

    # -- one active scheduler -------------------------------------------------------------

    def _lead(self) -> bool:
        """Be the active scheduler if the lock allows; False while standing by."""
        assert self.lock is not None
        if self.scheduler is not None:
            if self.lock.held():
                return True
            log.error(
                "lost the scheduler lock (database connection gone); standing by",
                extra={"event": "scheduler.lost"},
            )
            self._step_down()
            return False
        try:
            acquired = self.lock.acquire()
        except (DBAPIError, OSError) as exc:  # the database is unreachable: next poll again
            log.error("cannot take the scheduler lock: %s", exc, extra={"event": "service.error"})
            return False
        if not acquired:
            if not self._said_standby:
                self._said_standby = True
                log.info(
                    "another scheduler is active; standing by",
                    extra={"event": "scheduler.standby"},
                )
            return False
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.db.engine, tablename=JOBS_TABLE)},
            job_defaults={"misfire_grace_time": self.grace_seconds, "coalesce": True},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.start()
        log.info("this is the active scheduler", extra={"event": "scheduler.active"})
        return True

    def _step_down(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.known.clear()
        self._said_standby = False

    # -- schedules -----------------------------------------------------------------------

    def _mirror_schedules(self) -> None:
        assert self.scheduler is not None
        with self.db.session() as session:
            for follow_up in planner.place_follow_ups(session, now=self.clock()):
                log.info(
                    "follow-up %d placed at %s",
                    follow_up.id,
                    follow_up.scheduled_at,
                    extra={"event": "blast.follow_up_placed", "blast": follow_up.id},
                )
            wanted = {
                blast_id: at
                for blast_id, at in session.exec(
                    select(Blast.id, Blast.scheduled_at).where(
                        Blast.status == BlastStatus.SCHEDULED, col(Blast.scheduled_at).is_not(None)
                    )
                ).all()
                if blast_id is not None and at is not None
            }
        for blast_id, at in wanted.items():
            if self.known.get(blast_id) == at:
                continue
            job = self.scheduler.get_job(job_id(blast_id))
            # A stored job keeps the grace of the service that set it; set it again
            # so that the grace in the settings of this service decides.
            if (
                job is None
                or job.next_run_time != at
                or job.misfire_grace_time != self.grace_seconds
            ):
                self.scheduler.add_job(
                    run_scheduled,
                    "date",
                    run_date=at,
                    args=[blast_id],
                    id=job_id(blast_id),
                    replace_existing=True,
                )
                log.info(
                    "blast %d scheduled for %s",
                    blast_id,
                    show(at, self.settings.schedule.timezone),
                    extra={"event": "blast.job_set", "blast": blast_id, "at": at.isoformat()},
                )
            self.known[blast_id] = at
        for blast_id in list(self.known):
            if blast_id not in wanted:
                with contextlib.suppress(Exception):
                    self.scheduler.remove_job(job_id(blast_id))
                del self.known[blast_id]

    def _on_missed(self, event: JobExecutionEvent) -> None:
        blast_id = int(str(event.job_id).removeprefix("blast-"))
        when = show(event.scheduled_run_time, self.settings.schedule.timezone)
        reason = (
            f"missed: due at {when} while no service was running, "
            f"more than {self.grace:.0f} s ago (schedule.misfire_grace); not sent"
        )
        with self.db.session() as session:
            if planner.mark_missed(session, blast_id, reason, now=self.clock()):
                log.warning(reason, extra={"event": "blast.missed", "blast": blast_id})
        self.known.pop(blast_id, None)

    async def start_scheduled(self, blast_id: int) -> None:
        if WORKER not in self.roles:
            self._start_for_workers(blast_id)
            return
        with self.db.session() as session:
            won = planner.claim_start(
                session,
                blast_id,
                action="blast.due",
                actor=f"service:{self.name}",
                now=self.clock(),
            )
        self.known.pop(blast_id, None)
        if not won:
            log.info("blast %d was started elsewhere", blast_id, extra={"blast": blast_id})
            return
        self._start_sender(blast_id)

    def _start_for_workers(self, blast_id: int) -> None:
        with self.db.session() as session:
            won = planner.start_due(
                session,
                blast_id,
                now=self.clock(),
                dialect=self.db.engine.dialect.name,
                actor=f"scheduler:{self.name}",
            )
        self.known.pop(blast_id, None)
        if won:
            log.info(
                "blast %d started; waiting for a worker to send it",
                blast_id,
                extra={"event": "blast.started", "blast": blast_id},
            )
        else:
            log.info("blast %d was started elsewhere", blast_id, extra={"blast": blast_id})

    # -- sending ------------------------------------------------------------------------

    def _resume_sending(self) -> None:
        with self.db.session() as session:
            sending = session.exec(
                select(Blast.id).where(Blast.status == BlastStatus.SENDING)
            ).all()
        for blast_id in sending:
            if blast_id is not None and blast_id not in self.running:
                self._start_sender(blast_id)

    def _start_sender(self, blast_id: int) -> None:
        if blast_id in self.running:
            return
        with self.db.session() as session:
            blast = session.get(Blast, blast_id)
            assert blast is not None
        try:
            gate(self.db, self.settings, blast_id, force=False, actor="service")
            composer = composer_for(self.db, self.settings, blast)
        except (MailerError, ConfigError) as exc:
            self._pause_with(blast_id, f"cannot send: {exc}")
            return
        sender = make_sender(self.db, self.settings)
        task = asyncio.create_task(
            sender.send(blast_id, composer, _LogProgress(blast_id), actor=f"service:{self.name}"),
            name=f"blast-{blast_id}",
        )
        self.running[blast_id] = _Running(sender, task)
        log.info("blast %d: sending", blast_id, extra={"event": "blast.sending", "blast": blast_id})
        task.add_done_callback(lambda t: self._sender_done(blast_id, t))

    def _sender_done(self, blast_id: int, task: asyncio.Task[SendResult]) -> None:
        self.running.pop(blast_id, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "blast %d: sender failed: %s",
                blast_id,
                exc,
                extra={"event": "blast.sender_failed", "blast": blast_id},
            )
            self._heartbeat(error=f"blast {blast_id}: {exc}")
            return
        result = task.result()
        log.info(
            "blast %d is %s: %s",
            blast_id,
            result.status,
            ", ".join(f"{n} {k}" for k, n in result.counts.items() if n),
            extra={
                "event": "blast.run_ended",
                "blast": blast_id,
                "status": str(result.status),
                "error": result.error,
            },
        )

    def _pause_with(self, blast_id: int, reason: str) -> None:
        with self.db.session() as session:
            paused = transition_where(
                session,
                blast_id,
                BlastStatus.SENDING,
                BlastStatus.PAUSED,
                action="blast.paused",
                actor="service",
                now=self.clock(),
                detail={"reason": reason},
                values={"last_error": reason},
            )
        if paused is not None:
            log.error("blast %d paused: %s", blast_id, reason, extra={"blast": blast_id})
        else:  # paused or cancelled meanwhile from elsewhere: leave it as it is
            log.error("blast %d not sent: %s", blast_id, reason, extra={"blast": blast_id})

    # -- the service's own row ----------------------------------------------------------

    def _register(self) -> None:
        now = self.clock()
        with self.db.session() as session:
            session.add(
                ServiceInstance(
                    name=self.name,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    web_url=f"http://{self.host}:{self.port}" if WEB in self.roles else "",
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def _heartbeat(self, error: str | None = None) -> None:
        with self.db.session() as session:
            row = session.get(ServiceInstance, self.name)
            if row is None:
                return
            row.heartbeat_at = self.clock()
            if error is not None:
                row.last_error = error
            session.add(row)

    def _unregister(self) -> None:
        with self.db.session() as session:
            row = session.get(ServiceInstance, self.name)
            if row is not None:
                session.delete(row)


def is_live(row: ServiceInstance, now: datetime, poll: float) -> bool:
    """Has this service shown signs of life lately (and, on this host, is it running)?"""
    if row.heartbeat_at is None or (now - row.heartbeat_at).total_seconds() > max(10.0, 5 * poll):
        return False
    if row.host == socket.gethostname():
        try:
            os.kill(row.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True

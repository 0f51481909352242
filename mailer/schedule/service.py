"""`mailer run`: the scheduler, the sender and the HTTP app in one process.

The same class runs each part alone, by its roles: ``mailer scheduler``
(scheduling only), ``mailer worker`` (sending only); ``mailer web`` serves
the HTTP app by itself. See docs/deployment.md.

Every ``schedule.poll_interval`` seconds the service

- mirrors scheduled blasts (the ``blast`` table is the truth; organizers change
  it from any terminal) into APScheduler, whose job store lives in the
  mailer's own database, so a schedule survives restarts
  (:mod:`mailer.schedule.jobs`);
- gives waiting follow-ups their time once their original has finished;
- starts a sender for every blast that is ``sending`` without one here, which
  is how a blast interrupted by a stop or crash resumes on the next start;
  with ``[sending] processes`` (one per core by default, for a big enough
  blast) it starts helper sender processes on the blast too, as ``mailer
  blast send`` does (:mod:`mailer.send.processes`).

When a job fires, the blast is started with one conditional update
(``scheduled`` → ``sending``): only one service can win it. A job that fires
later than ``schedule.misfire_grace`` after its time (the service was down)
is not run: the blast is marked ``missed`` with the reason.

The event loop is shared by the senders and the HTTP app, so the service
keeps its own database work off it: every look at the database, the
pre-flight check of a blast about to be sent (which composes real
messages), building its composer, starting and pausing run on one thread
of the service's own (:meth:`Service._off_loop`), one call at a time and in
order, so the service's writes never race each other. APScheduler runs on
threads of its own and hands a fired job to the loop (see
:mod:`mailer.schedule.jobs` for how, without module-global state).

SIGTERM or Ctrl-C stop the service gracefully: senders, helper processes
included, finish and record what is in flight and leave their blasts
``sending`` (to resume on the next start),
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
import functools
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import uvicorn
from sqlmodel import select

from mailer.assemble import composer_for, make_sender
from mailer.check import gate
from mailer.clients import proxy_options
from mailer.compose.alert import AlertComposer
from mailer.config import Settings
from mailer.errors import ConfigError, MailerError
from mailer.lifecycle import transition_where
from mailer.schedule import planner
from mailer.schedule.jobs import Calendar
from mailer.schedule.jobs import run_scheduled as run_scheduled  # named by jobs stored before
from mailer.send.engine import BlastSender, SendResult
from mailer.send.processes import SenderProcesses, for_processes, in_memory, processes_for
from mailer.store import Blast, BlastStatus, Database, ServiceInstance
from mailer.store.models import utcnow
from mailer.web import app_for

log = logging.getLogger("mailer.service")

SCHEDULER, WORKER, WEB = "scheduler", "worker", "web"
ALL_ROLES = frozenset({SCHEDULER, WORKER, WEB})
P = ParamSpec("P")
T = TypeVar("T")


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
    helpers: SenderProcesses | None = None  # helper processes on the same blast


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
        self.running: dict[int, _Running] = {}
        self.calendar = (
            Calendar(db, settings, on_due=self._due, on_missed=self._missed, clock=self.clock)
            if SCHEDULER in roles
            else None
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailer-service-db")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._starting: set[int] = set()  # blasts whose sender is being prepared
        self._tasks: set[asyncio.Task[Any]] = set()  # due starts, heartbeats: awaited at stop

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self._off_loop(self._register)
        await self._tick()
        web: _Web | None = None
        web_task: asyncio.Task[None] | None = None
        if WEB in self.roles:
            app = app_for(self.db, self.settings)
            web = _Web(
                uvicorn.Config(
                    app,
                    host=self.host,
                    port=self.port,
                    log_level="warning",
                    **proxy_options(self.settings.web.trusted_proxies),
                )
            )
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
                    await self._tick()
        finally:
            log.info("service stopping", extra={"event": "service.stopping"})
            self._stopping = True  # no sender starts from here on
            await self._settle()
            for running in list(self.running.values()):
                running.sender.request_stop("the service is stopping", pause_blast=False)
                if running.helpers is not None:
                    running.helpers.leave()
            await asyncio.gather(*(r.task for r in self.running.values()), return_exceptions=True)
            if self.calendar is not None:
                await self._off_loop(self.calendar.close)
            self._loop = None  # what APScheduler still reports is for the next start
            if web is not None and web_task is not None:
                web.should_exit = True
                await asyncio.gather(web_task, return_exceptions=True)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self._settle()
            await self._off_loop(self._unregister)
            self._thread.shutdown(wait=True)
            self._stop = None
            log.info("service stopped", extra={"event": "service.stopped"})

    def request_stop(self) -> None:
        """Stop as SIGTERM does (from the event loop's thread)."""
        if self._stop is not None:
            self._stop.set()

    async def _off_loop(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``work`` on the service's database thread, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(work, *args, **kwargs))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` as a task the service waits for when it stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tick(self) -> None:
        """One look at the database: schedules, follow-ups, blasts to send, heartbeat."""
        try:
            sending = await self._off_loop(self._look)
            for blast_id in sending:
                await self._start_sender(blast_id)
        except (MailerError, ConfigError) as exc:
            log.error("%s", exc, extra={"event": "service.error"})
            await self._off_loop(self._heartbeat, error=str(exc))

    def _look(self) -> list[int]:
        """(On the database thread.) Heartbeat, schedules; the blasts that are ``sending``."""
        self._heartbeat()
        if self.calendar is not None and self.calendar.lead():
            self.calendar.mirror()
        if WORKER not in self.roles:
            return []
        with self.db.session() as session:
            found = session.exec(select(Blast.id).where(Blast.status == BlastStatus.SENDING))
            return [blast_id for blast_id in found.all() if blast_id is not None]

    # -- due blasts (called on APScheduler's threads: hand on to the loop) ------------------

    def _due(self, blast_id: int) -> None:
        self._from_thread(functools.partial(self.start_scheduled, blast_id))

    def _missed(self, blast_id: int, due_at: datetime) -> None:
        assert self.calendar is not None
        mark = self.calendar.mark_missed
        self._from_thread(functools.partial(self._off_loop, mark, blast_id, due_at))

    def _from_thread(self, work: Callable[[], Coroutine[Any, Any, object]]) -> None:
        loop = self._loop
        if loop is None:  # stopped: the next start finds the blast as the job left it
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(lambda: self._spawn(work()))

    async def start_scheduled(self, blast_id: int) -> None:
        """Start a due blast: send it here, or (without the worker role) leave it to workers."""
        if self._stopping:  # the blast stays scheduled; the next start sees it due
            return
        if WORKER not in self.roles:
            await self._off_loop(self._start_for_workers, blast_id)
            return
        if not await self._off_loop(self._claim_due, blast_id):
            log.info("blast %d was started elsewhere", blast_id, extra={"blast": blast_id})
            return
        await self._start_sender(blast_id)

    def _claim_due(self, blast_id: int) -> bool:
        with self.db.session() as session:
            won = planner.claim_start(
                session,
                blast_id,
                action="blast.due",
                actor=f"service:{self.name}",
                now=self.clock(),
            )
        if self.calendar is not None:
            self.calendar.forget(blast_id)
        return won

    def _start_for_workers(self, blast_id: int) -> None:
        with self.db.session() as session:
            won = planner.start_due(
                session,
                blast_id,
                now=self.clock(),
                dialect=self.db.engine.dialect.name,
                actor=f"scheduler:{self.name}",
            )
        if self.calendar is not None:
            self.calendar.forget(blast_id)
        if won:
            log.info(
                "blast %d started; waiting for a worker to send it",
                blast_id,
                extra={"event": "blast.started", "blast": blast_id},
            )
        else:
            log.info("blast %d was started elsewhere", blast_id, extra={"blast": blast_id})

    # -- sending ------------------------------------------------------------------------

    async def _start_sender(self, blast_id: int) -> None:
        if self._stopping or blast_id in self.running or blast_id in self._starting:
            return
        self._starting.add(blast_id)
        try:
            prepared = await self._off_loop(self._prepare, blast_id)
            if prepared is None or self._stopping:
                return  # paused with the reason, or the service stops: it resumes later
            composer, processes = prepared
            settings = for_processes(self.settings, processes)
            helpers = None
            if processes > 1:  # [sending] processes: helpers join as for `mailer blast send`
                url = self.db.engine.url.render_as_string(hide_password=False)
                helpers = SenderProcesses(url, settings, blast_id, processes - 1, None)
                await self._off_loop(helpers.start)
        finally:
            self._starting.discard(blast_id)
        sender = make_sender(self.db, settings)
        task = asyncio.create_task(
            sender.send(blast_id, composer, _LogProgress(blast_id), actor=f"service:{self.name}"),
            name=f"blast-{blast_id}",
        )
        self.running[blast_id] = _Running(sender, task, helpers)
        log.info("blast %d: sending", blast_id, extra={"event": "blast.sending", "blast": blast_id})
        task.add_done_callback(lambda t: self._sender_done(blast_id, t))

    def _prepare(self, blast_id: int) -> tuple[AlertComposer, int] | None:
        """(On the database thread.) The pre-flight check, the composer and how many
        sender processes to run (:func:`~mailer.send.processes.processes_for`); None if
        paused."""
        with self.db.session() as session:
            blast = session.get(Blast, blast_id)
            assert blast is not None
        try:
            gate(self.db, self.settings, blast_id, force=False, actor="service")
            composer = composer_for(self.db, self.settings, blast)
        except (MailerError, ConfigError) as exc:
            self._pause_with(blast_id, f"cannot send: {exc}")
            return None
        if in_memory(self.db):  # no other process could open it
            return composer, 1
        return composer, processes_for(self.db, self.settings.sending.processes, blast)

    def _sender_done(self, blast_id: int, task: asyncio.Task[SendResult]) -> None:
        running = self.running.pop(blast_id, None)
        if running is not None and running.helpers is not None:
            # They end with the blast, or told by the stop (see run()); waited for off the
            # loop, and by the stop through _settle().
            self._spawn(asyncio.to_thread(running.helpers.close))
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
            self._spawn(self._off_loop(self._heartbeat, error=f"blast {blast_id}: {exc}"))
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
        """(On the database thread.) Pause a blast this service cannot send, with the reason."""
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

    # -- the service's own row (on the database thread) ---------------------------------

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

"""More sender processes on one blast (``[sending] processes``), to use more cores.

A sender is one Python process, and its event loop and database thread share
one interpreter lock: it keeps about one core busy however many SMTP
connections it holds. ``mailer blast send`` with ``processes = N`` therefore
starts N - 1 helper processes beside itself. Each helper is an ordinary
sender (:class:`~mailer.send.engine.BlastSender`) that *joins* the blast the
way senders on several hosts do: claims with its own name and lease, its
share of the rates and of the domain concurrency, its own SMTP connections.
Nothing new is needed for correctness; every guarantee of several senders on
one blast holds (see :mod:`mailer.send.ledger`).

``processes = 0``, the default, means one sender per core
(:func:`sender_count`): at most :data:`AUTO_MAX_SQLITE` on SQLite, whose one
writer the senders take turns at, at most :data:`AUTO_MAX_SERVER` on a database
server, one alone on an in-memory SQLite database (a helper could not see it),
and fewer when the blast has fewer than :data:`AUTO_MESSAGES_PER_PROCESS`
messages per process left to send: a helper is a fresh interpreter that takes
about a second to import the mailer, which a small blast would not win back.

``mailer blast send`` and the service (for the blasts it sends) both start
them. What this module adds is the handling of the helpers:

- they are started with ``fork`` where that is safe (:func:`start_method`:
  a SQLite database, and no other thread in this process, as for ``mailer
  blast send``): a copy of this process with the mailer already imported, at
  work in milliseconds, that opens its own database connections and never
  touches the copies of the parent's. Otherwise (a service's threads, a
  database server's sockets) with ``spawn``: a clean interpreter, about a
  second of imports. They join only a blast that is ``sending``: a helper
  that finds it still a draft waits for the parent's start, and one that
  finds it paused, cancelled or done leaves at once, so a helper never
  resumes what the parent stopped. They are started before
  the parent builds its composer and takes the audience snapshot, and build
  their own composer while they wait, so their start-up overlaps the
  parent's instead of delaying the blast;
- their progress reaches the parent's progress bar through a queue;
- SIGTERM or Ctrl-C in the parent is passed on to them; they finish their
  in-flight messages like the parent does (a helper left alone on the blast
  pauses it). A stopping service sends :data:`LEAVE` instead: the helpers
  finish their in-flight messages and leave the blast ``sending``, for the
  service's next start, as its own sender does;
- the parent waits for them before it reports, and reports the blast as it
  stands then.

If the parent is killed outright, the helpers go on and finish the blast (or
stop when it is paused or cancelled from another terminal); they hold leases
like any sender, so nothing is sent twice either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.context import ForkContext, SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.queues import SimpleQueue
from types import TracebackType

from sqlalchemy.engine import make_url

from mailer.assemble import composer_for, make_sender
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.send.audience import open_bound
from mailer.send.engine import Progress
from mailer.send.policy import connections_for
from mailer.store import Blast, BlastStatus, Database, find_blast, open_database

log = logging.getLogger(__name__)

# How long a helper waits for the parent to take the audience snapshot.
START_WAIT = 60.0
# Told to a helper of a service that stops: finish in-flight messages, leave the blast
# ``sending`` (not paused), as the service's own sender does.
LEAVE = signal.SIGUSR1

# ``processes = 0``: one sender per core, at most this many ...
AUTO_MAX_SQLITE = 4  # on SQLite (one writer at a time, whatever the number of cores)
AUTO_MAX_SERVER = 8  # on PostgreSQL
# ... and one per this many messages left to send (a helper's start costs about a second).
AUTO_MESSAGES_PER_PROCESS = 2_000


def start_method(url: str) -> str:
    """How helpers for the database at ``url`` are started from this process.

    ``fork`` only on SQLite (a forked copy of a database server connection
    shares its socket with the parent) and while this process runs no other
    thread (one could hold a lock the copy would wait on for ever), where the
    platform has it; else ``spawn``.
    """
    if (
        make_url(url).get_backend_name() == "sqlite"
        and threading.active_count() == 1
        and "fork" in multiprocessing.get_all_start_methods()
    ):
        return "fork"
    return "spawn"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def sender_count(
    configured: int, *, backend: str, in_memory: bool, messages: int, cores: int
) -> int:
    """How many sender processes to run on a blast with ``messages`` (at most) left.

    ``configured`` is ``[sending] processes``: a positive number is taken as
    it is; 0 means one per core within the bounds of the module docstring.
    """
    if configured > 0:
        return configured
    if in_memory:
        return 1
    most = AUTO_MAX_SQLITE if backend == "sqlite" else AUTO_MAX_SERVER
    worth = max(1, messages // AUTO_MESSAGES_PER_PROCESS)
    return max(1, min(cores, most, worth))


def for_processes(settings: Settings, processes: int) -> Settings:
    """``settings`` for each of ``processes`` senders on one blast: ``[sending]
    connections = 0`` resolved to its share (:func:`~mailer.send.policy.connections_for`)."""
    sending = settings.sending
    connections = connections_for(sending.connections, processes)
    if connections == sending.connections:
        return settings
    return dataclasses.replace(
        settings, sending=dataclasses.replace(sending, connections=connections)
    )


def processes_for(db: Database, configured: int, blast: Blast) -> int:
    """:func:`sender_count` for sending ``blast`` from ``db`` with ``processes = configured``."""
    url = db.engine.url
    with db.session() as session:
        messages = open_bound(session, blast) if configured == 0 else 0
    return sender_count(
        configured,
        backend=url.get_backend_name(),
        in_memory=in_memory(db),
        messages=messages,
        cores=usable_cores(),
    )


def in_memory(db: Database) -> bool:
    """Whether ``db`` is an in-memory SQLite database, which no other process can open."""
    url = db.engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class _QueuedProgress:
    """A helper's progress, sent to the parent as message counts."""

    def __init__(self, queue: SimpleQueue[int | None]) -> None:
        self.queue = queue

    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, count: int) -> None:
        self.queue.put(count)

    def finish(self) -> None:
        pass


def run_helper(
    url: str, settings: Settings, blast_id: int, queue: SimpleQueue[int | None], level: int
) -> None:
    """A helper process's body: join blast ``blast_id`` and send until it is over."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes Ctrl-C on as SIGTERM
    stopped = threading.Event()  # SIGTERM or LEAVE before the send began: leave quietly
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    signal.signal(LEAVE, lambda signum, frame: stopped.set())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(message)s")
    db = open_database(url)
    try:
        with db.session() as session:
            blast = find_blast(session, blast_id)
        # Built while the parent takes its snapshot: off the blast's critical path.
        composer = composer_for(db, settings, blast)
        sender = make_sender(db, settings)
        deadline = time.monotonic() + START_WAIT
        while blast.status is BlastStatus.DRAFT or blast.status is BlastStatus.SCHEDULED:
            if time.monotonic() > deadline or stopped.wait(0.02):
                return  # the parent never started it, or stopped before it did
            with db.session() as session:
                blast = find_blast(session, blast_id)
        if stopped.is_set():
            return

        async def join() -> None:
            send = asyncio.ensure_future(
                sender.send(
                    blast_id,
                    composer,
                    _QueuedProgress(queue),
                    actor=f"helper:{os.getpid()}",
                    handle_signals=True,
                    join_only=True,
                )
            )
            # A service that stops leaves its blasts sending, for its next start: so
            # do its helpers (LEAVE), where SIGTERM would pause a blast left alone.
            asyncio.get_running_loop().add_signal_handler(
                LEAVE,
                functools.partial(
                    sender.request_stop, "the service is stopping", pause_blast=False
                ),
            )
            await asyncio.sleep(0)  # the send has put its own signal handlers in place
            if stopped.is_set():  # a SIGTERM that came just before: pass it to them
                os.kill(os.getpid(), signal.SIGTERM)
            await send

        # InvalidState: over (or stopped) before this helper could join; nothing to do.
        with contextlib.suppress(InvalidState):
            asyncio.run(join())
    finally:
        db.dispose()


class SenderProcesses:
    """``count`` helper senders on blast ``blast_id``, for the duration of a ``with`` block.

    ``progress`` (the parent's) is advanced by what the helpers send. Leaving
    the block waits for the helpers to end; when the block ends by an
    exception they are told to stop first.
    """

    def __init__(
        self,
        url: str,
        settings: Settings,
        blast_id: int,
        count: int,
        progress: Progress | None,
    ) -> None:
        self.url = url
        self.settings = settings
        self.blast_id = blast_id
        self.count = count
        self.progress = progress
        self.method = start_method(url)
        self._context: ForkContext | SpawnContext = (
            multiprocessing.get_context("fork")
            if self.method == "fork"
            else multiprocessing.get_context("spawn")
        )
        self.queue: SimpleQueue[int | None] = self._context.SimpleQueue()
        self.processes: list[BaseProcess] = []
        self._reader: threading.Thread | None = None

    def __enter__(self) -> SenderProcesses:
        self.start()
        return self

    def start(self) -> None:
        """Start the helpers (what entering the ``with`` block does)."""
        level = logging.getLogger().getEffectiveLevel()
        if self.method == "fork":  # else a copy would write this output again as it exits
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        log.info(
            "starting %d helper sender process%s by %s",
            self.count,
            "" if self.count == 1 else "es",
            self.method,
        )
        for i in range(self.count):
            process = self._context.Process(
                target=run_helper,
                args=(self.url, self.settings, self.blast_id, self.queue, level),
                name=f"mailer-sender-{i + 1}",
            )
            process.start()
            self.processes.append(process)
        self._reader = threading.Thread(target=self._read, name="mailer-helper-progress")
        self._reader.start()

    def _read(self) -> None:
        while (count := self.queue.get()) is not None:
            if self.progress is not None:
                self.progress.advance(count)

    def signal(self, signum: int) -> None:
        """Pass a stopping signal on: each helper finishes its in-flight messages and stops."""
        self._tell(signal.SIGTERM)

    def leave(self) -> None:
        """Stop the helpers as a stopping service stops its own sender: in-flight messages
        finished and recorded, the blast left ``sending`` to resume on the next start."""
        self._tell(LEAVE)

    def _tell(self, signum: int) -> None:
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def close(self) -> None:
        """Wait for the helpers to end (what leaving the ``with`` block does)."""
        self.__exit__(None, None, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.signal(signal.SIGTERM)
        for process in self.processes:
            process.join()
            if process.exitcode:
                log.warning("sender process %s exited with code %s", process.pid, process.exitcode)
        self.queue.put(None)
        if self._reader is not None:
            self._reader.join()

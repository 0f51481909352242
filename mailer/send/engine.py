"""Sending one blast from this process: the entry point, its threads, signals and stops.

:class:`BlastSender` is what the CLI, the service and the helper processes
call. A send is three layers, each in its own module:

- :mod:`mailer.send.ledger` — the database side (start and audience snapshot,
  claims, ``sending`` marks, outcome records, leases, finish), synchronous,
  run on one database thread of its own so writes go through a single
  writer, in order;
- :mod:`mailer.send.policy` — pure rules: what a claimed delivery is, retry
  delays, the row each outcome writes;
- :mod:`mailer.send.run` — the asyncio run: a producer, one worker per SMTP
  connection, a watcher and a recorder, over an async facade of the ledger.

This module makes the threads (the database thread, and on PostgreSQL with
shared rates a thread for rate grants), turns SIGTERM/Ctrl-C and
:meth:`BlastSender.request_stop` into a graceful :class:`~mailer.send.run.Stop`,
and reports a :class:`SendResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from mailer.compose.alert import AlertComposer
from mailer.config import SendingSettings
from mailer.send.ledger import Ledger, delivery_counts
from mailer.send.run import AsyncLedger, BlastRun, Progress, Stop
from mailer.send.transport import Transport
from mailer.store import BlastStatus, Database
from mailer.store.models import utcnow

__all__ = ["BlastSender", "Progress", "SendResult", "delivery_counts"]


@dataclass
class SendResult:
    blast_id: int
    status: BlastStatus
    counts: dict[str, int]
    error: str = ""  # why the blast was left paused, when it was


class BlastSender:
    """Sends blasts from this process through transports made by ``transport_factory``."""

    def __init__(
        self,
        db: Database,
        transport_factory: Callable[[], Transport],
        *,
        sending: SendingSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.transport_factory = transport_factory
        self.ledger = Ledger(db, sending, clock=clock)
        self._stop: Stop | None = None  # the running send's, while one runs
        # Told the signal number when SIGTERM/SIGINT stops a send (helper processes).
        self.signal_listeners: list[Callable[[int], None]] = []

    @property
    def worker(self) -> str:
        """This sender's name, as claimed deliveries and ``sender_worker`` carry it."""
        return self.ledger.worker

    def start(
        self, blast_id: int, *, actor: str = "cli", join_only: bool = False
    ) -> tuple[int, int]:
        """Make the blast ``sending`` and register this sender; (total, already final).

        :meth:`send` does this itself; call it directly only outside a send.
        See :meth:`mailer.send.ledger.Ledger.start`.
        """
        return self.ledger.start(blast_id, actor=actor, join_only=join_only)

    def request_stop(self, reason: str, *, pause_blast: bool = True) -> None:
        """Stop gracefully: finish in-flight messages, give the rest back to the queue.

        With ``pause_blast`` the blast is left paused (for an organizer to
        resume); without, it stays ``sending``, for a service to resume on its
        next start.
        """
        if self._stop is not None:
            self._stop.request(reason, pause_blast=pause_blast)

    def _signalled(self, signum: int, reason: str) -> None:
        if self._stop is not None:  # the blast pauses only if no other sender is on it
            self._stop.request(reason, pause_blast=True, if_alone=True)
        for listener in self.signal_listeners:
            listener(signum)

    async def send(
        self,
        blast_id: int,
        composer: AlertComposer,
        progress: Progress | None = None,
        *,
        actor: str = "cli",
        handle_signals: bool = False,
        join_only: bool = False,
    ) -> SendResult:
        """Send until the blast is done, or until stopped (pause, cancel, signal, relay).

        With ``handle_signals``, SIGTERM and SIGINT (Ctrl-C) stop the run the
        graceful way: in-flight messages finish and are recorded, the rest goes
        back to the queue, and the blast is left paused and resumable.
        """
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailer-db")
        grants = None  # shared-rate grants, off the database thread
        if self.ledger.shares_rates:
            grants = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailer-rate")
        ledger = AsyncLedger(self.ledger, thread, grants)
        stop = self._stop = Stop()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for signum in signals:
            name = signal.Signals(signum).name
            loop.add_signal_handler(
                signum, self._signalled, signum, f"stopped by {name}; resumable"
            )
        try:
            total, done = await ledger.start(blast_id, actor=actor, join_only=join_only)
            if progress:
                progress.start(total, done)
            run = BlastRun(
                ledger, blast_id, composer, self.transport_factory, stop=stop, progress=progress
            )
            await run.execute()
            status = await ledger.finish(blast_id, stop.why)
        finally:
            with contextlib.suppress(Exception):
                await ledger.close()
            for signum in signals:
                loop.remove_signal_handler(signum)
            if progress:
                progress.finish()
            thread.shutdown(wait=True)
            if grants is not None:
                grants.shutdown(wait=True)
            self._stop = None
        counts = delivery_counts(self.db, blast_id)
        # An error only when the blast was left paused for it (not when others go on).
        why = stop.why
        paused = why is not None and why.pause_blast and status is BlastStatus.PAUSED
        return SendResult(blast_id, status, counts, why.reason if why and paused else "")

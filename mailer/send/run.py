"""One run of one blast in the event loop: a producer, K SMTP workers, a watcher, a recorder.

The parts, in the order a delivery meets them:

1. **claim** (one producer) — the next ``batch_size`` deliveries that are
   queued, or deferred and due, are claimed in one ``UPDATE … RETURNING`` that
   writes this sender's name into ``worker``; the state stays ``queued``. The
   producer walks the blast by id (``id > last``), never by OFFSET, so each
   batch costs the same; the hourly and daily caps shrink the batch when the
   window is nearly full.
2. **pace** — claimed deliveries wait in the :class:`~mailer.send.throttle.DomainScheduler`
   for their domain's turn (concurrency, rates, adaptive backoff).
3. **compose and mark** (K workers, one SMTP connection each) — a supporter no
   longer active when their message is built is ``skipped``. Just before the
   message is handed to the relay its row becomes ``sending``; these marks are
   written in small groups (group commit, :mod:`mailer.send.marks`: on
   SQLite on the loop's own thread), so after a crash only messages really
   in flight are in doubt.
4. **deliver** — :class:`~mailer.send.transport.Transport`; the
   :class:`~mailer.send.outcome.Outcome` becomes an
   :class:`~mailer.send.policy.OutcomeRow`: sent, deferred (exponential
   backoff with jitter) or failed.
5. **record** — outcomes go in the same commit as the next group of marks
   (one write instead of two); when no marks come, the recorder writes them
   every :data:`RECORD_EVERY` seconds or :data:`RECORD_MAX` rows.

A watcher renews this sender's lease and reads the blast's status every
``control_interval`` seconds: ``mailer blast pause`` or ``cancel`` from another
terminal stops the run within that time. A run that runs out of work waits
while other live senders still hold rows, so that what a sender that dies
late holds is still taken over; it looks every :data:`TAIL_POLL` seconds, so
that the blast ends soon after its last message.

Stopping (:class:`Stop`: a pause or cancel, a signal, a down relay, a
template error, a lost lease) lets in-flight messages finish and be recorded,
and returns claimed-but-unsent deliveries to the queue.

Every other database call goes through :class:`AsyncLedger`, which runs it
on the one database thread (:mod:`mailer.send.ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from email.errors import MessageError
from typing import Any, Literal, Protocol, TypeVar, TypeVarTuple

from mailer.compose.alert import AlertComposer, OutgoingMessage
from mailer.errors import TemplateProblem, TransportError
from mailer.send.ledger import Ledger, Pulse
from mailer.send.marks import Marks, Outcomes
from mailer.send.outcome import Outcome
from mailer.send.policy import (
    Claimed,
    OutcomeRow,
    StopReason,
    connections_for,
    outcome_row,
    skipped_row,
    unbuildable_row,
)
from mailer.send.throttle import DomainScheduler, Grants
from mailer.send.transport import Transport
from mailer.store import BlastStatus

log = logging.getLogger(__name__)

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

# Seconds between group commits of outcomes; this bounds what a crash leaves in doubt.
RECORD_EVERY = 0.05
RECORD_MAX = 200  # or sooner, when this many outcomes wait
# Seconds between looks, once this sender has nothing left, at whether the others are done.
TAIL_POLL = 0.05


class Progress(Protocol):
    """Told how far a blast has come; the CLI draws a bar, a service logs lines."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def finish(self) -> None: ...


class Stop:
    """A run's stop request: the first reason given wins; every task of the run reads it.

    False until requested, so ``while not stop:`` reads as it means.
    """

    def __init__(self) -> None:
        self.why: StopReason | None = None
        self._event = asyncio.Event()

    def request(
        self,
        reason: str,
        *,
        pause_blast: bool = False,
        if_alone: bool = False,
        lease_lost: bool = False,
    ) -> None:
        """Ask the run to stop (see :class:`~mailer.send.policy.StopReason` for the flags)."""
        if self.why is None:
            self.why = StopReason(reason, pause_blast, if_alone, lease_lost)
            self._event.set()

    def __bool__(self) -> bool:
        return self.why is not None

    def wait(self) -> Coroutine[Any, Any, Literal[True]]:
        """Awaitable until a stop is requested."""
        return self._event.wait()

    async def sleep(self, seconds: float) -> None:
        """``seconds``, or less if a stop is requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


class AsyncLedger:
    """The :class:`~mailer.send.ledger.Ledger`'s calls, as futures to await.

    Each call is handed at once to ``thread`` — an executor with exactly one
    thread, the run's database thread — so the calls run one at a time, in
    the order they were made, and a write handed over is done even if the
    task awaiting it is cancelled. ``grants`` (a thread of its own) runs only
    :meth:`take_tokens`, so that a shared-rate grant never waits behind a
    batch of writes.
    """

    def __init__(self, ledger: Ledger, thread: Executor, grants: Executor | None = None) -> None:
        self.sync = ledger
        self.thread = thread
        self.grants = grants

    def _call(self, fn: Callable[[*Ts], R], *args: *Ts) -> asyncio.Future[R]:
        return asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    def start(
        self, blast_id: int, *, actor: str, join_only: bool
    ) -> asyncio.Future[tuple[int, int]]:
        return self._call(self._start, blast_id, actor, join_only)

    def _start(self, blast_id: int, actor: str, join_only: bool) -> tuple[int, int]:
        return self.sync.start(blast_id, actor=actor, join_only=join_only)

    def finish(self, blast_id: int, why: StopReason | None) -> asyncio.Future[BlastStatus]:
        return self._call(self.sync.finish, blast_id, why)

    def claim(self, blast_id: int, after_id: int, limit: int) -> asyncio.Future[list[Claimed]]:
        return self._call(self.sync.claim, blast_id, after_id, limit)

    def cap_room(self) -> asyncio.Future[int | None]:
        return self._call(self.sync.cap_room)

    def next_due(self, blast_id: int) -> asyncio.Future[tuple[datetime | None, bool]]:
        return self._call(self.sync.next_due, blast_id)

    def mark_sending(
        self, ids: list[int], outcomes: list[OutcomeRow] | None = None
    ) -> asyncio.Future[set[int]]:
        return self._call(self.sync.mark_sending, ids, outcomes or ())

    def record(self, rows: list[OutcomeRow]) -> asyncio.Future[None]:
        return self._call(self.sync.record, rows)

    def release(self, ids: list[int]) -> asyncio.Future[None]:
        return self._call(self.sync.release, ids)

    def heartbeat(self, blast_id: int) -> asyncio.Future[Pulse]:
        return self._call(self.sync.heartbeat, blast_id)

    def live_senders(self, blast_id: int) -> asyncio.Future[int]:
        return self._call(self.sync.live_senders, blast_id)

    def close(self) -> asyncio.Future[None]:
        return self._call(self.sync.close)

    async def take_tokens(self, blast_id: int, domain: str | None, want: int) -> tuple[int, float]:
        assert self.grants is not None, "shared rates need a grants executor"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.grants, self.sync.take_tokens, blast_id, domain, want
        )


@dataclass(frozen=True)
class _Ready:
    item: Claimed
    message: OutgoingMessage


@dataclass
class _Upcoming:
    """One connection's next message, from when it is composed (see BlastRun.work)."""

    message: OutgoingMessage | None = None


class BlastRun:
    """One run of one blast: the producer, the workers, the watcher and the recorder."""

    def __init__(
        self,
        ledger: AsyncLedger,
        blast_id: int,
        composer: AlertComposer,
        transport_factory: Callable[[], Transport],
        *,
        stop: Stop,
        progress: Progress | None = None,
    ) -> None:
        self.ledger = ledger
        self.cfg = ledger.sync.settings
        self.clock = ledger.sync.clock
        self.blast_id = blast_id
        self.composer = composer
        self.transport_factory = transport_factory
        self.stop = stop
        self.progress = progress
        grants: Grants | None = self.grant if ledger.sync.shares_rates else None
        self.scheduler: DomainScheduler[Claimed] = DomainScheduler(
            concurrency=self.cfg.domain_concurrency,
            domain_rate=self.cfg.domain_rate,
            rate=self.cfg.rate,
            grants=grants,
        )
        self.outcomes = Outcomes(progress)
        self.marks = Marks(ledger, self.outcomes)
        self.senders = 1  # live senders on the blast, this one included

    async def execute(self) -> None:
        """Send until nothing is left or a stop is requested; release what was not sent."""
        self.senders = await self.ledger.live_senders(self.blast_id)
        self.scheduler.share(self.senders)
        # Settings resolved for several processes come with a number; 0 here is one process's.
        connections = connections_for(self.cfg.connections, 1)
        transports = [self.transport_factory() for _ in range(connections)]
        tasks = [asyncio.create_task(self.produce(), name="producer")]
        tasks += [
            asyncio.create_task(self.work(t), name=f"smtp-{i}") for i, t in enumerate(transports)
        ]
        helpers = [
            asyncio.create_task(self.watch(), name="watcher"),
            asyncio.create_task(self.write_outcomes(), name="recorder"),
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # Something unexpected (a database error, say): stop every task before
            # cleaning up, so no worker is still sending while connections close.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.scheduler.stop_grants()
            for t in transports:
                await t.close()
            self.marks.close()
            left = [job.delivery_id for job in self.scheduler.drain()]
            await self.flush_outcomes()
            await self.ledger.release(left)

    # -- producer ----------------------------------------------------------------------

    async def produce(self) -> None:
        after_id = 0
        try:
            while not self.stop:
                room = self.cfg.batch_size - self.scheduler.pending  # memory stays bounded
                if room <= self.cfg.batch_size // 2:
                    await self.stop.sleep(0.01)
                    continue
                capped = self.cfg.hourly_limit > 0 or self.cfg.daily_limit > 0
                cap_room = await self.ledger.cap_room() if capped else None
                if cap_room is not None:
                    # Senders on the blast take turns at the window's room: a share each.
                    share = cap_room // max(1, self.senders)
                    room = min(room, share - self.scheduler.pending - self.scheduler.in_flight)
                    if room <= 0:
                        log.info("hourly/daily cap reached; waiting for the window to move")
                        await self.stop.sleep(5.0)
                        continue
                batch = await self.ledger.claim(self.blast_id, after_id, room)
                if batch:
                    after_id = batch[-1].delivery_id
                    for item in batch:
                        if item.sendable:
                            self.scheduler.put(item.domain, item)
                        else:
                            self.add_outcome(skipped_row(item, now=self.clock()))
                    continue
                if after_id:
                    after_id = 0  # a new pass from the start, for deferred ones now due
                    continue
                # Nothing claimable now: done, unless messages are in flight or retries due.
                # Order matters: idle first, so every outcome is flushed before asking
                # for the next due retry (the database thread runs jobs in order).
                idle = self.scheduler.idle
                await self.flush_outcomes()
                due, others_hold = await self.ledger.next_due(self.blast_id)
                if due is None and idle and not others_hold:
                    break
                # Other live senders still hold rows: stay, to take them over should
                # one of them die before it is done.
                wait = TAIL_POLL
                if due is not None:
                    wait = min(max(0.05, (due - self.clock()).total_seconds()), 5.0)
                await self.stop.sleep(wait)
        finally:
            self.scheduler.close()

    # -- workers -----------------------------------------------------------------------

    async def work(self, transport: Transport) -> None:
        """One connection's loop. The next message is composed and marked while the
        current one is on the wire, so the database round trip costs no sending time
        (a crash therefore leaves at most two messages per connection in doubt).

        The next message is composed before the current one goes out, and with
        pipelining its envelope (MAIL, RCPT, DATA) goes in the same write as the
        current body: one write a message instead of two. Only an envelope goes
        early; the body waits for the mark, so the crash guarantee is the same.
        """
        upcoming = _Upcoming()
        ahead: asyncio.Task[_Ready | None] | None = asyncio.create_task(self.prepare(upcoming))

        def following() -> OutgoingMessage | None:
            return None if self.stop else upcoming.message

        while ahead is not None:
            ready = await ahead
            if ready is None:
                return
            upcoming.message = None
            ahead = None if self.stop else asyncio.create_task(self.prepare(upcoming))
            if ahead is not None:
                await asyncio.sleep(0)  # the next message is composed before this one goes
            outcome: Outcome | None = None
            try:
                outcome = await transport.deliver(ready.message, following)
                self.add_outcome(
                    outcome_row(
                        ready.item,
                        outcome,
                        ready.message.message_id,
                        now=self.clock(),
                        rules=self.cfg,
                    )
                )
            except TransportError as exc:
                log.error("blast %d: %s", self.blast_id, exc)
                self.stop.request(str(exc), pause_blast=True)
                await self.ledger.release([ready.item.delivery_id])
            finally:
                self.scheduler.done(ready.item.domain, outcome)
            if self.stop and ahead is not None:
                await self.abandon(ahead)
                ahead = None

    async def abandon(self, ahead: asyncio.Task[_Ready | None]) -> None:
        """Stopping: a prepared next message is not sent; it goes back to the queue."""
        ready = await ahead
        if ready is not None:
            await self.ledger.release([ready.item.delivery_id])
            self.scheduler.done(ready.item.domain, None)

    async def prepare(self, upcoming: _Upcoming) -> _Ready | None:
        """The next message to send, composed and marked ``sending``; None when done.

        ``upcoming`` shows the message from when it is composed until the mark is
        written, so that its envelope can go ahead (see :meth:`work`)."""
        while not self.stop:
            upcoming.message = None
            picked = await self.next_job()
            if picked is None:
                return None
            domain, item = picked
            try:
                composed = self.composer.compose(item.delivery_id, item.recipient)
            except TemplateProblem as exc:
                log.error("blast %d: %s", self.blast_id, exc)
                self.stop.request(str(exc), pause_blast=True)
                self.scheduler.done(domain, None)
                await self.ledger.release([item.delivery_id])
                return None
            except (ValueError, TypeError, LookupError, MessageError) as exc:
                # This recipient's data cannot make a valid message (the template
                # renders for everyone else): fail this one alone.
                self.add_outcome(unbuildable_row(item, exc, now=self.clock()))
                self.scheduler.done(domain, None)
                continue
            upcoming.message = composed.message
            if not await self.marks.mark(item.delivery_id):
                self.scheduler.done(domain, None)  # taken back (blast cancelled) since claimed
                continue
            return _Ready(item, composed.message)
        upcoming.message = None
        return None

    async def next_job(self) -> tuple[str, Claimed] | None:
        ready = self.scheduler.get_nowait()  # most of the time one is: no waiting to set up
        if ready is not None:
            return ready
        getter = asyncio.ensure_future(self.scheduler.get())
        stopper = asyncio.ensure_future(self.stop.wait())
        finished, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if getter in finished:
            stopper.cancel()
            picked = getter.result()
            if picked is not None and self.stop:
                self.scheduler.put(*picked)  # stopping: leave it to be released
                self.scheduler.done(picked[0], None)
                return None
            return picked
        getter.cancel()
        return None

    # -- outcomes (group commit) ------------------------------------------------------

    def add_outcome(self, row: OutcomeRow) -> None:
        """Queue one outcome for the next group commit."""
        self.outcomes.add(row)

    async def flush_outcomes(self) -> None:
        """Write every queued outcome now (and tell the progress)."""
        rows = self.outcomes.take()
        if rows:
            # Shielded: once taken from the list these rows must be written even if
            # the recorder task is cancelled while the write waits its turn on the
            # database thread (cancelling it there would drop the write, leaving
            # sent messages marked ``sending``).
            await asyncio.shield(self.ledger.record(rows))

    async def write_outcomes(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            if len(self.outcomes) >= RECORD_MAX or time.monotonic() - last >= RECORD_EVERY:
                await self.flush_outcomes()
                last = time.monotonic()

    # -- watcher ----------------------------------------------------------------------

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.control_interval)
            pulse = await self.ledger.heartbeat(self.blast_id)
            if not pulse.kept:
                log.error("blast %d: this sender's lease was taken over; stopping", self.blast_id)
                self.stop.request("lease lost: other senders took over", lease_lost=True)
            elif pulse.status is not BlastStatus.SENDING:
                log.warning("blast %d is now %s; stopping", self.blast_id, pulse.status)
                self.stop.request(f"blast {pulse.status} by an organizer")
            self.senders = pulse.senders
            self.scheduler.share(pulse.senders)

    async def grant(self, domain: str | None, want: int) -> tuple[int, float]:
        """Tokens from the database's bucket of the blast (or of ``domain``)."""
        return await self.ledger.take_tokens(self.blast_id, domain, want)

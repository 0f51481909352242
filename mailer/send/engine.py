"""Sending one blast: claim, pace, compose, deliver, record — over K connections.

The parts, in the order a delivery meets them:

1. **start** — a draft blast gets its audience snapshot (one set-based insert)
   and becomes ``sending``; what dead senders held is recovered
   (:mod:`mailer.send.workers`): claimed-only rows go back to the queue, rows
   that were in flight become ``unknown``.
2. **claim** (one producer) — the next ``batch_size`` deliveries that are
   queued, or deferred and due, are claimed in one ``UPDATE … RETURNING`` that
   writes this sender's name into ``worker``; the state stays ``queued``. The
   producer walks the blast by id (``id > last``), never by OFFSET, so each
   batch costs the same; the hourly and daily caps shrink the batch when the
   window is nearly full.
3. **pace** — claimed deliveries wait in the :class:`~mailer.send.throttle.DomainScheduler`
   for their domain's turn (concurrency, rates, adaptive backoff).
4. **compose and mark** (K workers, one SMTP connection each) — a supporter no
   longer active when their message is built is ``skipped``. Just before the
   message is handed to the relay its row becomes ``sending``; these marks are
   written in small groups (group commit), so after a crash only messages
   really in flight are in doubt.
5. **deliver** — :class:`~mailer.send.transport.Transport`; the
   :class:`~mailer.send.outcome.Outcome` says sent, retry (deferred with
   exponential backoff and jitter) or failed.
6. **record** — outcomes are written in group-committed batches.

A watcher renews this sender's lease and reads the blast's status every
``control_interval`` seconds: ``mailer blast pause`` or ``cancel`` from another
terminal stops the sender within that time. Stopping (also on SIGTERM/Ctrl-C,
a down relay, or a template error) lets in-flight messages finish and be
recorded, and returns claimed-but-unsent deliveries to the queue, so the blast
can be resumed.

**Several senders on one blast** (processes on one or more hosts, sharing a
PostgreSQL database) are safe:

- ``start`` locks the blast row (``FOR UPDATE``), so the audience snapshot is
  taken exactly once; a sender that finds the blast ``sending`` joins it.
- Claims skip rows another sender has locked (``FOR UPDATE SKIP LOCKED``) or
  holds (``worker`` set), and a row becomes ``sending`` only while it names
  this sender and this sender's lease is current, so no two senders ever send
  one delivery.
- Every watcher tick also recovers senders whose lease ran out or whose
  process is gone (:mod:`mailer.send.workers`); a sender that finds its own
  lease taken stops at once. A sender that runs out of work waits while
  other live senders still hold rows, so what a sender that dies late holds
  is still taken over.
- ``_finish`` runs under the blast row lock too: only the last sender to
  leave marks the blast done; a signal pauses the blast only when no other
  sender is left on it.
- On PostgreSQL the rates are shared through token buckets in the database
  (:mod:`mailer.send.shared_rate`), and the domain concurrency is divided
  among the live senders.

Database work runs on one thread of its own (one writer, in order), so the
event loop keeps the SMTP connections busy meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import MessageError
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import Dialect, PoolProxiedConnection, and_, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlmodel import Session, col, select

from mailer.compose.alert import AlertComposer, OutgoingMessage, Recipient
from mailer.compose.message import domain_of
from mailer.config import SendingSettings
from mailer.errors import InvalidState, TemplateProblem, TransportError
from mailer.send import control, shared_rate, workers
from mailer.send.audience import snapshot_of, suppressed
from mailer.send.outcome import Outcome, Verdict
from mailer.send.throttle import DomainScheduler, Grants
from mailer.send.transport import Transport
from mailer.store import (
    Blast,
    BlastStatus,
    Database,
    Delivery,
    DeliveryState,
    Event,
    SenderWorker,
    Supporter,
)
from mailer.store.driver import IDS, DriverSql
from mailer.store.models import SupporterStatus, utcnow

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_STARTABLE = {BlastStatus.DRAFT, BlastStatus.SCHEDULED, BlastStatus.SENDING, BlastStatus.PAUSED}
OPEN_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.DEFERRED)
# Seconds between group commits of outcomes; this bounds what a crash leaves in doubt.
RECORD_EVERY = 0.05
RECORD_MAX = 200  # or sooner, when this many outcomes wait


class Progress(Protocol):
    """Told how far a blast has come; the CLI draws a bar, a service logs lines."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def finish(self) -> None: ...


@dataclass
class SendResult:
    blast_id: int
    status: BlastStatus
    counts: dict[str, int]
    error: str = ""


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    attempts: int
    created_at: datetime | None
    status: SupporterStatus
    recipient: Recipient
    suppressed: bool = False  # the address is on the suppression list

    @property
    def sendable(self) -> bool:
        return self.status is SupporterStatus.ACTIVE and not self.suppressed

    @property
    def domain(self) -> str:
        return domain_of(self.recipient.email)


def retry_delay(attempts: int, base: float, rng: Callable[[], float] = random.random) -> timedelta:
    """``base`` seconds doubled per earlier attempt, with ±20% jitter so retries spread out."""
    return timedelta(seconds=base * (1 << max(0, attempts - 1)) * (0.8 + 0.4 * rng()))


class _Stop:
    """Why the sender is stopping; the first reason given wins."""

    def __init__(self) -> None:
        self.reason = ""
        self.pause_blast = False  # set the blast to paused when done (signal, relay, template)
        self.if_alone = False  # ... but only when no other sender is on the blast (signal)
        self.lease_lost = False  # other senders took over what this one held
        self.event = asyncio.Event()

    def __call__(
        self,
        reason: str,
        *,
        pause_blast: bool = False,
        if_alone: bool = False,
        lease_lost: bool = False,
    ) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.pause_blast = pause_blast
            self.if_alone = if_alone
            self.lease_lost = lease_lost
            self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


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
        self.cfg = sending or SendingSettings()
        self.clock = clock
        self.worker = workers.new_worker_name()
        # Renewed every control interval: shorter than a few of them, it would lapse.
        self.lease = timedelta(seconds=max(self.cfg.lease_seconds, 3 * self.cfg.control_interval))
        self._executor: ThreadPoolExecutor | None = None
        self._grants: ThreadPoolExecutor | None = None  # shared-rate grants, off the writer
        self._stop: _Stop | None = None
        self._prepared: _SendSql | None = None
        self._hot_conn: PoolProxiedConnection | None = None  # the database thread's only
        # Told the signal number when SIGTERM/SIGINT stops a send (helper processes).
        self.signal_listeners: list[Callable[[int], None]] = []

    # -- the database thread ----------------------------------------------------------

    async def _db(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    # -- start and finish -------------------------------------------------------------

    def start(
        self, blast_id: int, *, actor: str = "cli", join_only: bool = False
    ) -> tuple[int, int]:
        """Make the blast ``sending`` and register this sender; (total, already final).

        With ``join_only`` the blast must already be ``sending`` (a helper of
        another sender): anything else raises :class:`InvalidState`, so a
        helper never starts or resumes a blast by itself.
        """
        now = self.clock()
        with self.db.session() as session:
            # Locked (PostgreSQL; SQLite has one writer anyway) so that senders starting
            # together take the audience snapshot once: the others wait, then join.
            blast = session.exec(
                select(Blast).where(Blast.id == blast_id).with_for_update()
            ).first()
            if blast is None:
                raise InvalidState(f"blast {blast_id} does not exist")
            if join_only and blast.status is not BlastStatus.SENDING:
                raise InvalidState(f"blast {blast.name!r} is {blast.status}; nothing to join")
            if blast.status not in _STARTABLE:
                raise InvalidState(
                    f"blast {blast.name!r} is {blast.status}; it cannot be sent again"
                )
            released, in_doubt = workers.recover_dead(session, blast_id, now)
            action = "blast.resumed"
            if blast.status is BlastStatus.SENDING and workers.live_on(session, blast_id, now):
                action = "blast.joined"  # other senders are at work on it
            if blast.started_at is None:  # first start: take the audience snapshot
                added = snapshot_of(session, blast, now, dialect=self.db.engine.dialect.name)
                blast.started_at = now
                action = "blast.started"
                log.info("blast %s: %d recipients in the audience snapshot", blast.name, added)
            blast.status = BlastStatus.SENDING
            blast.last_error = ""
            session.add(blast)
            workers.register(session, self.worker, blast_id, now, self.lease)
            session.add(
                Event(
                    at=now,
                    actor=actor,
                    action=action,
                    blast_id=blast_id,
                    detail={"worker": self.worker, "released": released, "in_doubt": in_doubt},
                )
            )
        counts = delivery_counts(self.db, blast_id)
        total = sum(counts.values())
        return total, total - sum(counts[s.value] for s in OPEN_STATES)

    def _finish(self, blast_id: int, stop: _Stop) -> BlastStatus:
        now = self.clock()
        with self.db.session() as session:
            # Under the blast row lock, so that of senders finishing together exactly
            # the last one sees no others and finishes the blast.
            blast = session.exec(select(Blast).where(Blast.id == blast_id).with_for_update()).one()
            workers.unregister(session, self.worker)
            if blast.status is not BlastStatus.SENDING or stop.lease_lost:
                return blast.status  # paused or cancelled from outside, or taken over
            others = workers.live_on(session, blast_id, now)
            if stop.pause_blast and not (stop.if_alone and others):
                blast.status = BlastStatus.PAUSED
                blast.last_error = stop.reason
                session.add(blast)
                session.add(
                    Event(
                        at=now,
                        actor="system",
                        action="blast.paused",
                        blast_id=blast_id,
                        detail={"reason": stop.reason},
                    )
                )
                return blast.status
            if others:
                return blast.status  # the others go on; the last one finishes the blast
            open_count = session.exec(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.blast_id == blast_id, col(Delivery.state).in_(OPEN_STATES))
            ).one()
            if open_count == 0:
                blast.status = BlastStatus.DONE
                blast.finished_at = now
                session.add(blast)
                shared_rate.forget(session, blast_id)
                session.add(
                    Event(at=now, actor="system", action="blast.finished", blast_id=blast_id)
                )
            return blast.status

    # -- claiming ---------------------------------------------------------------------

    def _claim(self, blast_id: int, after_id: int, limit: int) -> list[Claimed]:
        now = self.clock()
        due = or_(
            col(Delivery.state) == DeliveryState.QUEUED,
            and_(
                col(Delivery.state) == DeliveryState.DEFERRED,
                col(Delivery.next_attempt_at) <= now,
            ),
        )
        batch = (
            select(Delivery.id)
            .where(
                Delivery.blast_id == blast_id,
                col(Delivery.id) > after_id,
                Delivery.worker == "",
                due,
            )
            .order_by(col(Delivery.id))
            .limit(limit)
        )
        if not self.db.is_sqlite:
            batch = batch.with_for_update(skip_locked=True)
        with self.db.session() as session:
            claimed = (
                session.execute(
                    update(Delivery)
                    .where(col(Delivery.id).in_(batch.scalar_subquery()))
                    .values(worker=self.worker, state=DeliveryState.QUEUED, updated_at=now)
                    .returning(col(Delivery.id))
                )
                .scalars()
                .all()
            )
            if not claimed:
                return []
            rows = session.execute(
                sa_select(
                    col(Delivery.id),
                    col(Delivery.attempts),
                    col(Delivery.created_at),
                    Supporter,
                    suppressed(),
                )
                .join(Supporter, col(Supporter.id) == Delivery.supporter_id)
                .where(col(Delivery.id).in_(claimed))
                .order_by(col(Delivery.id))
            ).all()
        return [
            Claimed(
                delivery_id=d_id,
                attempts=attempts,
                created_at=created_at,
                status=s.status,
                suppressed=bool(is_suppressed),
                recipient=Recipient.of(s),
            )
            for d_id, attempts, created_at, s, is_suppressed in rows
            if d_id is not None
        ]

    def _cap_room(self) -> int | None:
        """How many more messages the hourly and daily caps allow now; None when uncapped."""
        allowed: int | None = None
        now = self.clock()
        for cap, window in (
            (self.cfg.hourly_limit, timedelta(hours=1)),
            (self.cfg.daily_limit, timedelta(days=1)),
        ):
            if cap <= 0:
                continue
            with self.db.session() as session:
                sent = session.exec(
                    select(func.count())
                    .select_from(Delivery)
                    .where(col(Delivery.sent_at) > now - window)
                ).one()
            allowed = cap - sent if allowed is None else min(allowed, cap - sent)
        return allowed

    def _next_due(self, blast_id: int) -> tuple[datetime | None, bool]:
        """When the next retry is due, and whether other live senders still hold rows.

        Holders found dead are recovered first, so their rows can be claimed.
        """
        now = self.clock()
        with self.db.session() as session:
            holders = workers.holders(session, blast_id, besides=self.worker)
            if holders:
                released, in_doubt = workers.recover_dead(session, blast_id, now)
                self._recovered(session, blast_id, now, released, in_doubt)
                holders = workers.holders(session, blast_id, besides=self.worker)
            due: datetime | None = session.exec(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.blast_id == blast_id, Delivery.state == DeliveryState.DEFERRED
                )
            ).one()
        return due, bool(holders)

    # -- writing outcomes ------------------------------------------------------------

    def _mark_sending(self, ids: list[int]) -> set[int]:
        """Mark claimed rows as handed to the relay; return those still ours to send.

        A row cancelled (or otherwise taken back) since it was claimed no longer
        names this worker and is left out: its message must not go. Nothing is
        marked once this sender's lease has run out: other senders may be taking
        its rows back at this moment.
        """
        sql = self._sql()
        params = (
            DeliveryState.SENDING.value,
            *ids,
            self.worker,
            DeliveryState.QUEUED.value,
            self.worker,
            sql.driver.write_time(self.clock()),
        )
        with self._hot() as cursor:
            cursor.execute(sql.driver.with_ids(sql.mark, len(ids)), params)
            return {row[0] for row in cursor.fetchall()}

    def _record(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        sql = self._sql()
        write_time = sql.driver.write_time
        values = [
            (
                r["state"],
                r["attempts"],
                r["reply_code"],
                r["reply_text"],
                r["message_id"],
                write_time(r["next_attempt_at"]),
                write_time(r["sent_at"]),
                write_time(r["updated_at"]),
                r["d_id"],
                self.worker,
            )
            for r in rows
        ]
        with self._hot() as cursor:
            cursor.executemany(sql.record, values)

    def _sql(self) -> _SendSql:
        if self._prepared is None:
            self._prepared = _SendSql.for_dialect(self.db.engine.dialect)
        return self._prepared

    @contextlib.contextmanager
    def _hot(self) -> Iterator[DBAPICursor]:
        """A cursor of the database thread's own driver connection, committed on success.

        The connection is kept for the run (a pool checkout, with PostgreSQL's
        pre-ping, per write would cost more than the write) and used through
        the driver itself; after any error it is dropped, so the next write
        starts on a fresh one.
        """
        if self._hot_conn is None:
            self._hot_conn = self.db.engine.raw_connection()
        conn = self._hot_conn
        cursor = conn.cursor()
        try:
            yield cursor
            conn.commit()
        except BaseException:
            self._close_hot(invalidate=True)
            raise
        finally:
            cursor.close()

    def _close_hot(self, *, invalidate: bool = False) -> None:
        conn, self._hot_conn = self._hot_conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                conn.invalidate()
            conn.close()

    def _release(self, ids: list[int]) -> None:
        """Give claimed deliveries back to the queue (never started, nothing sent).

        In a blast cancelled meanwhile they are ``skipped`` instead: the cancel
        skipped what was queued, but not a row already marked ``sending`` for
        the message a connection had prepared next.
        """
        if not ids:
            return
        with self.db.session() as session:
            session.execute(
                update(Delivery)
                .where(
                    col(Delivery.id).in_(ids),
                    col(Delivery.worker) == self.worker,
                    col(Delivery.state).in_((DeliveryState.QUEUED, DeliveryState.SENDING)),
                )
                .values(state=DeliveryState.QUEUED, worker="")
            )
            cancelled = sa_select(Blast.id).where(  # type: ignore[call-overload]
                col(Blast.status) == BlastStatus.CANCELLED
            )
            session.execute(
                update(Delivery)
                .where(
                    col(Delivery.id).in_(ids),
                    col(Delivery.worker) == "",
                    col(Delivery.state) == DeliveryState.QUEUED,
                    col(Delivery.blast_id).in_(cancelled),
                )
                .values(
                    state=DeliveryState.SKIPPED,
                    reply_text=control.CANCELLED_TEXT,
                    updated_at=self.clock(),
                )
            )

    def _heartbeat(self, blast_id: int) -> tuple[BlastStatus, bool, int]:
        """Renew the lease, take back what dead senders hold, read the blast's status.

        Returns the status, whether this sender still has its lease, and how
        many live senders are on the blast.
        """
        now = self.clock()
        with self.db.session() as session:
            kept = workers.heartbeat(session, self.worker, now, self.lease)
        with self.db.session() as session:
            released, in_doubt = workers.recover_expired(session, blast_id, now)
            self._recovered(session, blast_id, now, released, in_doubt)
            senders = len(workers.live_on(session, blast_id, now))
            status = session.exec(select(Blast.status).where(Blast.id == blast_id)).one()
        return BlastStatus(status), kept, senders

    def _recovered(
        self, session: Session, blast_id: int, now: datetime, released: int, in_doubt: int
    ) -> None:
        """Log and record (as an event) what was taken back from dead senders, if anything."""
        if not (released or in_doubt):
            return
        log.warning(
            "blast %d: took back what dead senders held: %d queued again, %d in doubt",
            blast_id,
            released,
            in_doubt,
        )
        session.add(
            Event(
                at=now,
                actor="system",
                action="blast.senders_recovered",
                blast_id=blast_id,
                detail={"by": self.worker, "released": released, "in_doubt": in_doubt},
            )
        )

    def _senders(self, blast_id: int) -> int:
        with self.db.session() as session:
            return len(workers.live_on(session, blast_id, self.clock()))

    def _take_tokens(self, blast_id: int, domain: str | None, want: int) -> tuple[int, float]:
        rate = self.cfg.rate if domain is None else self.cfg.domain_rate
        key = shared_rate.blast_key(blast_id, domain)
        with self.db.session() as session:
            return shared_rate.take(
                session, key, rate=rate, want=want, dialect=self.db.engine.dialect.name
            )

    @property
    def shares_rates(self) -> bool:
        """Rates go through the database's buckets (PostgreSQL, where senders may be many)."""
        return not self.db.is_sqlite and (self.cfg.rate > 0 or self.cfg.domain_rate > 0)

    def outcome_row(self, item: Claimed, outcome: Outcome, message_id: str) -> dict[str, Any]:
        now = self.clock()
        attempts = item.attempts + 1
        state = outcome.state
        next_at = None
        text = outcome.text
        if outcome.verdict is Verdict.RETRY:
            age = now - item.created_at if item.created_at else timedelta(0)
            if attempts >= self.cfg.max_attempts:
                state = DeliveryState.FAILED
                text = f"gave up after {attempts} attempts; last reply: {outcome.text}"
            elif age.total_seconds() >= self.cfg.max_retry_age:
                state = DeliveryState.FAILED
                text = f"gave up after {age} of retrying; last reply: {outcome.text}"
            else:
                next_at = now + retry_delay(attempts, self.cfg.retry_base)
        return {
            "d_id": item.delivery_id,
            "state": state.value,
            "attempts": attempts,
            "reply_code": outcome.code,
            "reply_text": text[:1000],
            "message_id": message_id,
            "next_attempt_at": next_at,
            "sent_at": now if state is DeliveryState.SENT else None,
            "updated_at": now,
        }

    def unbuildable_row(self, item: Claimed, exc: Exception) -> dict[str, Any]:
        return {
            "d_id": item.delivery_id,
            "state": DeliveryState.FAILED.value,
            "attempts": item.attempts,
            "reply_code": None,
            "reply_text": f"not sent: the message could not be built: {exc}"[:1000],
            "message_id": "",
            "next_attempt_at": None,
            "sent_at": None,
            "updated_at": self.clock(),
        }

    def skipped_row(self, item: Claimed) -> dict[str, Any]:
        return {
            "d_id": item.delivery_id,
            "state": DeliveryState.SKIPPED.value,
            "attempts": item.attempts,
            "reply_code": None,
            "reply_text": (
                "not sent: the address is on the suppression list"
                if item.suppressed
                else f"not sent: supporter is {item.status} at build time"
            ),
            "message_id": "",
            "next_attempt_at": None,
            "sent_at": None,
            "updated_at": self.clock(),
        }

    # -- the run -----------------------------------------------------------------------

    def request_stop(self, reason: str, *, pause_blast: bool = True) -> None:
        """Stop gracefully: finish in-flight messages, give the rest back to the queue.

        With ``pause_blast`` the blast is left paused (for an organizer to
        resume); without, it stays ``sending``, for a service to resume on its
        next start.
        """
        if self._stop is not None:
            self._stop(reason, pause_blast=pause_blast)

    def _signalled(self, signum: int, reason: str) -> None:
        if self._stop is not None:  # the blast pauses only if no other sender is on it
            self._stop(reason, pause_blast=True, if_alone=True)
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailer-db")
        if self.shares_rates:
            self._grants = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailer-rate")
        stop = self._stop = _Stop()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for signum in signals:
            name = signal.Signals(signum).name
            loop.add_signal_handler(
                signum, self._signalled, signum, f"stopped by {name}; resumable"
            )
        try:
            total, done = await self._db(self.start, blast_id, actor=actor, join_only=join_only)
            if progress:
                progress.start(total, done)
            run = _Run(self, blast_id, composer, stop, progress)
            await run.execute()
            status = await self._db(self._finish, blast_id, stop)
        finally:
            with contextlib.suppress(Exception):
                await self._db(self._close_hot)
            for signum in signals:
                loop.remove_signal_handler(signum)
            if progress:
                progress.finish()
            self._executor.shutdown(wait=True)
            self._executor = None
            if self._grants is not None:
                self._grants.shutdown(wait=True)
                self._grants = None
            self._stop = None
        counts = delivery_counts(self.db, blast_id)
        # An error only when the blast was left paused for it (not when others go on).
        paused = stop.pause_blast and status is BlastStatus.PAUSED
        return SendResult(blast_id, status, counts, stop.reason if paused else "")


@dataclass(frozen=True)
class _Ready:
    item: Claimed
    message: OutgoingMessage


class _Run:
    """One run of one blast: the producer, the workers, the watcher and the writers."""

    def __init__(
        self,
        sender: BlastSender,
        blast_id: int,
        composer: AlertComposer,
        stop: _Stop,
        progress: Progress | None,
    ) -> None:
        self.s = sender
        self.cfg = sender.cfg
        self.blast_id = blast_id
        self.composer = composer
        self.stop = stop
        self.progress = progress
        grants: Grants | None = self.grant if sender.shares_rates else None
        self.scheduler: DomainScheduler[Claimed] = DomainScheduler(
            concurrency=self.cfg.domain_concurrency,
            domain_rate=self.cfg.domain_rate,
            rate=self.cfg.rate,
            grants=grants,
        )
        self.outcomes: list[dict[str, Any]] = []
        self.marks: list[tuple[int, asyncio.Future[bool]]] = []
        self.mark_task: asyncio.Task[None] | None = None
        self.senders = 1  # live senders on the blast, this one included

    async def execute(self) -> None:
        self.senders = await self.s._db(self.s._senders, self.blast_id)
        self.scheduler.share(self.senders)
        transports = [self.s.transport_factory() for _ in range(max(1, self.cfg.connections))]
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
            left = [job.delivery_id for job in self.scheduler.drain()]
            await self.flush_outcomes()
            await self.s._db(self.s._release, left)

    # -- producer ----------------------------------------------------------------------

    async def produce(self) -> None:
        after_id = 0
        try:
            while not self.stop:
                room = self.cfg.batch_size - self.scheduler.pending  # memory stays bounded
                if room <= self.cfg.batch_size // 2:
                    await self.pause_a_moment(0.01)
                    continue
                capped = self.cfg.hourly_limit > 0 or self.cfg.daily_limit > 0
                cap_room = await self.s._db(self.s._cap_room) if capped else None
                if cap_room is not None:
                    # Senders on the blast take turns at the window's room: a share each.
                    share = cap_room // max(1, self.senders)
                    room = min(room, share - self.scheduler.pending - self.scheduler.in_flight)
                    if room <= 0:
                        log.info("hourly/daily cap reached; waiting for the window to move")
                        await self.pause_a_moment(5.0)
                        continue
                batch = await self.s._db(self.s._claim, self.blast_id, after_id, room)
                if batch:
                    after_id = batch[-1].delivery_id
                    for item in batch:
                        if item.sendable:
                            self.scheduler.put(item.domain, item)
                        else:
                            self.add_outcome(self.s.skipped_row(item))
                    continue
                if after_id:
                    after_id = 0  # a new pass from the start, for deferred ones now due
                    continue
                # Nothing claimable now: done, unless messages are in flight or retries due.
                # Order matters: idle first, so every outcome is flushed before asking
                # for the next due retry (the database thread runs jobs in order).
                idle = self.scheduler.idle
                await self.flush_outcomes()
                due, others_hold = await self.s._db(self.s._next_due, self.blast_id)
                if due is None and idle and not others_hold:
                    break
                # Other live senders still hold rows: stay, to take them over should
                # one of them die before it is done.
                wait = 0.5
                if due is not None:
                    wait = min(max(0.05, (due - self.s.clock()).total_seconds()), 5.0)
                await self.pause_a_moment(wait)
        finally:
            self.scheduler.close()

    async def pause_a_moment(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.event.wait(), seconds)

    # -- workers -----------------------------------------------------------------------

    async def work(self, transport: Transport) -> None:
        """One connection's loop. The next message is composed and marked while the
        current one is on the wire, so the database round trip costs no sending time
        (a crash therefore leaves at most two messages per connection in doubt)."""
        ahead: asyncio.Task[_Ready | None] | None = asyncio.create_task(self.prepare())
        while ahead is not None:
            ready = await ahead
            if ready is None:
                return
            ahead = None if self.stop else asyncio.create_task(self.prepare())
            outcome: Outcome | None = None
            try:
                outcome = await transport.deliver(ready.message)
                self.add_outcome(self.s.outcome_row(ready.item, outcome, ready.message.message_id))
            except TransportError as exc:
                log.error("blast %d: %s", self.blast_id, exc)
                self.stop(str(exc), pause_blast=True)
                await self.s._db(self.s._release, [ready.item.delivery_id])
            finally:
                self.scheduler.done(ready.item.domain, outcome)
            if self.stop and ahead is not None:
                await self.abandon(ahead)
                ahead = None

    async def abandon(self, ahead: asyncio.Task[_Ready | None]) -> None:
        """Stopping: a prepared next message is not sent; it goes back to the queue."""
        ready = await ahead
        if ready is not None:
            await self.s._db(self.s._release, [ready.item.delivery_id])
            self.scheduler.done(ready.item.domain, None)

    async def prepare(self) -> _Ready | None:
        """The next message to send, composed and marked ``sending``; None when done."""
        while not self.stop:
            picked = await self.next_job()
            if picked is None:
                return None
            domain, item = picked
            try:
                composed = self.composer.compose(item.delivery_id, item.recipient)
            except TemplateProblem as exc:
                log.error("blast %d: %s", self.blast_id, exc)
                self.stop(str(exc), pause_blast=True)
                self.scheduler.done(domain, None)
                await self.s._db(self.s._release, [item.delivery_id])
                return None
            except (ValueError, TypeError, LookupError, MessageError) as exc:
                # This recipient's data cannot make a valid message (the template
                # renders for everyone else): fail this one alone.
                self.add_outcome(self.s.unbuildable_row(item, exc))
                self.scheduler.done(domain, None)
                continue
            if not await self.mark(item.delivery_id):
                self.scheduler.done(domain, None)  # taken back (blast cancelled) since claimed
                continue
            return _Ready(item, composed.message)
        return None

    async def next_job(self) -> tuple[str, Claimed] | None:
        ready = self.scheduler.get_nowait()  # most of the time one is: no waiting to set up
        if ready is not None:
            return ready
        getter = asyncio.ensure_future(self.scheduler.get())
        stopper = asyncio.ensure_future(self.stop.event.wait())
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

    # -- marks (group commit) ---------------------------------------------------------

    async def mark(self, delivery_id: int) -> bool:
        """Mark one delivery ``sending`` (with others, in one commit); False if not ours."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.marks.append((delivery_id, future))
        if self.mark_task is None or self.mark_task.done():
            self.mark_task = asyncio.create_task(self.flush_marks())
        return await future

    async def flush_marks(self) -> None:
        while self.marks:
            await asyncio.sleep(0)  # let the other workers add theirs
            batch, self.marks = self.marks, []
            try:
                marked = await self.s._db(self.s._mark_sending, [i for i, _ in batch])
            except BaseException as exc:
                for _, f in batch:
                    f.set_exception(exc)
                raise
            for delivery_id, f in batch:
                f.set_result(delivery_id in marked)

    # -- outcomes (group commit) ------------------------------------------------------

    def add_outcome(self, row: dict[str, Any]) -> None:
        self.outcomes.append(row)

    async def flush_outcomes(self) -> None:
        rows, self.outcomes = self.outcomes, []
        if rows:
            if self.progress:
                self.progress.advance(len(rows))
            # Shielded: once taken from the list these rows must be written even if
            # the recorder task is cancelled while the write waits its turn on the
            # database thread (cancelling it there would drop the write, leaving
            # sent messages marked ``sending``).
            await asyncio.shield(self.s._db(self.s._record, rows))

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
            status, kept, senders = await self.s._db(self.s._heartbeat, self.blast_id)
            if not kept:
                log.error("blast %d: this sender's lease was taken over; stopping", self.blast_id)
                self.stop("lease lost: other senders took over", lease_lost=True)
            elif status is not BlastStatus.SENDING:
                log.warning("blast %d is now %s; stopping", self.blast_id, status)
                self.stop(f"blast {status} by an organizer")
            self.senders = senders
            self.scheduler.share(senders)

    async def grant(self, domain: str | None, want: int) -> tuple[int, float]:
        """Tokens from the database's bucket of the blast (or of ``domain``)."""
        assert self.s._grants is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.s._grants, self.s._take_tokens, self.blast_id, domain, want
        )


@dataclass(frozen=True)
class _SendSql:
    """The sender's per-message statements for one dialect, run on the driver directly."""

    driver: DriverSql
    mark: str  # with ``IDS`` for the ids
    record: str

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _SendSql:
        driver = DriverSql.for_dialect(dialect)
        m = driver.mark
        delivery = Delivery.__tablename__
        senders = SenderWorker.__tablename__
        mark = (
            f"UPDATE {delivery} SET state = {m} WHERE id IN ({IDS}) AND worker = {m}"  # noqa: S608 (constants only)
            f" AND state = {m} AND EXISTS (SELECT 1 FROM {senders}"
            f" WHERE name = {m} AND lease_until > {m}) RETURNING id"
        )
        record = (
            f"UPDATE {delivery} SET state = {m}, attempts = {m}, reply_code = {m},"  # noqa: S608 (constants only)
            f" reply_text = {m}, message_id = {m}, next_attempt_at = {m}, sent_at = {m},"
            f" worker = '', updated_at = {m} WHERE id = {m} AND worker = {m}"
        )
        return cls(driver=driver, mark=mark, record=record)


def delivery_counts(db: Database, blast_id: int) -> dict[str, int]:
    with db.session() as session:
        rows = session.exec(
            select(Delivery.state, func.count())
            .where(Delivery.blast_id == blast_id)
            .group_by(Delivery.state)
        ).all()
    counts = {state.value: 0 for state in DeliveryState}
    counts.update({str(state): n for state, n in rows})
    return counts

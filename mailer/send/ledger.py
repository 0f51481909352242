"""The sender's side of the database: start, claim, mark, record, release, heartbeat, finish.

Every method of :class:`Ledger` is synchronous and runs on **the database
thread only**: during a send, :class:`mailer.send.run.AsyncLedger` runs each
call on the one thread the run keeps for the database (one writer, in order),
while the event loop keeps the SMTP connections busy; outside a send, one
caller at a time may call it. The exceptions: :meth:`Ledger.take_tokens`,
run on a grant thread, and, on SQLite, :meth:`Ledger.try_mark_sending` and
:meth:`Ledger.close_loop_connection`, run on the event loop's thread
(:mod:`mailer.send.marks`); each uses a connection of its own and shares
nothing with the others but the database.

What makes several senders on one blast safe is here:

- :meth:`~Ledger.start` locks the blast row (``FOR UPDATE``), so the audience
  snapshot is taken exactly once; a sender that finds the blast ``sending``
  joins it.
- :meth:`~Ledger.claim` skips rows another sender has locked (``FOR UPDATE
  SKIP LOCKED``) or holds (``worker`` set), and :meth:`~Ledger.mark_sending`
  makes a row ``sending`` only while it names this sender and this sender's
  lease is current, so no two senders ever send one delivery.
- :meth:`~Ledger.heartbeat` renews the lease and recovers senders whose lease
  ran out or whose process is gone (:mod:`mailer.send.workers`).
- :meth:`~Ledger.finish` runs under the blast row lock too: only the last
  sender to leave marks the blast done; a signal pauses the blast only when
  no other sender is left on it.

Status changes go through :mod:`mailer.lifecycle`. The hot statements (claims,
marks, outcomes) are SQL text prepared once per dialect, run on the driver
over one connection kept for the run (:mod:`mailer.store.driver`,
:mod:`mailer.send.claims`); the rest goes through the ORM.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Dialect,
    func,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlmodel import Session, col, select

from mailer import lifecycle
from mailer.config import SendingSettings
from mailer.errors import InvalidState
from mailer.send import control, shared_rate, workers
from mailer.send.audience import snapshot_of
from mailer.send.claims import ClaimSql
from mailer.send.hot import HotConnection
from mailer.send.policy import Claimed, OutcomeRow, StopReason
from mailer.store import Blast, BlastStatus, Database, Delivery, DeliveryState, SenderWorker
from mailer.store.driver import IDS, DriverSql
from mailer.store.models import utcnow

log = logging.getLogger(__name__)

OPEN_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.DEFERRED)


@dataclass(frozen=True)
class Pulse:
    """What a heartbeat found."""

    status: BlastStatus  # the blast's status now
    kept: bool  # this sender still holds its lease
    senders: int  # live senders on the blast, this one included


R = TypeVar("R")


class Ledger:
    """One sender's database work on blasts; see the module docstring for the thread rule."""

    def __init__(
        self,
        db: Database,
        sending: SendingSettings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = sending or SendingSettings()
        self.clock = clock
        self.worker = workers.new_worker_name()  # this sender's name in ``delivery.worker``
        # Renewed every control interval: shorter than a few of them, it would lapse.
        cfg = self.settings
        self.lease = timedelta(seconds=max(cfg.lease_seconds, 3 * cfg.control_interval))
        self._sql: _SendSql | None = None
        self._hot = HotConnection(db)
        self._loop_hot = HotConnection(db)  # try_mark_sending's, on the event loop's thread

    @property
    def shares_rates(self) -> bool:
        """Rates go through the database's buckets (PostgreSQL, where senders may be many)."""
        return not self.db.is_sqlite and (self.settings.rate > 0 or self.settings.domain_rate > 0)

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
            lifecycle.check(blast, BlastStatus.SENDING, doing="be sent again")
            released, in_doubt = workers.recover_dead(session, blast_id, now)
            action = "blast.resumed"
            if blast.status is BlastStatus.SENDING and workers.live_on(session, blast_id, now):
                action = "blast.joined"  # other senders are at work on it
            if blast.started_at is None:  # first start: take the audience snapshot
                added = snapshot_of(session, blast, now, dialect=self.db.engine.dialect.name)
                blast.started_at = now
                action = "blast.started"
                log.info("blast %s: %d recipients in the audience snapshot", blast.name, added)
            blast.last_error = ""
            lifecycle.transition(
                session,
                blast,
                BlastStatus.SENDING,
                action=action,
                actor=actor,
                now=now,
                detail={"worker": self.worker, "released": released, "in_doubt": in_doubt},
            )
            workers.register(session, self.worker, blast_id, now, self.lease)
        counts = delivery_counts(self.db, blast_id)
        total = sum(counts.values())
        return total, total - sum(counts[s.value] for s in OPEN_STATES)

    def finish(self, blast_id: int, why: StopReason | None) -> BlastStatus:
        """Unregister this sender; pause or finish the blast if it is this sender's to do.

        ``why`` is None when the run ended because nothing was left to send.
        """
        now = self.clock()
        with self.db.session() as session:
            # Under the blast row lock, so that of senders finishing together exactly
            # the last one sees no others and finishes the blast.
            blast = session.exec(select(Blast).where(Blast.id == blast_id).with_for_update()).one()
            workers.unregister(session, self.worker)
            if blast.status is not BlastStatus.SENDING or (why is not None and why.lease_lost):
                return blast.status  # paused or cancelled from outside, or taken over
            others = workers.live_on(session, blast_id, now)
            if why is not None and why.pause_blast and not (why.if_alone and others):
                blast.last_error = why.reason
                lifecycle.transition(
                    session,
                    blast,
                    BlastStatus.PAUSED,
                    action="blast.paused",
                    actor="system",
                    now=now,
                    detail={"reason": why.reason},
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
                blast.finished_at = now
                shared_rate.forget(session, blast_id)
                lifecycle.transition(
                    session,
                    blast,
                    BlastStatus.DONE,
                    action="blast.finished",
                    actor="system",
                    now=now,
                )
            return blast.status

    # -- claiming ---------------------------------------------------------------------

    def claim(self, blast_id: int, after_id: int, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due deliveries with ids above ``after_id``, in id order.

        Due means queued, or deferred with its retry time passed. The rows
        get this sender's name and stay ``queued`` until marked
        (:mod:`mailer.send.claims`).
        """
        sql = self._prepared().claim
        params = sql.take_params(self.worker, blast_id, after_id, limit, self.clock())

        def take(cursor: DBAPICursor) -> list[Claimed]:
            cursor.execute(sql.take, params)
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                return []
            cursor.execute(sql.driver.with_ids(sql.read, len(ids)), ids)
            return sql.claimed(cursor.fetchall())

        return self._write(take)

    def cap_room(self) -> int | None:
        """How many more messages the hourly and daily caps allow now; None when uncapped."""
        allowed: int | None = None
        now = self.clock()
        for cap, window in (
            (self.settings.hourly_limit, timedelta(hours=1)),
            (self.settings.daily_limit, timedelta(days=1)),
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

    def next_due(self, blast_id: int) -> tuple[datetime | None, bool]:
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

    # -- marks and outcomes (the hot writes) ------------------------------------------

    @property
    def marks_inline(self) -> bool:
        """Marks are written on the event loop's thread (:meth:`try_mark_sending`): SQLite."""
        return self.db.is_sqlite

    def try_mark_sending(
        self, ids: list[int], outcomes: Sequence[OutcomeRow] = ()
    ) -> tuple[set[int]] | None:
        """:meth:`mark_sending` on a connection of the event loop's own, without waiting.

        SQLite only, called from the event loop's thread (the one exception to
        the thread rule): a write on the local file costs less than the trip
        to the database thread and back. None, with nothing written, when the
        write lock is taken; the caller tries again shortly.
        """
        return self._loop_hot.try_write(self._marking(ids, outcomes))

    def mark_sending(self, ids: list[int], outcomes: Sequence[OutcomeRow] = ()) -> set[int]:
        """Mark claimed rows as handed to the relay; return those still ours to send.

        A row cancelled (or otherwise taken back) since it was claimed no longer
        names this worker and is left out: its message must not go. Nothing is
        marked once this sender's lease has run out: other senders may be taking
        its rows back at this moment. ``outcomes`` are recorded in the same
        commit (as :meth:`record` does): one write instead of two.
        """
        return self._write(self._marking(ids, outcomes))

    def _marking(
        self, ids: list[int], outcomes: Sequence[OutcomeRow]
    ) -> Callable[[DBAPICursor], set[int]]:
        sql = self._prepared()
        params = (
            DeliveryState.SENDING.value,
            *ids,
            self.worker,
            DeliveryState.QUEUED.value,
            self.worker,
            sql.driver.write_time(self.clock()),
        )
        statement = sql.driver.with_ids(sql.mark, len(ids))
        values = self._outcome_values(outcomes)

        def mark(cursor: DBAPICursor) -> set[int]:
            if values:
                cursor.executemany(sql.record, values)
            cursor.execute(statement, params)
            return {row[0] for row in cursor.fetchall()}

        return mark

    def record(self, rows: Sequence[OutcomeRow]) -> None:
        """Write outcomes, in one commit; a row no longer naming this sender is left alone."""
        if not rows:
            return
        sql = self._prepared()
        values = self._outcome_values(rows)
        self._write(lambda cursor: cursor.executemany(sql.record, values))

    def _outcome_values(self, rows: Sequence[OutcomeRow]) -> list[tuple[Any, ...]]:
        """The parameters of the ``record`` statement, a tuple per outcome."""
        write_time = self._prepared().driver.write_time
        worker = self.worker
        return [
            (
                r.state.value,
                r.attempts,
                r.reply_code,
                r.reply_text,
                r.message_id,
                write_time(r.next_attempt_at),
                write_time(r.sent_at),
                write_time(r.updated_at),
                r.delivery_id,
                worker,
            )
            for r in rows
        ]

    def _prepared(self) -> _SendSql:
        if self._sql is None:
            self._sql = _SendSql.for_dialect(self.db.engine.dialect)
        return self._sql

    def hot_connection(self) -> Any:
        """The driver connection (sqlite3 or psycopg) of the hot statements, opened if need be."""
        return self._hot.driver_connection()

    def _write(self, work: Callable[[DBAPICursor], R]) -> R:
        return self._hot.write(work)

    def close(self) -> None:
        """Close the connection the hot writes keep (at the end of a run)."""
        self._hot.close()

    def close_loop_connection(self) -> None:
        """Close :meth:`try_mark_sending`'s connection (on the event loop's thread)."""
        self._loop_hot.close()

    # -- giving back, heartbeat -------------------------------------------------------

    def release(self, ids: list[int]) -> None:
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

    def heartbeat(self, blast_id: int) -> Pulse:
        """Renew the lease, take back what dead senders hold, read the blast's status."""
        now = self.clock()
        with self.db.session() as session:
            kept = workers.heartbeat(session, self.worker, now, self.lease)
        with self.db.session() as session:
            released, in_doubt = workers.recover_expired(session, blast_id, now)
            self._recovered(session, blast_id, now, released, in_doubt)
            senders = len(workers.live_on(session, blast_id, now))
            status = session.exec(select(Blast.status).where(Blast.id == blast_id)).one()
        return Pulse(BlastStatus(status), kept, senders)

    def live_senders(self, blast_id: int) -> int:
        """How many live senders are on the blast, this one included once registered."""
        with self.db.session() as session:
            return len(workers.live_on(session, blast_id, self.clock()))

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
        lifecycle.audit(
            session,
            "blast.senders_recovered",
            actor="system",
            now=now,
            blast_id=blast_id,
            detail={"by": self.worker, "released": released, "in_doubt": in_doubt},
        )

    def take_tokens(self, blast_id: int, domain: str | None, want: int) -> tuple[int, float]:
        """Tokens from the database's bucket of the blast (or of ``domain``): (granted, wait).

        Runs on the run's grant thread, not the database thread: it uses a
        session of its own and no state of the ledger.
        """
        rate = self.settings.rate if domain is None else self.settings.domain_rate
        key = shared_rate.blast_key(blast_id, domain)
        with self.db.session() as session:
            return shared_rate.take(
                session, key, rate=rate, want=want, dialect=self.db.engine.dialect.name
            )


@dataclass(frozen=True)
class _SendSql:
    """The sender's per-message statements for one dialect, run on the driver directly."""

    driver: DriverSql
    mark: str  # with ``IDS`` for the ids
    record: str
    claim: ClaimSql

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
        claim = ClaimSql.for_dialect(dialect, driver)
        return cls(driver=driver, mark=mark, record=record, claim=claim)


def delivery_counts(db: Database, blast_id: int) -> dict[str, int]:
    """How many deliveries of the blast are in each state (every state named, zeros too)."""
    with db.session() as session:
        rows = session.exec(
            select(Delivery.state, func.count())
            .where(Delivery.blast_id == blast_id)
            .group_by(Delivery.state)
        ).all()
    counts = {state.value: 0 for state in DeliveryState}
    counts.update({str(state): n for state, n in rows})
    return counts

"""Sending one blast: claim a batch, compose, deliver, record; repeat.

The loop, in the order a delivery meets it:

1. **start** — a draft blast gets its audience snapshot (one set-based insert)
   and becomes ``sending``. Deliveries still marked ``sending`` from a run that
   died are set to ``unknown``: they may have reached the relay, so they are
   neither dropped nor silently sent again.
2. **claim** — the next ``batch_size`` deliveries that are queued (or deferred
   and due) are marked ``sending`` in one statement, walking the blast by id
   (``id > last``), never by OFFSET, so each batch costs the same.
3. **compose** — a supporter who is no longer active when their message is
   built is ``skipped``; everyone else gets their own message.
4. **deliver** — through the :class:`~mailer.send.transport.Transport`; its
   :class:`~mailer.send.outcome.Outcome` says sent, retry or failed.
5. **record** — the batch's outcomes are written in one transaction.

When the relay cannot be used (unreachable, TLS or login refused) or a template
fails for a recipient, the blast is paused with the reason and the undelivered
part of the batch goes back to the queue; ``blast send`` again resumes it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import CursorResult, Table, and_, bindparam, func, or_, update
from sqlmodel import col, select

from mailer.compose.alert import AlertComposer, Recipient
from mailer.errors import InvalidState, TemplateProblem, TransportError
from mailer.send.audience import snapshot_audience
from mailer.send.outcome import Outcome, Verdict
from mailer.send.transport import Transport
from mailer.store import Blast, BlastStatus, Database, Delivery, DeliveryState, Event, Supporter
from mailer.store.models import SupporterStatus, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(minutes=5)

_DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
_STARTABLE = {BlastStatus.DRAFT, BlastStatus.SCHEDULED, BlastStatus.SENDING, BlastStatus.PAUSED}
_OPEN_STATES = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.DEFERRED)


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


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 5, 10, 20, 40 minutes after the 1st, 2nd, ... attempt."""
    return FIRST_RETRY * (1 << max(0, attempts - 1))


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    attempts: int
    status: SupporterStatus
    recipient: Recipient


class BlastSender:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        batch_size: int = 200,
        worker: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.transport = transport
        self.batch_size = batch_size
        self.worker = worker or default_worker_name()
        self.clock = clock

    # -- start and finish -------------------------------------------------------

    def start(self, blast_id: int, *, actor: str = "cli") -> tuple[int, int]:
        """Make the blast ``sending``; return (total deliveries, already final)."""
        now = self.clock()
        with self.db.session() as session:
            blast = session.get(Blast, blast_id)
            if blast is None:
                raise InvalidState(f"blast {blast_id} does not exist")
            if blast.status not in _STARTABLE:
                raise InvalidState(
                    f"blast {blast.name!r} is {blast.status}; it cannot be sent again"
                )
            action = "blast.resumed"
            if blast.status in (BlastStatus.DRAFT, BlastStatus.SCHEDULED):
                added = snapshot_audience(
                    session, blast_id, now, dialect=self.db.engine.dialect.name
                )
                blast.started_at = now
                action = "blast.started"
                log.info("blast %s: %d recipients in the audience snapshot", blast.name, added)
            in_doubt: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(Delivery)
                .where(
                    col(Delivery.blast_id) == blast_id, col(Delivery.state) == DeliveryState.SENDING
                )
                .values(
                    state=DeliveryState.UNKNOWN,
                    worker="",
                    updated_at=now,
                    reply_text="in flight when the sender stopped; may or may not have arrived",
                )
            )
            blast.status = BlastStatus.SENDING
            blast.last_error = ""
            session.add(blast)
            session.add(
                Event(
                    at=now,
                    actor=actor,
                    action=action,
                    blast_id=blast_id,
                    detail={"in_doubt": in_doubt.rowcount or 0},
                )
            )
            rows = session.exec(
                select(Delivery.state, func.count())
                .where(Delivery.blast_id == blast_id)
                .group_by(Delivery.state)
            ).all()
        counts = {str(state): n for state, n in rows}
        total = sum(counts.values())
        done = total - sum(counts.get(str(s), 0) for s in _OPEN_STATES)
        return total, done

    def _finish(self, blast_id: int) -> BlastStatus:
        now = self.clock()
        with self.db.session() as session:
            blast = session.get(Blast, blast_id)
            assert blast is not None
            open_count = session.exec(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.blast_id == blast_id, col(Delivery.state).in_(_OPEN_STATES))
            ).one()
            if open_count == 0 and blast.status == BlastStatus.SENDING:
                blast.status = BlastStatus.DONE
                blast.finished_at = now
                session.add(blast)
                session.add(
                    Event(at=now, actor="system", action="blast.finished", blast_id=blast_id)
                )
            return blast.status

    def _pause(self, blast_id: int, reason: str) -> None:
        now = self.clock()
        with self.db.session() as session:
            blast = session.get(Blast, blast_id)
            assert blast is not None
            blast.status = BlastStatus.PAUSED
            blast.last_error = reason
            session.add(blast)
            session.add(
                Event(
                    at=now,
                    actor="system",
                    action="blast.paused",
                    blast_id=blast_id,
                    detail={"reason": reason},
                )
            )

    # -- the loop ---------------------------------------------------------------

    def _claim(self, blast_id: int, after_id: int) -> list[_Claimed]:
        now = self.clock()
        due = or_(
            col(Delivery.state) == DeliveryState.QUEUED,
            and_(
                col(Delivery.state) == DeliveryState.DEFERRED, col(Delivery.next_attempt_at) <= now
            ),
        )
        batch = (
            select(Delivery.id)
            .where(Delivery.blast_id == blast_id, col(Delivery.id) > after_id, due)
            .order_by(col(Delivery.id))
            .limit(self.batch_size)
        )
        with self.db.session() as session:
            claimed = (
                session.execute(
                    update(Delivery)
                    .where(col(Delivery.id).in_(batch.scalar_subquery()))
                    .values(state=DeliveryState.SENDING, worker=self.worker, updated_at=now)
                    .returning(col(Delivery.id))
                )
                .scalars()
                .all()
            )
            if not claimed:
                return []
            rows = session.exec(
                select(Delivery.id, Delivery.attempts, Supporter)
                .join(Supporter, col(Supporter.id) == Delivery.supporter_id)
                .where(col(Delivery.id).in_(claimed))
                .order_by(col(Delivery.id))
            ).all()
        return [
            _Claimed(
                delivery_id=d_id,
                attempts=attempts,
                status=s.status,
                recipient=Recipient(
                    email=s.email,
                    first_name=s.first_name,
                    last_name=s.last_name,
                    zip=s.zip,
                    region=s.region,
                    language=s.language,
                    custom=dict(s.custom or {}),
                ),
            )
            for d_id, attempts, s in rows
            if d_id is not None
        ]

    def _record(self, results: list[dict[str, Any]]) -> None:
        if not results:
            return
        stmt = (
            update(_DELIVERY)
            .where(_DELIVERY.c.id == bindparam("d_id"))
            .values(
                state=bindparam("state"),
                attempts=bindparam("attempts"),
                reply_code=bindparam("reply_code"),
                reply_text=bindparam("reply_text"),
                message_id=bindparam("message_id"),
                next_attempt_at=bindparam("next_attempt_at"),
                sent_at=bindparam("sent_at"),
                worker="",
                updated_at=bindparam("updated_at"),
            )
        )
        with self.db.session() as session:
            session.connection().execute(stmt, results)

    def _release(self, delivery_ids: list[int]) -> None:
        """Put claimed but untouched deliveries back in the queue."""
        if not delivery_ids:
            return
        with self.db.session() as session:
            session.execute(
                update(Delivery)
                .where(
                    col(Delivery.id).in_(delivery_ids), col(Delivery.state) == DeliveryState.SENDING
                )
                .values(state=DeliveryState.QUEUED, worker="")
            )

    def _result_row(self, item: _Claimed, outcome: Outcome, message_id: str) -> dict[str, Any]:
        now = self.clock()
        attempts = item.attempts + 1
        state = outcome.state
        next_at = None
        text = outcome.text
        if outcome.verdict is Verdict.RETRY:
            if attempts >= MAX_ATTEMPTS:
                state = DeliveryState.FAILED
                text = f"gave up after {attempts} attempts; last reply: {outcome.text}"
            else:
                next_at = now + retry_delay(attempts)
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

    def _skipped_row(self, item: _Claimed) -> dict[str, Any]:
        now = self.clock()
        return {
            "d_id": item.delivery_id,
            "state": DeliveryState.SKIPPED.value,
            "attempts": item.attempts,
            "reply_code": None,
            "reply_text": f"not sent: supporter is {item.status} at build time",
            "message_id": "",
            "next_attempt_at": None,
            "sent_at": None,
            "updated_at": now,
        }

    async def send(
        self,
        blast_id: int,
        composer: AlertComposer,
        progress: Progress | None = None,
        *,
        actor: str = "cli",
    ) -> SendResult:
        total, done = self.start(blast_id, actor=actor)
        if progress:
            progress.start(total, done)
        after_id = 0
        error = ""
        try:
            while True:
                batch = self._claim(blast_id, after_id)
                if not batch:
                    if after_id == 0:
                        break
                    after_id = 0  # one more pass for deferred deliveries that came due
                    continue
                after_id = batch[-1].delivery_id
                results: list[dict[str, Any]] = []
                handled: set[int] = set()
                try:
                    for item in batch:
                        if item.status is not SupporterStatus.ACTIVE:
                            results.append(self._skipped_row(item))
                        else:
                            composed = composer.compose(item.delivery_id, item.recipient)
                            outcome = await self.transport.deliver(composed.message)
                            results.append(
                                self._result_row(item, outcome, composed.message.message_id)
                            )
                        handled.add(item.delivery_id)
                finally:
                    self._record(results)
                    self._release([i.delivery_id for i in batch if i.delivery_id not in handled])
                    if progress:
                        progress.advance(len(results))
        except (TransportError, TemplateProblem) as exc:
            error = str(exc)
            log.error("blast %d paused: %s", blast_id, error)
            self._pause(blast_id, error)
        finally:
            await self.transport.close()
            if progress:
                progress.finish()
        status = self._finish(blast_id) if not error else BlastStatus.PAUSED
        return SendResult(blast_id, status, delivery_counts(self.db, blast_id), error)


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

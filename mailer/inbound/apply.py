"""What an inbound finding changes: attribution, states, and the audit events.

**Attribution** tries, in order: a VERP token (the signed ``+TOKEN`` of the
per-recipient return path), the original ``Message-ID`` (ours are
``<blast.delivery.random@domain>``: the delivery is looked up by its id and
the whole Message-ID must match what was stored, so no index on
``delivery.message_id`` is needed and a guessed id does not match), and an
unsubscribe token (the mailto subject, or the original's ``List-Unsubscribe``).
Tokens that do not verify are ignored; mail that names no delivery changes
nothing and is recorded as ``inbound.unattributed``.

**Decisions** (events in brackets)

- hard bounce: a ``sent`` (or ``unknown``) delivery becomes ``bounced`` with
  the reply code and text of the report [``delivery.bounced``]; the supporter
  becomes ``bounced`` [``supporter.bounced``].
- soft bounce: counted [``supporter.soft_bounce``]; when the report says the
  message ``failed`` (e.g. ``5.2.2`` mailbox full, or ``4.x.x`` after the
  remote MTA gave up) the delivery becomes ``bounced`` as above, because the
  message did not arrive [``delivery.bounced``]; a ``delayed`` report leaves it.
- complaint (ARF): the delivery stays ``sent`` [``delivery.complained``]; the
  supporter becomes ``complained`` [``supporter.complained``] -- only when the
  complaint is trusted (:func:`trusted_complaint`: attributed by the VERP token,
  or sent from a domain in ``inbound.complaint_senders``); any other is recorded
  and changes nothing [``delivery.complaint_unverified``].
- mailto unsubscribe: :func:`~mailer.supporters.suppression.unsubscribe_delivery`
  with ``via="mailto"`` [``supporter.unsubscribed``]; from a supporter already
  unsubscribed, or one who complained, it changes nothing [``inbound.no_change``].
- auto-reply, unknown: nothing changes [``inbound.ignored``].

Soft bounces add up like Mailman's bounce score: one step per delivery per
day (UTC) with a soft bounce in the last ``soft_bounce_window_days``; when the
steps reach ``soft_bounce_limit`` (0 turns this off) **and** come from at least
``soft_bounce_min_blasts`` different blasts, the supporter becomes
``bounced``. So reports about one alert on one day count once, one blast's
trouble alone never stops anyone, and each step is a ``supporter.soft_bounce``
event with its evidence, count, blasts and whether the limit was reached. A
delivery that arrives in between resets nothing; only an undo (see
:mod:`mailer.inbound.review`) starts the count afresh, and that is recorded.
A **blocked** report (the message or our sender was refused) marks the
delivery ``bounced`` and records ``delivery.blocked`` with the recipient's
domain; it never changes the supporter.

A report about a delivery that is still ``sending`` raises
:class:`ReportTooEarly` before anything is written: the sender's outcome write
comes after it and would overwrite the bounce.

A status only ever moves to a stronger one: active < bounced < unsubscribed
< complained. A bounce never turns an unsubscribe into a "bounced", and
nothing turns a complaint into anything milder; the report is still recorded.

``supporter.<status>`` events are recorded when the status changes; the
``delivery.*`` and ``supporter.soft_bounce`` events record every report, each
with the evidence and the report's fingerprint. **Idempotent**: a report whose
fingerprint is already recorded for the delivery changes nothing again
(``inbound.duplicate``), so a DSN that arrives twice, or is imported from a
mailbox after the listener took it, counts once. On PostgreSQL the
supporter's row is locked (``SELECT ... FOR UPDATE``) while a report about
them is decided; on SQLite, which has one writer anyway, the listener decides
one report at a time, but a listener and an import applying the very same
report at the very same moment could both record it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, func, select

from mailer.compose.tokens import TokenSigner
from mailer.config import InboundSettings
from mailer.errors import TokenError
from mailer.inbound.finding import Finding
from mailer.inbound.status import Kind
from mailer.lifecycle import audit
from mailer.store import Database, Delivery, DeliveryState, Event, Supporter, SupporterStatus
from mailer.store.models import utcnow
from mailer.supporters.suppression import unsubscribe_delivery

log = logging.getLogger(__name__)

DELIVERY_BOUNCED = "delivery.bounced"
DELIVERY_COMPLAINED = "delivery.complained"
DELIVERY_BLOCKED = "delivery.blocked"
COMPLAINT_UNVERIFIED = "delivery.complaint_unverified"  # from no trusted source: no change
SOFT_BOUNCE = "supporter.soft_bounce"
SUPPORTER_BOUNCED = "supporter.bounced"
SUPPORTER_COMPLAINED = "supporter.complained"
UNATTRIBUTED = "inbound.unattributed"
IGNORED = "inbound.ignored"
DUPLICATE = "inbound.duplicate"
NO_CHANGE = "inbound.no_change"
BOUNCE_UNDONE = "supporter.bounce_undone"  # written by mailer.inbound.review
REPORT_ACTIONS = (DELIVERY_BOUNCED, DELIVERY_COMPLAINED, SOFT_BOUNCE, DELIVERY_BLOCKED)

STRENGTH = {
    SupporterStatus.PENDING: 0,
    SupporterStatus.ACTIVE: 0,
    SupporterStatus.BOUNCED: 1,
    SupporterStatus.UNSUBSCRIBED: 2,
    SupporterStatus.COMPLAINED: 3,
}
_BOUNCEABLE = (DeliveryState.SENT, DeliveryState.UNKNOWN)
_OUR_MESSAGE_ID = re.compile(r"^<\d{1,18}\.(\d{1,18})\.[0-9a-f]+@[^<>\s]+>$", re.IGNORECASE)
_MAX_ID = 2**31 - 1  # the id columns are 32-bit integers on PostgreSQL


class ReportTooEarly(Exception):
    """A report about a delivery that is still ``sending``: not recorded now.

    The sender's own outcome write lands after it and would overwrite the
    bounce; the caller answers 451 (SMTP) or leaves the report for the next
    import (mailbox), and the report is applied once the delivery is settled.
    """

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"delivery {delivery_id} is still sending; report it again later")
        self.delivery_id = delivery_id


class Outcome(StrEnum):
    BOUNCED = "bounced"  # a hard bounce was recorded
    BLOCKED = "blocked"  # the message or the sender was refused: counted, supporter unchanged
    SOFT_BOUNCE = "soft_bounce"  # a soft bounce was recorded (and counted, once per delivery)
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    NO_CHANGE = "no_change"  # attributed, but already so (e.g. unsubscribed twice)
    DUPLICATE = "duplicate"  # this very report was recorded before
    UNATTRIBUTED = "unattributed"  # names no delivery (or only forged ones)
    IGNORED = "ignored"  # auto-reply or not understood
    UNVERIFIED = "unverified"  # a complaint from no trusted source: recorded, nothing changed


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    kind: Kind
    delivery_id: int | None = None
    supporter_id: int | None = None
    supporter_status: str = ""  # after the decision
    attributed_by: str = ""  # "verp", "message-id" or "unsubscribe-token"
    events: tuple[str, ...] = ()  # actions of the events recorded


def apply(
    db: Database,
    finding: Finding,
    *,
    signer: TokenSigner,
    settings: InboundSettings,
    now: datetime | None = None,
    actor: str = "inbound",
) -> Decision:
    """Record what ``finding`` means, in one transaction; returns what was decided."""
    with db.session() as session:
        decision = _Applier(session, finding, settings, now or utcnow(), actor).run(signer)
    log.info(
        "inbound %s: %s",
        finding.kind,
        decision.outcome,
        extra={
            "event": "inbound.decision",
            "outcome": str(decision.outcome),
            "delivery": decision.delivery_id,
            "supporter": decision.supporter_id,
            "status": finding.status,
        },
    )
    return decision


def trusted_complaint(finding: Finding, via: str, senders: Sequence[str]) -> bool:
    """Whether a complaint may mark the supporter ``complained``.

    A Message-ID or an unsubscribe link is in every copy of an alert a supporter
    forwards, so anyone could write a "complaint" naming it. Trusted are: a report
    attributed by the signed VERP token (sent to, or naming, the delivery's own return
    path), and a report from a domain in ``inbound.complaint_senders`` (the mailbox
    providers whose feedback loops the organization signed up to; their From is
    trusted as far as the mail server in front of the listener checks SPF/DMARC).
    """
    if via == "verp":
        return True
    domain = parseaddr(finding.sender)[1].rpartition("@")[2].lower().rstrip(".")
    return bool(domain) and any(
        domain == d.lower() or domain.endswith("." + d.lower()) for d in senders
    )


def delivery_id_in(message_id: str) -> int | None:
    """The delivery id in one of our Message-IDs, ``<blast.delivery.random@domain>``."""
    m = _OUR_MESSAGE_ID.match(message_id.strip())
    if m is None or int(m.group(1)) > _MAX_ID:
        return None
    return int(m.group(1))


def resolve(
    session: Session, finding: Finding, signer: TokenSigner
) -> tuple[Delivery | None, str, int]:
    """(delivery, how it was found, tokens that failed to verify)."""
    rejected = 0
    for token in finding.verp_tokens:
        try:
            delivery = session.get(Delivery, signer.read_bounce(token))
        except TokenError:
            rejected += 1
            continue
        if delivery is not None:
            return delivery, "verp", rejected
    delivery_id = delivery_id_in(finding.original_message_id)
    if delivery_id is not None:
        delivery = session.get(Delivery, delivery_id)
        if delivery is not None and delivery.message_id.lower() == (
            finding.original_message_id.lower()
        ):
            return delivery, "message-id", rejected
    for token in finding.unsubscribe_tokens:
        try:
            delivery = session.get(Delivery, signer.read_unsubscribe(token).delivery_id)
        except TokenError:
            rejected += 1
            continue
        if delivery is not None:
            return delivery, "unsubscribe-token", rejected
    return None, "", rejected


class _Applier:
    """One finding applied within one session."""

    def __init__(
        self,
        session: Session,
        finding: Finding,
        settings: InboundSettings,
        now: datetime,
        actor: str,
    ) -> None:
        self.session = session
        self.finding = finding
        self.settings = settings
        self.now = now
        self.actor = actor
        self.events: list[str] = []
        self.detail: dict[str, Any] = {
            "inbound": finding.fingerprint,
            "evidence": finding.evidence(),
        }

    def run(self, signer: TokenSigner) -> Decision:
        delivery, via, rejected = resolve(self.session, self.finding, signer)
        if via:
            self.detail["attributed_by"] = via
        if rejected:
            self.detail["rejected_tokens"] = rejected
        kind = self.finding.kind
        if kind in (Kind.AUTO_REPLY, Kind.UNKNOWN):
            self.record(IGNORED, delivery)
            return self.decide(Outcome.IGNORED, delivery, None, via)
        if delivery is None:
            self.record(UNATTRIBUTED, None)
            return self.decide(Outcome.UNATTRIBUTED, None, None, via)
        if delivery.state is DeliveryState.SENDING and kind is not Kind.UNSUBSCRIBE:
            assert delivery.id is not None
            raise ReportTooEarly(delivery.id)
        supporter = self.session.exec(
            select(Supporter).where(Supporter.id == delivery.supporter_id).with_for_update()
        ).one()
        if kind is Kind.UNSUBSCRIBE:
            outcome = self.unsubscribe(delivery, supporter)
        elif self.seen(delivery):
            self.record(DUPLICATE, delivery)
            outcome = Outcome.DUPLICATE
        elif kind is Kind.COMPLAINT and not trusted_complaint(
            self.finding, via, self.settings.complaint_senders
        ):
            self.record(COMPLAINT_UNVERIFIED, delivery)
            outcome = Outcome.UNVERIFIED
        elif kind is Kind.COMPLAINT:
            outcome = self.complaint(delivery, supporter)
        elif kind is Kind.HARD_BOUNCE:
            outcome = self.hard_bounce(delivery, supporter)
        elif kind is Kind.BLOCKED:
            outcome = self.blocked(delivery, supporter)
        else:
            outcome = self.soft_bounce(delivery, supporter)
        return self.decide(outcome, delivery, supporter, via)

    def decide(
        self, outcome: Outcome, delivery: Delivery | None, supporter: Supporter | None, via: str
    ) -> Decision:
        return Decision(
            outcome=outcome,
            kind=self.finding.kind,
            delivery_id=delivery.id if delivery else None,
            supporter_id=delivery.supporter_id if delivery else None,
            supporter_status=str(supporter.status) if supporter else "",
            attributed_by=via,
            events=tuple(self.events),
        )

    def record(self, action: str, delivery: Delivery | None, **extra: Any) -> None:
        audit(
            self.session,
            action,
            actor=self.actor,
            now=self.now,
            blast_id=delivery.blast_id if delivery else None,
            supporter_id=delivery.supporter_id if delivery else None,
            delivery_id=delivery.id if delivery else None,
            detail={**self.detail, **extra},
        )
        self.events.append(action)

    def seen(self, delivery: Delivery) -> bool:
        """Whether this report was recorded for ``delivery`` already."""
        rows = self.session.exec(
            select(Event.delivery_id, Event.detail).where(
                Event.supporter_id == delivery.supporter_id,
                col(Event.action).in_(REPORT_ACTIONS),
            )
        ).all()
        return any(
            delivery_id == delivery.id and detail.get("inbound") == self.finding.fingerprint
            for delivery_id, detail in rows
        )

    def raise_status(
        self, delivery: Delivery, supporter: Supporter, status: SupporterStatus, **why: Any
    ) -> None:
        """Move ``supporter`` to ``status`` if that is stronger, with its event."""
        previous = supporter.status
        if STRENGTH[status] <= STRENGTH[previous]:
            return
        supporter.status = status
        supporter.status_changed_at = self.now
        supporter.updated_at = self.now
        self.session.add(supporter)
        self.record(f"supporter.{status}", delivery, previous=str(previous), **why)

    def bounce_delivery(self, delivery: Delivery) -> None:
        previous = delivery.state
        changed = previous in _BOUNCEABLE
        extra: dict[str, Any] = {"previous_state": str(previous), "state_changed": changed}
        if changed:
            extra["previous_reply"] = f"{delivery.reply_code or ''} {delivery.reply_text}".strip()
            finding = self.finding
            delivery.state = DeliveryState.BOUNCED
            delivery.reply_code = finding.reply_code
            delivery.reply_text = finding.diagnostic or (
                f"{finding.status or finding.action} reported by {finding.reporter or 'a DSN'}"
            )
            delivery.updated_at = self.now
            self.session.add(delivery)
        self.record(DELIVERY_BOUNCED, delivery, **extra)

    def hard_bounce(self, delivery: Delivery, supporter: Supporter) -> Outcome:
        self.bounce_delivery(delivery)
        self.raise_status(delivery, supporter, SupporterStatus.BOUNCED, reason="hard bounce")
        return Outcome.BOUNCED

    def blocked(self, delivery: Delivery, supporter: Supporter) -> Outcome:
        """The message or our sender was refused: the delivery did not arrive, the
        supporter's address is not in question, so their status never changes."""
        if self.finding.action != "delayed":
            self.bounce_delivery(delivery)
        domain = supporter.email.rpartition("@")[2].lower()
        self.record(DELIVERY_BLOCKED, delivery, domain=domain)
        return Outcome.BLOCKED

    def soft_bounce(self, delivery: Delivery, supporter: Supporter) -> Outcome:
        limit = self.settings.soft_bounce_limit
        window = self.settings.soft_bounce_window_days
        min_blasts = self.settings.soft_bounce_min_blasts
        since = self.now - timedelta(days=window)
        undone = self.session.exec(
            select(func.max(Event.at)).where(
                Event.supporter_id == delivery.supporter_id, Event.action == BOUNCE_UNDONE
            )
        ).one()
        if undone is not None and undone > since:
            since = undone  # an undo starts the count afresh (recorded, never silent)
        rows = self.session.exec(
            select(Event.delivery_id, Event.blast_id, Event.detail).where(
                Event.supporter_id == delivery.supporter_id,
                Event.action == SOFT_BOUNCE,
                col(Event.at) >= since,
            )
        ).all()
        # One step per delivery per day (as Mailman's bounce score counts a day once).
        today = self.now.date().isoformat()
        counted_before = {
            (d, str(detail.get("day", ""))): b for d, b, detail in rows if detail.get("counted")
        }
        counted = (delivery.id, today) not in counted_before
        steps = {**counted_before, (delivery.id, today): delivery.blast_id}
        count = len(steps)
        blasts = len(set(steps.values()))
        if self.finding.action != "delayed":
            self.bounce_delivery(delivery)
        reached = limit > 0 and count >= limit and blasts >= min_blasts
        self.record(
            SOFT_BOUNCE,
            delivery,
            counted=counted,
            day=today,
            count=count,
            blasts=blasts,
            limit=limit,
            min_blasts=min_blasts,
            window_days=window,
            reached=reached,
        )
        if reached:
            self.raise_status(
                delivery,
                supporter,
                SupporterStatus.BOUNCED,
                reason="soft bounce limit",
                count=count,
                blasts=blasts,
                limit=limit,
                window_days=window,
            )
        return Outcome.SOFT_BOUNCE

    def complaint(self, delivery: Delivery, supporter: Supporter) -> Outcome:
        self.record(DELIVERY_COMPLAINED, delivery)
        self.raise_status(delivery, supporter, SupporterStatus.COMPLAINED, reason="complaint")
        return Outcome.COMPLAINED

    def unsubscribe(self, delivery: Delivery, supporter: Supporter) -> Outcome:
        if STRENGTH[supporter.status] > STRENGTH[SupporterStatus.UNSUBSCRIBED]:
            self.record(NO_CHANGE, delivery, status=str(supporter.status), request="unsubscribe")
            return Outcome.NO_CHANGE
        if not unsubscribe_delivery(self.session, delivery, via="mailto", now=self.now):
            self.record(NO_CHANGE, delivery, status=str(supporter.status), request="unsubscribe")
            return Outcome.NO_CHANGE
        self.events.append("supporter.unsubscribed")
        return Outcome.UNSUBSCRIBED

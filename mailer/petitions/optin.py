"""Double opt-in: a public form's "keep me informed" is confirmed by the address's owner.

Anyone can type anyone's address into the public petition form, so ticking
the box never makes anyone an active supporter by itself:

- A new address becomes a **pending** supporter on the petition's opt-in
  list (:attr:`SupporterStatus.PENDING`: blasts never go to them) and gets a
  confirmation message with a signed link (``/confirm/<token>``, purpose
  ``confirm``, naming the supporter and the petition).
- Opening the link shows a button; pressing it (a POST, so link scanners that
  fetch every link confirm nothing) makes the supporter active.
- Unconfirmed supporters are removed after ``petitions.opt_in_expiry_hours``
  (:func:`expire`, run whenever an opt-in is requested or confirmed); their
  signatures stay, without the supporter.
- An existing supporter's status is never changed by the form: they are
  added to the opt-in list as they are (an unsubscribed person stays
  unsubscribed) and get no message. An address on the suppression list is
  left alone.
- A pending address is sent at most one confirmation per
  :data:`RESEND_AFTER`, so the form cannot be used to flood a mailbox.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from mailer.compose.alert import OutgoingMessage
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.lifecycle import audit
from mailer.petitions.signing import Signer, place_of
from mailer.send.outcome import Verdict
from mailer.send.transport import SmtpTransport
from mailer.store import Event, MailingList, Membership, Supporter, SupporterStatus
from mailer.store.models import Petition, Signature, Suppression

log = logging.getLogger(__name__)

RESEND_AFTER = timedelta(hours=1)
ACTOR = "web:signer"

State = Literal["pending", "confirmed", "already", "expired"]


@dataclass(frozen=True)
class Confirmation:
    """A confirmation message to send: to whom, in which language, for which petition."""

    supporter_id: int
    email: str
    first_name: str
    language: str
    petition_id: int
    petition_name: str


def expire(session: Session, *, now: datetime, expiry: timedelta) -> int:
    """Remove pending supporters older than ``expiry``; return how many."""
    ids = list(
        session.exec(
            select(Supporter.id).where(
                Supporter.status == SupporterStatus.PENDING,
                col(Supporter.status_changed_at) <= now - expiry,
            )
        )
    )
    if not ids:
        return 0
    session.execute(delete(Membership).where(col(Membership.supporter_id).in_(ids)))
    session.execute(
        update(Signature).where(col(Signature.supporter_id).in_(ids)).values(supporter_id=None)
    )
    session.execute(update(Event).where(col(Event.supporter_id).in_(ids)).values(supporter_id=None))
    session.execute(delete(Supporter).where(col(Supporter.id).in_(ids)))
    audit(session, "supporter.opt_ins_expired", actor="system", now=now, detail={"count": len(ids)})
    return len(ids)


def _opt_in_list(session: Session, petition: Petition, now: datetime) -> int:
    listed = session.exec(
        select(MailingList).where(MailingList.name == petition.opt_in_list)
    ).first()
    if listed is None:
        listed = MailingList(name=petition.opt_in_list, created_at=now)
        session.add(listed)
        session.flush()
    assert listed.id is not None
    return listed.id


def request_opt_in(
    session: Session,
    petition: Petition,
    signer: Signer,
    *,
    language: str,
    now: datetime,
    expiry: timedelta,
) -> tuple[int | None, Confirmation | None]:
    """Record a public opt-in: (the supporter's id or None, the confirmation to send or None)."""
    assert petition.id is not None
    expire(session, now=now, expiry=expiry)
    if session.exec(select(Suppression).where(Suppression.email == signer.email)).first():
        return None, None
    supporter = session.exec(select(Supporter).where(Supporter.email == signer.email)).first()
    created = supporter is None
    send = created
    if supporter is None:
        _, region = place_of(signer.zip)
        supporter = Supporter(
            email=signer.email,
            first_name=signer.first_name,
            last_name=signer.last_name,
            zip=signer.zip,
            region=region,
            language=language,
            status=SupporterStatus.PENDING,
            status_changed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(supporter)
        session.flush()
    elif supporter.status == SupporterStatus.PENDING:
        changed = supporter.status_changed_at
        if changed is None or changed <= now - RESEND_AFTER:
            supporter.status_changed_at = now  # a new link, and a new expiry
            session.add(supporter)
            send = True
    assert supporter.id is not None
    list_id = _opt_in_list(session, petition, now)
    if session.get(Membership, (list_id, supporter.id)) is None:
        session.add(Membership(list_id=list_id, supporter_id=supporter.id, added_at=now))
    audit(
        session,
        "petition.opt_in_requested"
        if supporter.status == SupporterStatus.PENDING
        else "petition.opted_in",
        actor=ACTOR,
        now=now,
        supporter_id=supporter.id,
        detail={"petition": petition.id, "new_supporter": created, "list": petition.opt_in_list},
    )
    if not send:
        return supporter.id, None
    return supporter.id, Confirmation(
        supporter_id=supporter.id,
        email=supporter.email,
        first_name=supporter.first_name,
        language=language,
        petition_id=petition.id,
        petition_name=petition.name,
    )


def state_of(session: Session, supporter_id: int, *, now: datetime, expiry: timedelta) -> State:
    """Where a confirmation link stands, without changing anything."""
    supporter = session.get(Supporter, supporter_id)
    if supporter is None:
        return "expired"  # the token was signed for them: they were removed
    if supporter.status != SupporterStatus.PENDING:
        return "already"
    changed = supporter.status_changed_at
    if changed is not None and changed <= now - expiry:
        return "expired"
    return "pending"


def confirm(session: Session, supporter_id: int, *, now: datetime, expiry: timedelta) -> State:
    """Confirm a pending supporter: "confirmed", or why not ("already", "expired")."""
    state = state_of(session, supporter_id, now=now, expiry=expiry)
    if state == "expired":
        expire(session, now=now, expiry=expiry)
    if state != "pending":
        return state
    supporter = session.get(Supporter, supporter_id)
    assert supporter is not None
    supporter.status = SupporterStatus.ACTIVE
    supporter.status_changed_at = now
    supporter.updated_at = now
    session.add(supporter)
    audit(session, "supporter.confirmed", actor=ACTOR, now=now, supporter_id=supporter_id)
    return "confirmed"


_WORDS = {
    "en": (
        "Please confirm: alerts from {org}",
        "Hello{name},\n\n"
        'Someone, we hope you, signed "{petition}" with this address and asked to '
        "receive future alerts from {org}. To confirm, open this link and press "
        "the button:\n\n{url}\n\n"
        "If it was not you, ignore this message: nothing more will be sent to you, "
        "and the request is deleted after {hours} hours.\n\n{org}\n{postal}\n",
    ),
    "es": (
        "Confirma: alertas de {org}",
        "Hola{name}:\n\n"
        'Alguien, esperamos que tú, firmó "{petition}" con esta dirección y pidió '
        "recibir futuras alertas de {org}. Para confirmarlo, abre este enlace y "
        "pulsa el botón:\n\n{url}\n\n"
        "Si no fuiste tú, ignora este mensaje: no te enviaremos nada más, y la "
        "solicitud se borra después de {hours} horas.\n\n{org}\n{postal}\n",
    ),
}


class ConfirmationMailer:
    """Builds and sends confirmation messages through the configured SMTP relay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = TokenSigner(settings.security.secret_key)
        self.expiry = timedelta(hours=settings.petitions.opt_in_expiry_hours)

    def url(self, confirmation: Confirmation) -> str:
        token = self.signer.confirm(confirmation.supporter_id, confirmation.petition_id)
        return f"{self.settings.web.base_url.rstrip('/')}/confirm/{token}"

    def message(self, confirmation: Confirmation, *, now: datetime) -> OutgoingMessage:
        s = self.settings
        subject, body = _WORDS.get(confirmation.language, _WORDS["en"])
        org = s.organization.name or s.sender.name or s.sender.address
        name = f" {confirmation.first_name}" if confirmation.first_name else ""
        msg = EmailMessage()
        msg["From"] = Address(s.sender.name, addr_spec=s.sender.address)
        msg["To"] = Address(addr_spec=confirmation.email)
        msg["Subject"] = subject.format(org=org)
        msg["Date"] = format_datetime(now)
        domain = s.sender.address.rpartition("@")[2] or "localhost"
        message_id = make_msgid(domain=domain)
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(
            body.format(
                name=name,
                petition=confirmation.petition_name,
                org=org,
                url=self.url(confirmation),
                hours=s.petitions.opt_in_expiry_hours,
                postal=s.organization.postal_address,
            )
        )
        return OutgoingMessage(
            delivery_id=0,
            envelope_sender=s.sender.address,
            recipient=confirmation.email,
            message_id=message_id,
            data=msg.as_bytes(),
        )

    def send(self, confirmation: Confirmation, *, now: datetime) -> bool:
        """Send one confirmation; False (logged) when the relay did not take it.

        Runs its own event loop: call it from a worker thread, not the web's loop.
        """
        message = self.message(confirmation, now=now)

        async def deliver() -> bool:
            transport = SmtpTransport(self.settings.smtp, connect_attempts=1)
            try:
                outcome = await transport.deliver(message)
            finally:
                await transport.close()
            return outcome.verdict == Verdict.SENT

        try:
            ok = asyncio.run(deliver())
        except Exception:  # the form has been answered; the opt-in simply expires
            log.exception("opt-in confirmation not sent", extra={"event": "optin.send_failed"})
            return False
        if not ok:
            log.warning("opt-in confirmation refused", extra={"event": "optin.send_failed"})
        return ok

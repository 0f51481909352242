"""Blasts as organizers see them: create, look up, and what they are sent with.

The CLI and the web app both call these functions; neither builds a blast
or a composer on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from mailer.compose.alert import AlertComposer
from mailer.compose.dkim import DkimSigner
from mailer.compose.message import Identity, domain_of, list_id_header
from mailer.compose.templates import AlertTemplate, check_template
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.errors import ConfigError, InvalidState, NotFound
from mailer.send.engine import BlastSender, Progress, SendResult
from mailer.send.transport import SmtpTransport
from mailer.store import Blast, BlastList, Database, Event, MailingList
from mailer.store.links import BlastLinks
from mailer.store.models import utcnow


def find_blast(session: Session, ref: str | int) -> Blast:
    """The blast with id ``ref`` (digits) or name ``ref``."""
    text = str(ref).strip()
    blast = None
    if text.isdigit():
        blast = session.get(Blast, int(text))
    if blast is None:
        blast = session.exec(select(Blast).where(Blast.name == text)).first()
    if blast is None:
        raise NotFound(f"no blast {text!r} (give its id or name; `mailer blast list` shows them)")
    return blast


def blast_lists(session: Session, blast_id: int) -> list[MailingList]:
    return list(
        session.exec(
            select(MailingList)
            .join(BlastList, col(BlastList.list_id) == MailingList.id)
            .where(BlastList.blast_id == blast_id)
            .order_by(MailingList.name)
        )
    )


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidState(f"{what} must be an http(s) URL, got {url!r}")
    return url


def create_blast(
    db: Database,
    settings: Settings,
    *,
    name: str,
    template: str,
    list_names: list[str],
    cta_url: str | None = None,
    segment: dict[str, Any] | None = None,
    actor: str = "cli",
    now: Callable[[], datetime] = utcnow,
) -> Blast:
    """Create a draft blast after checking its template renders in every language."""
    name = name.strip()
    if not name:
        raise InvalidState("a blast needs a name")
    check_template(AlertTemplate(settings.templates_path(), template))
    cta = check_url(cta_url or settings.blast.default_cta_url, "the call-to-action URL")
    with db.session() as session:
        if session.exec(select(Blast).where(Blast.name == name)).first() is not None:
            raise InvalidState(f"a blast named {name!r} exists already; choose another name")
        lists = []
        for list_name in list_names:
            found = session.exec(select(MailingList).where(MailingList.name == list_name)).first()
            if found is None:
                raise NotFound(
                    f"no list {list_name!r}; import supporters into it first "
                    f"(`mailer import FILE --list {list_name}`)"
                )
            lists.append(found)
        if not lists:
            raise InvalidState("a blast needs at least one list")
        blast = Blast(
            name=name,
            template=template,
            cta_url=cta,
            sender_name=settings.sender.name,
            sender_address=settings.sender.address,
            segment=segment,
            created_at=now(),
        )
        session.add(blast)
        session.flush()
        assert blast.id is not None
        for mailing_list in lists:
            assert mailing_list.id is not None
            session.add(BlastList(blast_id=blast.id, list_id=mailing_list.id))
        session.add(
            Event(
                at=now(),
                actor=actor,
                action="blast.created",
                blast_id=blast.id,
                detail={
                    "segment": segment,
                    "template": template,
                    "lists": [lst.name for lst in lists],
                    "cta_url": cta,
                },
            )
        )
    return blast


def identity_for(settings: Settings, blast: Blast, list_names: list[str]) -> Identity:
    address = blast.sender_address or settings.sender.address
    domain = domain_of(address)
    return Identity(
        from_name=blast.sender_name or settings.sender.name,
        from_address=address,
        reply_to=settings.sender.reply_to,
        return_path=settings.sender.return_path,
        verp=settings.sender.verp,
        list_id=list_id_header(
            "-".join(list_names) or "alerts", settings.organization.name, domain
        ),
        unsubscribe_mailto=settings.blast.list_unsubscribe_mailto or f"unsubscribe@{domain}",
    )


def send_now(
    db: Database,
    settings: Settings,
    ref: str | int,
    *,
    progress: Progress | None = None,
    actor: str = "cli",
    handle_signals: bool = False,
) -> SendResult:
    """Send blast ``ref`` through the configured relay, in this process, until it is done.

    Deferred deliveries are waited for and retried when due; a pause or cancel
    from elsewhere, SIGTERM/Ctrl-C (with ``handle_signals``) or a down relay ends
    the run early with the blast resumable.
    """
    with db.session() as session:
        blast = find_blast(session, ref)
    composer = composer_for(db, settings, blast)
    sender = make_sender(db, settings)
    assert blast.id is not None
    return asyncio.run(
        sender.send(blast.id, composer, progress, actor=actor, handle_signals=handle_signals)
    )


def make_sender(db: Database, settings: Settings) -> BlastSender:
    """A sender with one SMTP transport per configured connection."""
    sending = settings.sending

    def transport() -> SmtpTransport:
        return SmtpTransport(settings.smtp, connect_attempts=sending.connect_attempts)

    return BlastSender(db, transport, sending=sending)


SEND_KEYS = (
    "sender.address",
    "organization.postal_address",
    "web.base_url",
    "security.secret_key",
)


def composer_for(
    db: Database,
    settings: Settings,
    blast: Blast,
    *,
    templates_dir: Path | None = None,
    now: Callable[[], datetime] = utcnow,
) -> AlertComposer:
    """The composer of ``blast``'s messages, with everything shared prepared once."""
    settings.require(*SEND_KEYS)
    assert blast.id is not None
    with db.session() as session:
        names = [lst.name for lst in blast_lists(session, blast.id)]
    return AlertComposer(
        template=AlertTemplate(templates_dir or settings.templates_path(), blast.template),
        blast_id=blast.id,
        blast_name=blast.name,
        cta_url=blast.cta_url,
        identity=identity_for(settings, blast, names),
        organization_name=settings.organization.name,
        postal_address=settings.organization.postal_address,
        base_url=settings.web.base_url,
        signer=TokenSigner(settings.security.secret_key),
        link_ids=BlastLinks(db, blast.id, blast.cta_url),
        clock=now,
        dkim=dkim_signer(settings, address=blast.sender_address or settings.sender.address),
    )


def dkim_signer(settings: Settings, *, address: str) -> DkimSigner | None:
    """The DKIM signer the settings ask for, or None when [dkim] is not configured."""
    cfg = settings.dkim
    if not cfg.private_key_file:
        return None
    if not cfg.selector:
        raise ConfigError("dkim.selector", "is required when dkim.private_key_file is set")
    return DkimSigner.from_file(
        domain=cfg.domain or domain_of(address),
        selector=cfg.selector,
        key_file=Path(cfg.private_key_file),
    )

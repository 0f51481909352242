"""The composition root: what a blast is sent with, built from the settings.

A sender (:class:`~mailer.send.engine.BlastSender` with its SMTP transports),
a blast's composer (template, identity, token signer, link ids, DKIM signer)
and the identity its messages go out under. The CLI, the service, the helper
sender processes, the pre-flight check and the web admin all build them here,
so every way of sending a blast sends the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mailer.alerts.resolve import template_of_blast
from mailer.compose.alert import AlertComposer, LinkIds
from mailer.compose.dkim import DkimSigner
from mailer.compose.message import Identity, domain_of, list_id_header
from mailer.compose.templates import AlertTemplate
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.send.engine import BlastSender
from mailer.send.transport import SmtpTransport
from mailer.store import Blast, Database, blast_lists
from mailer.store.links import BlastLinks
from mailer.store.models import utcnow

# The settings without which no message can be sent.
SEND_KEYS = (
    "sender.address",
    "organization.postal_address",
    "web.base_url",
    "security.secret_key",
)


def make_sender(db: Database, settings: Settings) -> BlastSender:
    """A sender with one SMTP transport per configured connection."""
    sending = settings.sending

    def transport() -> SmtpTransport:
        return SmtpTransport(settings.smtp, connect_attempts=sending.connect_attempts)

    return BlastSender(db, transport, sending=sending)


def identity_for(settings: Settings, blast: Blast, list_names: list[str]) -> Identity:
    """Who ``blast``'s messages come from, and the list headers they carry."""
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
    composer = composer_for_revision(
        settings,
        template_of_blast(db, settings, blast, templates_dir),
        blast,
        list_names=names,
        link_ids=BlastLinks(db, blast.id, blast.cta_url),
        now=now,
        opens=settings.tracking.opens,
    )
    composer.register_links()
    return composer


def composer_for_revision(
    settings: Settings,
    template: AlertTemplate,
    blast: Blast,
    *,
    list_names: list[str],
    link_ids: LinkIds,
    now: Callable[[], datetime] = utcnow,
    opens: bool = False,
) -> AlertComposer:
    """A composer of ``template`` (a pinned revision, or a folder) sent as ``blast``.

    What :func:`composer_for` builds for a blast, and the studio's test of an
    alert that is not yet a blast (an unsaved ``Blast``, id 0, with link ids
    that track nothing) builds for itself: the same identity, footer, token
    signer and DKIM signer, so a test is the message a blast would send.
    """
    settings.require(*SEND_KEYS)
    return AlertComposer(
        template=template,
        blast_id=blast.id or 0,
        blast_name=blast.name,
        cta_url=blast.cta_url,
        identity=identity_for(settings, blast, list_names),
        organization_name=settings.organization.name,
        postal_address=settings.organization.postal_address,
        base_url=settings.web.base_url,
        signer=TokenSigner(settings.security.secret_key),
        link_ids=link_ids,
        clock=now,
        dkim=dkim_signer(settings, address=blast.sender_address or settings.sender.address),
        opens=opens,
    )


def dkim_signer(settings: Settings, *, address: str) -> DkimSigner | None:
    """The DKIM signer the settings ask for, or None when [dkim] is not configured."""
    cfg = settings.dkim
    if not cfg.private_key_file:
        return None
    if not cfg.selector:
        raise ConfigError("dkim.selector", "is required when dkim.private_key_file is set")
    domain = cfg.domain or domain_of(address)
    signer = DkimSigner.from_file(
        domain=domain, selector=cfg.selector, key_file=Path(cfg.private_key_file)
    )
    if not cfg.second_private_key_file:
        return signer
    if not cfg.second_selector or cfg.second_selector == cfg.selector:
        raise ConfigError(
            "dkim.second_selector",
            "is required with dkim.second_private_key_file, and must differ from dkim.selector"
            " (each key is published under its own selector)",
        )
    second = DkimSigner.from_file(
        domain=domain,
        selector=cfg.second_selector,
        key_file=Path(cfg.second_private_key_file),
        setting="dkim.second_private_key_file",
    )
    return signer.with_second(second)

"""Blasts as organizers see them: create, follow up, test-send, send now.

The CLI and the web app both call these functions; neither builds a blast
on its own. Look-ups are in :mod:`mailer.store.lookup`, what a blast is sent
with (sender, composer) in :mod:`mailer.assemble`, and its status changes in
:mod:`mailer.lifecycle`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from mailer import testsend
from mailer.alerts.resolve import template_named
from mailer.assemble import composer_for, make_sender
from mailer.compose.alert import TEST_DELIVERY, OutgoingMessage, Recipient
from mailer.compose.templates import check_template
from mailer.config import Settings
from mailer.errors import ConfigError, InvalidState, NotFound
from mailer.lifecycle import audit, transition
from mailer.send.engine import Progress, SendResult, delivery_counts
from mailer.send.outcome import Outcome
from mailer.send.processes import SenderProcesses, for_processes, in_memory, processes_for
from mailer.store import (
    Blast,
    BlastList,
    BlastStatus,
    Database,
    MailingList,
    Supporter,
    blast_lists,
    find_blast,
)
from mailer.store.models import Petition, utcnow

FOLLOW_UP_AUDIENCES = ("no-click", "no-action")  # did not click / did not sign the petition


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
    follow_up: tuple[Blast, timedelta] | None = None,
    petition: str | None = None,
    follow_up_audience: str = "no-click",
) -> Blast:
    """Create a draft blast after checking its template renders in every language.

    With ``follow_up`` (original, delay) the blast is a follow-up: scheduled
    ``delay`` after the original finishes, to those of its recipients who did
    not click, or with ``follow_up_audience="no-action"`` who did not sign the
    original's petition (see :func:`mailer.send.audience.snapshot_audience`).

    With ``petition`` (name or slug) the blast is linked to it: its call to
    action (by default the petition's target) leads each recipient, through
    the tracked click, to their own action page ``/a/<token>``.
    """
    name = name.strip()
    if not name:
        raise InvalidState("a blast needs a name")
    # A stored alert wins over a template folder of the same name (mailer.alerts.resolve).
    resolved, revision_id = template_named(db, settings, template)
    check_template(resolved)
    if follow_up_audience not in FOLLOW_UP_AUDIENCES:
        raise InvalidState(
            f"follow-up audience {follow_up_audience!r} is not one of "
            + ", ".join(FOLLOW_UP_AUDIENCES)
        )
    with db.session() as session:
        linked = None
        if petition is not None:
            linked = session.exec(
                select(Petition).where(
                    (col(Petition.name) == petition.strip())
                    | (col(Petition.slug) == petition.strip())
                )
            ).first()
            if linked is None:
                raise NotFound(
                    f"no petition {petition!r}; create it first "
                    f"(`mailer petition create {petition} --goal N`)"
                )
    default_cta = linked.target_url if linked is not None else settings.blast.default_cta_url
    cta = check_url(cta_url or default_cta, "the call-to-action URL")
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
            petition_id=linked.id if linked is not None else None,
            alert_revision_id=revision_id,
        )
        if follow_up is not None:
            original, delay = follow_up
            blast.follow_up_of = original.id
            blast.follow_up_after = int(delay.total_seconds())
            blast.follow_up_audience = follow_up_audience
            if original.finished_at is not None:
                blast.scheduled_at = max(original.finished_at + delay, now())
        session.add(blast)
        session.flush()
        assert blast.id is not None
        for mailing_list in lists:
            assert mailing_list.id is not None
            session.add(BlastList(blast_id=blast.id, list_id=mailing_list.id))
        audit(
            session,
            "blast.created",
            actor=actor,
            now=now(),
            blast_id=blast.id,
            detail={
                "segment": segment,
                "template": template,
                "lists": [lst.name for lst in lists],
                "cta_url": cta,
                "petition": linked.name if linked is not None else None,
                "alert_revision_id": revision_id,
            },
        )
        if follow_up is not None:
            # A follow-up waits scheduled, with a time once its original has finished.
            transition(
                session,
                blast,
                BlastStatus.SCHEDULED,
                action="blast.scheduled",
                actor=actor,
                now=now(),
                detail={
                    "at": blast.scheduled_at.isoformat() if blast.scheduled_at else None,
                    "follow_up_of": follow_up[0].id,
                    "after_seconds": blast.follow_up_after,
                },
            )
    # Registers the template's links; without the settings for sending, that waits
    # for the blast's check, preview or start.
    with contextlib.suppress(ConfigError):
        composer_for(db, settings, blast)
    return blast


def create_follow_up(
    db: Database,
    settings: Settings,
    original_ref: str | int,
    *,
    after: timedelta,
    template: str | None = None,
    name: str | None = None,
    actor: str = "cli",
    audience: str = "no-click",
) -> Blast:
    """A follow-up of ``original_ref`` to those who got it and did not click
    (``audience="no-click"``) or did not sign its petition (``"no-action"``)."""
    with db.session() as session:
        original = find_blast(session, original_ref)
        assert original.id is not None
        lists = [lst.name for lst in blast_lists(session, original.id)]
        petition = session.get(Petition, original.petition_id) if original.petition_id else None
    if original.status in (BlastStatus.CANCELLED, BlastStatus.MISSED):
        raise InvalidState(f"blast {original.name!r} is {original.status}; nothing to follow up")
    if audience == "no-action" and petition is None:
        raise InvalidState(
            f"blast {original.name!r} is not linked to a petition, so nobody can act on it; "
            "follow up those who did not click instead"
        )
    return create_blast(
        db,
        settings,
        name=name or f"{original.name} (follow-up)",
        template=template or original.template,
        list_names=lists,
        cta_url=original.cta_url,
        segment=original.segment,
        actor=actor,
        follow_up=(original, after),
        petition=petition.name if petition is not None else None,
        follow_up_audience=audience,
    )


def send_test(
    db: Database, settings: Settings, ref: str | int, addresses: list[str], *, actor: str = "cli"
) -> list[tuple[str, Outcome]]:
    """Send ``ref``'s alert to seed ``addresses``, marked as a test.

    The blast's deliveries and figures are not touched. A seed address that is
    a supporter gets their personal version; any other gets the fallbacks. At
    most ``blast.test_send_limit`` addresses a call (the same address twice is
    one); an address that is suppressed or whose supporter is not active gets
    nothing and is answered as not sent, with the reason.
    """
    to = testsend.seeds(db, settings, addresses)
    with db.session() as session:
        blast = find_blast(session, ref)
    composer = composer_for(db, settings, blast)

    def message_for(address: str, known: Supporter | None) -> OutgoingMessage:
        recipient = Recipient.of(known) if known else Recipient(email=address)
        return composer.compose(TEST_DELIVERY, recipient, test=True).message

    results = testsend.deliver(settings, to.messages(message_for))
    with db.session() as session:
        audit(
            session,
            "blast.test_sent",
            actor=actor,
            now=utcnow(),
            blast_id=blast.id,
            detail={"to": [f"{a}: {o.code} {o.text}" for a, o in results]},
        )
    return results


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
    configured = settings.sending.processes
    if configured < 0:
        raise ConfigError(
            "sending.processes", f"must be 0 (one per core) or more, got {configured}"
        )
    if configured > 1 and in_memory(db):
        raise ConfigError("sending.processes", "more than 1 needs a database file or server")
    with db.session() as session:
        blast = find_blast(session, ref)
    processes = processes_for(db, configured, blast)
    settings = for_processes(settings, processes)
    assert blast.id is not None
    if processes == 1:
        composer = composer_for(db, settings, blast)
        sender = make_sender(db, settings)
        return asyncio.run(
            sender.send(blast.id, composer, progress, actor=actor, handle_signals=handle_signals)
        )
    # The helpers start first: their start-up overlaps this process's composer and snapshot.
    helpers = SenderProcesses(
        db.engine.url.render_as_string(hide_password=False),
        settings,
        blast.id,
        processes - 1,
        progress,
    )
    with helpers:
        composer = composer_for(db, settings, blast)
        sender = make_sender(db, settings)
        sender.signal_listeners.append(helpers.signal)
        result = asyncio.run(
            sender.send(blast.id, composer, progress, actor=actor, handle_signals=handle_signals)
        )
    # The helpers have ended too: report the blast as it stands now.
    with db.session() as session:
        after = find_blast(session, blast.id)
    error = result.error or (after.last_error if after.status is BlastStatus.PAUSED else "")
    return SendResult(blast.id, after.status, delivery_counts(db, blast.id), error)

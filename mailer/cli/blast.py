"""`mailer blast ...`: create, send, pause, resume, cancel and list blasts."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import click
from sqlmodel import Session, col, func, select

from mailer.blasts import create_blast, create_follow_up, send_now, send_test
from mailer.check import gate
from mailer.cli import AppContext, pass_app
from mailer.cli.progress import progress_for
from mailer.schedule import planner
from mailer.schedule.planner import parse_duration
from mailer.schedule.times import parse_local, show
from mailer.send import control
from mailer.send.audience import parse_segment
from mailer.send.engine import SendResult
from mailer.send.outcome import Verdict
from mailer.store import Blast, BlastStatus, Delivery, Event, find_blast
from mailer.store.models import FINAL_DELIVERY_STATES as FINAL_STATES
from mailer.store.models import utcnow


@click.group("blast")
def blast_group() -> None:
    """Create, send, pause, resume, cancel and list alert blasts."""


@blast_group.command("create")
@click.argument("name")
@click.option(
    "--template",
    "-t",
    required=True,
    help=(
        "Alert: one stored in the database (`mailer template list`) or a folder under the "
        "templates directory; a stored one wins on a name clash."
    ),
)
@click.option(
    "--list", "-l", "lists", required=True, multiple=True, help="List to send to (repeatable)."
)
@click.option("--cta-url", default=None, help="Call-to-action URL. Default: blast.default_cta_url.")
@click.option(
    "--segment",
    "-s",
    "segment",
    multiple=True,
    metavar="KEY=VALUE",
    help="Narrow the audience: language=es, region=CA, custom.FIELD=VALUE. Repeatable; "
    "values of one key are alternatives, different keys must all match.",
)
@click.option(
    "--petition",
    default=None,
    help="Link to this petition: the call to action leads to each recipient's action page.",
)
@pass_app
def create_command(
    app: AppContext,
    name: str,
    template: str,
    lists: tuple[str, ...],
    cta_url: str | None,
    segment: tuple[str, ...],
    petition: str | None,
) -> None:
    """Create a draft blast NAME and print its id.

    The template is rendered in each of its languages first, so a template
    error is reported now rather than halfway through sending. With
    --petition, a click on the call to action (default: the petition's
    target) is recorded and then leads to the recipient's own action page.
    """
    blast = create_blast(
        app.db(),
        app.settings,
        name=name,
        template=template,
        list_names=list(lists),
        cta_url=cta_url,
        segment=parse_segment(list(segment)),
        petition=petition,
    )
    click.echo(blast.id)


def _report(result: SendResult) -> None:
    c = result.counts
    click.echo(
        f"blast {result.blast_id} {result.status}: {c['sent']} sent, {c['failed']} failed, "
        f"{c['deferred']} deferred, {c['skipped']} skipped, {c['unknown']} unknown"
    )
    if c["unknown"]:
        click.echo(
            f"{c['unknown']} in doubt: see `mailer log {result.blast_id} --state unknown`; "
            f"`mailer blast requeue-unknown {result.blast_id}` sends them again"
        )
    if result.error:
        raise click.ClickException(f"paused: {result.error}")


def _send(app: AppContext, blast: str) -> None:
    _report(
        send_now(
            app.db(),
            app.settings,
            blast,
            progress=progress_for(f"sending {blast}"),
            handle_signals=True,
        )
    )


@blast_group.command("send")
@click.argument("blast")
@click.option("--force", is_flag=True, help="Send even if `mailer check` finds errors.")
@pass_app
def send_command(app: AppContext, blast: str, force: bool) -> None:
    """Send BLAST (id or name) now, in the foreground, until it is done.

    The audience is the active members of the blast's lists (and segment) at
    this moment. Temporary failures are retried with backoff until they are
    sent or given up. Ctrl-C or SIGTERM stop it gracefully: in-flight messages
    are recorded and the blast is left paused, to go on with `blast resume`.
    Nobody gets the same blast twice. A blast that fails `mailer check` is
    refused unless --force is given.
    """
    gate(app.db(), app.settings, blast, force=force, actor="cli")
    _send(app, blast)


@blast_group.command("resume")
@click.argument("blast")
@pass_app
def resume_command(app: AppContext, blast: str) -> None:
    """Go on sending a paused or interrupted BLAST, in the foreground.

    Also after a crash: what the dead sender had in flight is marked unknown
    (never sent again silently), everything else is sent.
    """
    with app.db().session() as session:
        found = find_blast(session, blast)
        if found.status in (BlastStatus.DRAFT, BlastStatus.SCHEDULED):
            raise click.ClickException(f"blast {found.name!r} has not started; use `blast send`")
    _send(app, blast)


def _change(app: AppContext, blast: str, action: Callable[[Session, Blast, datetime], str]) -> None:
    with app.db().session() as session:
        found = find_blast(session, blast)
        click.echo(action(session, found, utcnow()))


@blast_group.command("pause")
@click.argument("blast")
@pass_app
def pause_command(app: AppContext, blast: str) -> None:
    """Pause BLAST; a running sender stops within sending.control_interval seconds."""

    def act(session: Session, found: Blast, now: datetime) -> str:
        control.pause(session, found, actor="cli", now=now)
        return f"blast {found.id} paused; `mailer blast resume {found.id}` goes on"

    _change(app, blast, act)


@blast_group.command("cancel")
@click.argument("blast")
@pass_app
def cancel_command(app: AppContext, blast: str) -> None:
    """Cancel BLAST for good: what is not sent yet is skipped."""

    def act(session: Session, found: Blast, now: datetime) -> str:
        skipped = control.cancel(session, found, actor="cli", now=now)
        return f"blast {found.id} cancelled; {skipped} deliveries not sent"

    _change(app, blast, act)


@blast_group.command("requeue-unknown")
@click.argument("blast")
@pass_app
def requeue_unknown_command(app: AppContext, blast: str) -> None:
    """Queue BLAST's in-doubt (unknown) deliveries again, deliberately.

    They were in flight when a sender died and may have arrived already;
    sending them again may send some twice. `blast resume` then sends them.
    """

    def act(session: Session, found: Blast, now: datetime) -> str:
        count = control.requeue_unknown(session, found, actor="cli", now=now)
        return f"{count} deliveries queued again; `mailer blast resume {found.id}` sends them"

    _change(app, blast, act)


@blast_group.command("schedule")
@click.argument("blast")
@click.option("--at", "at", required=True, help='When to start, e.g. "2026-12-01 09:00".')
@click.option("--tz", default=None, help="IANA time zone of --at. Default: schedule.timezone.")
@click.option("--force", is_flag=True, help="Schedule even if `mailer check` finds errors.")
@pass_app
def schedule_command(app: AppContext, blast: str, at: str, tz: str | None, force: bool) -> None:
    """Schedule BLAST to start at a time (again to reschedule).

    The time is stored in UTC; a running service (`mailer run`) picks the
    change up within schedule.poll_interval seconds.
    """
    zone_name = tz or app.settings.schedule.timezone
    moment = parse_local(at, zone_name)
    gate(app.db(), app.settings, blast, force=force, actor="cli")

    def act(session: Session, found: Blast, now: datetime) -> str:
        planner.schedule(session, found, moment, actor="cli", now=now)
        return (
            f"blast {found.id} scheduled for {show(moment, zone_name)} "
            f"({moment.strftime('%Y-%m-%d %H:%M')} UTC)"
        )

    _change(app, blast, act)


@blast_group.command("unschedule")
@click.argument("blast")
@pass_app
def unschedule_command(app: AppContext, blast: str) -> None:
    """Take BLAST off the schedule (it becomes a draft again)."""

    def act(session: Session, found: Blast, now: datetime) -> str:
        planner.unschedule(session, found, actor="cli", now=now)
        return f"blast {found.id} is a draft again"

    _change(app, blast, act)


@blast_group.command("follow-up")
@click.argument("blast")
@click.option("--after", required=True, help="Delay after BLAST finishes: 48h, 90m, 2d.")
@click.option("--template", "-t", default=None, help="Template of the follow-up. Default: BLAST's.")
@click.option("--name", default=None, help='Name of the follow-up. Default: "<BLAST> (follow-up)".')
@click.option(
    "--audience",
    type=click.Choice(["no-click", "no-action"]),
    default="no-click",
    show_default=True,
    help="Who gets it: recipients who did not click, or who did not sign BLAST's petition.",
)
@pass_app
def follow_up_command(
    app: AppContext, blast: str, after: str, template: str | None, name: str | None, audience: str
) -> None:
    """Create a follow-up to BLAST's recipients who did not click it (or did not act).

    It is scheduled AFTER the original finishes; its audience (sent the
    original, no click, not unsubscribed since) is computed when it starts.
    With --audience no-action it is those who have not signed BLAST's
    petition (through any alert or the public page), clicked or not.
    """
    created = create_follow_up(
        app.db(),
        app.settings,
        blast,
        after=parse_duration(after),
        template=template,
        name=name,
        audience=audience,
    )
    when = (
        show(created.scheduled_at, app.settings.schedule.timezone) or f"{after} after it finishes"
    )
    click.echo(f"{created.id}")
    click.echo(f"follow-up {created.id} scheduled: {when}", err=True)


@blast_group.command("test")
@click.argument("blast")
@click.option("--to", "to", required=True, help="Seed addresses, comma separated.")
@pass_app
def test_command(app: AppContext, blast: str, to: str) -> None:
    """Send BLAST's alert to seed addresses, marked [TEST]; the blast is not touched.

    At most blast.test_send_limit addresses (10 by default). An address on the
    suppression list, or whose supporter is unsubscribed, bounced or complained,
    gets nothing and is reported as not sent. The test message's unsubscribe link
    shows the unsubscribe page and changes nothing.
    """
    addresses = [a for a in (part.strip() for part in to.split(",")) if a]
    if not addresses:
        raise click.ClickException("--to needs at least one address")
    failed = 0
    for address, outcome in send_test(app.db(), app.settings, blast, addresses):
        click.echo(f"{address}: {outcome.verdict} ({outcome.code} {outcome.text})")
        failed += outcome.verdict is not Verdict.SENT
    if failed:
        raise click.ClickException(f"{failed} test message(s) not accepted")


@blast_group.command("list")
@click.option(
    "--tz", default=None, help="Show times in this IANA zone. Default: schedule.timezone."
)
@pass_app
def list_command(app: AppContext, tz: str | None) -> None:
    """List blasts: state, scheduled time (in your zone), progress."""
    zone_name = tz or app.settings.schedule.timezone
    with app.db().session() as session:
        blasts = session.exec(select(Blast).order_by(col(Blast.id))).all()
        progress = dict(
            session.exec(
                select(Delivery.blast_id, func.count())
                .where(col(Delivery.state).in_(FINAL_STATES))
                .group_by(col(Delivery.blast_id))
            ).all()
        )
        totals = dict(
            session.exec(
                select(Delivery.blast_id, func.count()).group_by(col(Delivery.blast_id))
            ).all()
        )
    if not blasts:
        click.echo("no blasts yet")
        return
    click.echo(f"{'id':>4}  {'status':<10} {'when':<22} {'progress':>13}  name")
    for blast in blasts:
        assert blast.id is not None
        if blast.status is BlastStatus.SCHEDULED and blast.scheduled_at is None:
            when = "after the original"
        else:
            when = show(blast.scheduled_at or blast.started_at, zone_name)
        done, total = progress.get(blast.id, 0), totals.get(blast.id, 0)
        click.echo(
            f"{blast.id:>4}  {blast.status:<10} {when:<22} {f'{done}/{total}':>13}  {blast.name}"
        )
        if blast.last_error:
            click.echo(f"      {blast.last_error}")


@blast_group.command("events")
@click.argument("blast")
@click.option(
    "--tz", default=None, help="Show times in this IANA zone. Default: schedule.timezone."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
def events_command(app: AppContext, blast: str, tz: str | None, as_json: bool) -> None:
    """Show BLAST's event log, oldest first: who did what and when, and why.

    Created, scheduled, started, joined by another sender, paused (with the
    reason), missed (with why), resumed, finished, test sends, and every
    organizer's action on it.
    """
    zone_name = tz or app.settings.schedule.timezone
    with app.db().session() as session:
        found = find_blast(session, blast)
        rows = session.exec(
            select(Event).where(Event.blast_id == found.id).order_by(col(Event.id))
        ).all()
    for event in rows:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "at": event.at.isoformat() if event.at else None,
                        "actor": event.actor,
                        "action": event.action,
                        "detail": event.detail,
                    },
                    ensure_ascii=False,
                    default=str,
                )
            )
            continue
        detail = ", ".join(f"{k}: {v}" for k, v in event.detail.items() if v not in ("", None))
        line = f"{show(event.at, zone_name):<22} {event.action:<20} {event.actor}"
        click.echo(f"{line}  {detail}" if detail else line)
    if not rows and not as_json:
        click.echo(f"no events for blast {found.id}")


COMMANDS = [blast_group]

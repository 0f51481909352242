"""`mailer inbound` and `mailer bounces import`: bounces, complaints, mailto unsubscribes."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from mailer.cli import AppContext, pass_app
from mailer.inbound import InboundServer, import_mailbox
from mailer.inbound.review import Selection, stopped_by_bounces, undo_bounces


@click.command("inbound")
@click.option("--host", default=None, help="Address to listen on. Default: inbound.host.")
@click.option("--port", default=None, type=int, help="Port to listen on. Default: inbound.port.")
@pass_app
def inbound_command(app: AppContext, host: str | None, port: int | None) -> None:
    """Receive bounces, complaints and mailto unsubscribes over SMTP (never relays).

    Point the MX (or a forward) of the return-path and unsubscribe addresses
    here. Hard bounces and complaints mark the supporter and the delivery;
    soft bounces count up to inbound.soft_bounce_limit; every decision is
    logged with its evidence. Ctrl-C stops it.
    """
    app.settings.require("security.secret_key")
    with InboundServer(app.db(create=True), app.settings, host=host, port=port) as server:
        click.echo(f"listening on {server.host}:{server.port}; Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


@click.group("bounces")
def bounces_group() -> None:
    """Bounce and complaint reports kept in a mailbox."""


@bounces_group.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@pass_app
def bounces_import_command(app: AppContext, path: Path) -> None:
    """Read the reports in PATH (a Maildir folder or an mbox file) as `mailer inbound` would.

    Safe to run again on the same mailbox: a report already seen is not counted twice.
    """
    app.settings.require("security.secret_key")
    result = import_mailbox(app.db(), app.settings, path)
    click.echo(f"{result.messages} messages read from {result.format} {result.path}")
    for kind, count in sorted(result.kinds.items()):
        click.echo(f"  {kind:<14} {count}")
    for outcome, count in sorted(result.outcomes.items()):
        click.echo(f"  -> {outcome:<11} {count}")
    if result.too_early:
        click.echo(
            f"  {result.too_early} not recorded yet: their deliveries are still sending;"
            " import again later to apply them"
        )


def _utc(value: datetime | None) -> datetime | None:
    """A date or time given on the command line, read as UTC."""
    return value.replace(tzinfo=UTC) if value is not None else None


@bounces_group.command("review")
@click.option(
    "--rule",
    default="",
    help="Only supporters stopped by this classifier rule (as listed, e.g. status:5.1.1;"
    " a prefix ending in ':' such as words: takes every rule under it).",
)
@click.option(
    "--since",
    type=click.DateTime(),
    default=None,
    help="Only supporters stopped at or after this UTC date/time.",
)
@click.option(
    "--until",
    type=click.DateTime(),
    default=None,
    help="Only supporters stopped before this UTC date/time.",
)
@click.option(
    "--undo",
    is_flag=True,
    help="Make the selected supporters active again (needs --rule, --since or --until).",
)
@pass_app
def bounces_review_command(
    app: AppContext,
    rule: str,
    since: datetime | None,
    until: datetime | None,
    undo: bool,
) -> None:
    """List supporters stopped by bounces, with the report that decided each.

    Each line: when, the address, why (hard bounce or soft bounce limit), the
    classifier rule that decided, the status and the remote server's words.
    With --undo the selected supporters become active again; every undo is
    recorded in the audit log with the event it undoes, so a classifier fix
    can repair an old mistake.
    """
    selection = Selection(rule=rule, since=_utc(since), until=_utc(until))
    if undo:
        if selection.empty:
            raise click.UsageError("--undo needs --rule, --since or --until")
        items = undo_bounces(app.db(), selection, actor="cli")
        click.echo(f"{len(items)} supporters made active again")
    else:
        items = stopped_by_bounces(app.db(), selection)
        click.echo(f"{len(items)} supporters stopped by bounces")
    for item in items:
        when = item.stopped_at.strftime("%Y-%m-%d %H:%M") if item.stopped_at else "?"
        click.echo(
            f"  {when}  {item.email}  {item.reason}  {item.rule or '-'}"
            f"  {item.status or '-'}  {item.diagnostic[:80]}"
        )


COMMANDS = [inbound_command, bounces_group]

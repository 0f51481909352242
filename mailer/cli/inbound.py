"""`mailer inbound` and `mailer bounces import`: bounces, complaints, mailto unsubscribes."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mailer.cli import AppContext, pass_app
from mailer.inbound import InboundServer, import_mailbox


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


COMMANDS = [inbound_command, bounces_group]

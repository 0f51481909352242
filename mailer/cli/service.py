"""`mailer run` and `mailer status`: the long-running service and a look at it."""

from __future__ import annotations

import asyncio
import logging

import click
from sqlmodel import col, select

from mailer import logs
from mailer.assemble import SEND_KEYS
from mailer.cli import AppContext, pass_app
from mailer.schedule.service import Service, is_live
from mailer.schedule.times import show
from mailer.send.engine import delivery_counts
from mailer.store import Blast, BlastStatus, ServiceInstance
from mailer.store.models import utcnow


@click.command("run")
@click.option("--host", default=None, help="Address of the HTTP app. Default: web.host.")
@click.option("--port", default=None, type=int, help="Port of the HTTP app. Default: web.port.")
@click.option(
    "--json-logs/--text-logs", default=None, help="Log format. Default: JSON unless a TTY."
)
@pass_app
def run_command(
    app: AppContext, host: str | None, port: int | None, json_logs: bool | None
) -> None:
    """Run the service: scheduler, sender and HTTP app in one process.

    Starts scheduled blasts on time, resumes blasts that were sending when it
    last stopped, and serves clicks and unsubscribes. Logs one line per event
    (JSON when not a terminal). SIGTERM or Ctrl-C stop it gracefully.
    """
    settings = app.settings
    settings.require(*SEND_KEYS)
    logs.setup(level=logging.INFO, json_lines=json_logs)
    service = Service(
        app.db(create=True),
        settings,
        host=host or settings.web.host,
        port=port or settings.web.port,
    )
    asyncio.run(service.run())


@click.command("status")
@pass_app
def status_command(app: AppContext) -> None:
    """Show running services and the blasts that are sending, scheduled, paused or missed."""
    settings = app.settings
    zone = settings.schedule.timezone
    now = utcnow()
    with app.db().session() as session:
        services = session.exec(select(ServiceInstance)).all()
        blasts = session.exec(
            select(Blast)
            .where(
                col(Blast.status).in_(
                    (
                        BlastStatus.SENDING,
                        BlastStatus.SCHEDULED,
                        BlastStatus.PAUSED,
                        BlastStatus.MISSED,
                    )
                )
            )
            .order_by(col(Blast.id))
        ).all()
    live = [s for s in services if is_live(s, now, settings.schedule.poll_interval)]
    if live:
        for service in live:
            web = f", web app {service.web_url}" if service.web_url else ""
            click.echo(
                f"service {service.name} running since {show(service.started_at, zone)}{web}"
            )
            if service.last_error:
                click.echo(f"  last error: {service.last_error}")
    else:
        click.echo("no service running (start one with `mailer run`)")
    for service in services:
        if service not in live:
            click.echo(
                f"service {service.name} last seen {show(service.heartbeat_at, zone)} (gone)"
            )
    if not blasts:
        click.echo("no blast sending, scheduled, paused or missed")
    for blast in blasts:
        assert blast.id is not None
        line = f"blast {blast.id} {blast.status}: {blast.name}"
        if blast.status is BlastStatus.SENDING:
            counts = delivery_counts(app.db(), blast.id)
            total = sum(counts.values())
            open_ = counts["queued"] + counts["sending"] + counts["deferred"]
            line += (
                f" ({total - open_}/{total} done, {counts['sent']} sent, {counts['failed']} failed)"
            )
        elif blast.status is BlastStatus.SCHEDULED:
            line += f" at {show(blast.scheduled_at, zone) or 'after its original finishes'}"
        click.echo(line)
        if blast.last_error:
            click.echo(f"  {blast.last_error}")


COMMANDS = [run_command, status_command]

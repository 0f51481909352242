"""`mailer blast ...`: create, send and list blasts."""

from __future__ import annotations

import click
from sqlmodel import func, select

from mailer.blasts import create_blast, send_now
from mailer.cli import AppContext, pass_app
from mailer.cli.progress import progress_for
from mailer.store import Blast, Delivery


@click.group("blast")
def blast_group() -> None:
    """Create, send and list alert blasts."""


@blast_group.command("create")
@click.argument("name")
@click.option(
    "--template",
    "-t",
    required=True,
    help="Alert template: a folder name under the templates directory.",
)
@click.option(
    "--list",
    "-l",
    "lists",
    required=True,
    multiple=True,
    help="List to send to (repeat for several).",
)
@click.option("--cta-url", default=None, help="Call-to-action URL. Default: blast.default_cta_url.")
@pass_app
def create_command(
    app: AppContext, name: str, template: str, lists: tuple[str, ...], cta_url: str | None
) -> None:
    """Create a draft blast NAME and print its id.

    The template is rendered in each of its languages first, so a template
    error is reported now rather than halfway through sending.
    """
    blast = create_blast(
        app.db(),
        app.settings,
        name=name,
        template=template,
        list_names=list(lists),
        cta_url=cta_url,
    )
    click.echo(blast.id)


@blast_group.command("send")
@click.argument("blast")
@pass_app
def send_command(app: AppContext, blast: str) -> None:
    """Send BLAST (id or name) now, in the foreground, with a progress bar.

    The audience is the active members of the blast's lists at this moment.
    Running it again continues an interrupted or paused blast; nobody gets
    the same blast twice.
    """
    result = send_now(app.db(), app.settings, blast, progress=progress_for(f"sending {blast}"))
    c = result.counts
    click.echo(
        f"blast {result.blast_id} {result.status}: {c['sent']} sent, {c['failed']} failed, "
        f"{c['deferred']} deferred, {c['skipped']} skipped, {c['unknown']} unknown"
    )
    if c["deferred"]:
        click.echo(
            "deferred deliveries are retried by running `mailer blast send` again once they are due"
        )
    if result.error:
        raise click.ClickException(f"paused: {result.error}")


@blast_group.command("list")
@pass_app
def list_command(app: AppContext) -> None:
    """List blasts with their state and size."""
    with app.db().session() as session:
        rows = session.exec(
            select(Blast, func.count(Delivery.id))  # type: ignore[arg-type]
            .outerjoin(Delivery, Delivery.blast_id == Blast.id)  # type: ignore[arg-type]
            .group_by(Blast.id)  # type: ignore[arg-type]
            .order_by(Blast.id)  # type: ignore[arg-type]
        ).all()
    if not rows:
        click.echo("no blasts yet")
        return
    click.echo(f"{'id':>4}  {'status':<10} {'recipients':>10}  {'template':<20} name")
    for blast, recipients in rows:
        click.echo(
            f"{blast.id:>4}  {blast.status:<10} {recipients:>10}  {blast.template:<20} {blast.name}"
        )


COMMANDS = [blast_group]

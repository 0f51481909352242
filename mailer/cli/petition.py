"""`mailer petition ...`: create petitions, list them, report and export their signatures."""

from __future__ import annotations

import click

from mailer.cli import AppContext, pass_app
from mailer.petitions.store import create_petition, list_petitions, refresh_texts


@click.group("petition")
def petition_group() -> None:
    """Petitions: the action an alert asks for, signed on the mailer's own pages."""


@petition_group.command("create")
@click.argument("name")
@click.option("--goal", type=int, required=True, help="Number of signatures aimed for.")
@click.option(
    "--target-url",
    default=None,
    help="Where signers are handed on to. Default: blast.default_cta_url.",
)
@click.option(
    "--template",
    "-t",
    default=None,
    help="Alert template folder whose petition.toml holds the texts. Default: NAME.",
)
@click.option("--slug", default=None, help="Public page /p/SLUG. Default: NAME as a slug.")
@click.option(
    "--opt-in-list",
    default=None,
    help="List that public signers who opt in are put on. Default: petition-SLUG.",
)
@pass_app
def create_command(
    app: AppContext,
    name: str,
    goal: int,
    target_url: str | None,
    template: str | None,
    slug: str | None,
    opt_in_list: str | None,
) -> None:
    """Create petition NAME and print its public address.

    Its title, introduction and suggested message per language come from
    the template's petition.toml (see docs/templates.md). Link blasts to it
    with `mailer blast create ... --petition NAME`.
    """
    petition = create_petition(
        app.db(create=True),
        app.settings,
        name=name,
        goal=goal,
        target_url=target_url,
        template=template,
        slug=slug,
        opt_in_list=opt_in_list,
    )
    base = app.settings.web.base_url.rstrip("/")
    click.echo(f"petition {petition.id} created: {base}/p/{petition.slug}")


@petition_group.command("refresh")
@click.argument("petition")
@pass_app
def refresh_command(app: AppContext, petition: str) -> None:
    """Read PETITION's petition.toml again, after editing its texts."""
    found = refresh_texts(app.db(), app.settings, petition)
    click.echo(f"petition {found.id}: texts in {', '.join(sorted(found.texts))}")


@petition_group.command("list")
@pass_app
def list_command(app: AppContext) -> None:
    """List petitions with their signatures and goals."""
    rows = list_petitions(app.db())
    if not rows:
        click.echo("no petitions yet")
        return
    click.echo(f"{'id':>4}  {'signatures':>10}  {'goal':>8}  {'slug':<24} name")
    for row in rows:
        click.echo(
            f"{row['id']:>4}  {row['signatures']:>10}  {row['goal']:>8}  "
            f"{row['slug']:<24} {row['name']}"
        )


COMMANDS = [petition_group]

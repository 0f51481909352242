"""`mailer petition ...`: create petitions, list them, report and export their signatures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mailer.cli import AppContext, pass_app
from mailer.petitions.export import delivery_document, write_csv
from mailer.petitions.report import petition_report
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
    help="Stored alert or template folder whose petition.toml holds the texts "
    "(a stored alert wins, as for blast create). Default: NAME.",
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
    the template's petition.toml (see docs/templates.md): the one kept with
    a stored alert's newest revision (imported with its folder by `mailer
    template import`), or else the folder's. Link blasts to it
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
    """Read PETITION's petition.toml again, after editing its texts.

    For a petition made from a stored alert, the alert's newest revision is
    read (after `mailer template import` of the edited folder).
    """
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


@petition_group.command("report")
@click.argument("petition")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@pass_app
def report_command(app: AppContext, petition: str, as_json: bool) -> None:
    """Show PETITION's signatures: over time (UTC days), by language, region and source,
    per linked blast, and new opt-ins."""
    report = petition_report(app.db(), petition)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"Petition {report['id']}: {report['petition']} — {report['signatures']} of "
        f"{report['goal']} signatures ({report['percent']}%), {report['opt_ins']} new opt-ins"
    )
    console = Console()
    days = Table("day (UTC)", "signatures", "total", title="Over time")
    for row in report["by_day"]:
        days.add_row(row["day"], str(row["signatures"]), str(row["total"]))
    console.print(days)
    for key, title in (
        ("by_language", "By language"),
        ("by_region", "By region"),
        ("by_source", "By source"),
        ("by_blast", "By blast (actions)"),
    ):
        table = Table("", "signatures", title=title)
        for name, count in report[key].items():
            table.add_row(str(name), str(count))
        console.print(table)


@petition_group.command("export")
@click.argument("petition")
@click.option("--csv", "fmt", flag_value="csv", default=True, help="CSV, one row per signer.")
@click.option(
    "--html", "fmt", flag_value="html", help="A printable delivery document (print it to PDF)."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write. Default: standard output.",
)
@click.option(
    "--with-email", is_flag=True, help="CSV only: add signers' addresses (for your own records)."
)
@click.option("--language", default="en", show_default=True, help="HTML: language of the title.")
@pass_app
def export_command(
    app: AppContext,
    petition: str,
    fmt: str,
    output: Path | None,
    with_email: bool,
    language: str,
) -> None:
    """Export PETITION's signatures for delivery: names, cities/ZIPs and messages.

    --csv (the default) writes one row per signer; --html a document listing
    them under the petition's text, ready to print to PDF. Addresses are left
    out unless --with-email is given.
    """
    if fmt == "html":
        if with_email:
            raise click.UsageError("--with-email is for the CSV only")
        document = delivery_document(
            app.db(), petition, organization_name=app.settings.organization.name, language=language
        )
        if output is None:
            click.echo(document)
        else:
            output.write_text(document, "utf-8")
        return
    if output is None:
        count = write_csv(app.db(), petition, sys.stdout, with_email=with_email)
    else:
        with output.open("w", encoding="utf-8", newline="") as out:
            count = write_csv(app.db(), petition, out, with_email=with_email)
    click.echo(f"{count} signatures", err=True)


COMMANDS = [petition_group]

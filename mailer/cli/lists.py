"""Commands that set up the database and fill it with supporters."""

from __future__ import annotations

from pathlib import Path

import click

from mailer.cli import AppContext, pass_app
from mailer.supporters.importer import ImportSummary, import_csv


@click.command("init")
@pass_app
def init_command(app: AppContext) -> None:
    """Create the database and its tables, or upgrade them (safe to run again)."""
    app.db(create=True)
    click.echo(f"database ready: {app.settings.database.url}")


def print_summary(summary: ImportSummary, rejects_path: Path | None) -> None:
    click.echo(f"imported {summary.file} into list {summary.list_name!r}:")
    click.echo(f"  rows read       {summary.rows}")
    click.echo(f"  added           {summary.added}")
    click.echo(f"  updated         {summary.updated}")
    click.echo(f"  unchanged       {summary.unchanged}")
    click.echo(f"  new members     {summary.new_members}")
    click.echo(f"  duplicates      {summary.duplicates}")
    click.echo(f"  rejected        {summary.rejected}")
    for reject in summary.rejects:
        click.echo(f"  line {reject.line}: {reject.reason}", err=True)
    if summary.rejects and rejects_path is not None:
        click.echo(f"  rejected and duplicate rows written to {rejects_path}")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--list", "list_name", required=True, help="List to add the supporters to (created when new)."
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write rejected rows as CSV. "
    "Default: FILE's name + .rejects.csv in the current folder.",
)
@pass_app
def import_command(app: AppContext, file: Path, list_name: str, rejects_path: Path | None) -> None:
    """Import supporters from a CSV FILE into a list.

    Addresses are validated and normalized; a re-import updates, never duplicates;
    bad rows are reported with their line number and skipped; unsubscribed
    supporters stay unsubscribed.
    """
    rejects_path = rejects_path or Path(f"{file.stem}.rejects.csv")
    summary = import_csv(
        app.db(create=True),
        file,
        list_name,
        check_deliverability=app.settings.import_.check_deliverability,
        rejects_path=rejects_path,
    )
    print_summary(summary, rejects_path)


COMMANDS = [init_command, import_command]

"""`mailer template ...`: alerts stored in the database, in and out of template folders."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from mailer.alerts.folders import export_alert, import_folder
from mailer.alerts.store import diff, get_revision, history, list_alerts, translation_status
from mailer.cli import AppContext, pass_app


def _author() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.group("template")
def template_group() -> None:
    """Alerts stored in the database (with every revision), and template folders.

    `blast create --template NAME` takes a stored alert or a template folder;
    when both exist under NAME, the stored alert is used.
    """


@template_group.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--name", default=None, help="Store it under this name. Default: the folder's.")
@click.option("--note", default="", help="A word on this revision, kept with it.")
@pass_app
def import_command(app: AppContext, folder: Path, name: str | None, note: str) -> None:
    """Store template FOLDER as the next revision of an alert (made when new).

    The folder's files are kept exactly as written, so `template export`
    writes the same bytes back. The folder is checked first: it must render
    in every language, with the layouts of templates.dir.
    """
    revision = import_folder(
        app.db(create=True),
        folder,
        layouts=app.settings.templates_path(),
        author=_author(),
        name=name,
        note=note,
    )
    click.echo(
        f"alert {revision.alert!r} revision {revision.number} saved "
        f"({revision.format}; {', '.join(revision.languages)})"
    )


@template_group.command("export")
@click.argument("name")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--revision", "number", type=int, default=None, help="Default: the newest.")
@click.option("--overwrite", is_flag=True, help="Write into a folder that holds files already.")
@pass_app
def export_command(
    app: AppContext, name: str, folder: Path, number: int | None, overwrite: bool
) -> None:
    """Write alert NAME into FOLDER as a template folder.

    An imported folder comes back byte for byte; a Markdown alert comes out
    as template.toml (format = "markdown") with <language>.md bodies.
    """
    written = export_alert(app.db(), name, folder, number=number, overwrite=overwrite)
    for path in written:
        click.echo(str(path))


@template_group.command("list")
@pass_app
def list_command(app: AppContext) -> None:
    """The stored alerts: name, newest revision, format, languages, description."""
    alerts = list_alerts(app.db())
    if not alerts:
        click.echo("no alerts stored (`mailer template import FOLDER` stores one)")
    for a in alerts:
        click.echo(
            f"{a.name}  revision {a.revision}  {a.format}  {','.join(a.languages)}  {a.description}"
        )


@template_group.command("show")
@click.argument("name")
@click.option("--revision", "number", type=int, default=None, help="Default: the newest.")
@click.option("--history", "show_history", is_flag=True, help="List every revision instead.")
@click.option("--diff", "against", type=int, default=None, help="Show the changes since N.")
@pass_app
def show_command(
    app: AppContext, name: str, number: int | None, show_history: bool, against: int | None
) -> None:
    """Print alert NAME: a revision's texts, its revisions, or the changes between two.

    Also says which languages are missing or out of date against the default
    language.
    """
    db = app.db()
    if show_history:
        for r in history(db, name):
            when = r.created_at.strftime("%Y-%m-%d %H:%M UTC") if r.created_at else ""
            click.echo(f"{r.number}  {when}  {r.author}  {r.note}")
        return
    if against is not None:
        newest = get_revision(db, name, number).number
        click.echo(diff(db, name, against, newest), nl=False)
        return
    revision = get_revision(db, name, number)
    click.echo(revision.as_text(), nl=False)
    click.echo("")
    for status in translation_status(db, name):
        click.echo(f"translation {status.language}: {status.state}")


COMMANDS = [template_group]

"""`mailer suppress import|export`: addresses that must never be mailed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailer import csvsafe
from mailer.cli import AppContext, pass_app
from mailer.store.models import utcnow
from mailer.supporters.suppression import (
    export_suppressions,
    import_suppressions,
    resubscribe,
)


@click.group("suppress")
def suppress_group() -> None:
    """The suppression list: addresses never mailed, whether supporters or not."""


@suppress_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", default="imported", show_default=True, help="Why they are suppressed.")
@pass_app
def import_command(app: AppContext, file: Path, reason: str) -> None:
    """Add the addresses in FILE (CSV with an email column, or one address a line).

    Every later audience leaves them out, and a blast already sending skips them.
    """
    result = import_suppressions(
        app.db(create=True), file, reason=reason, actor="cli", now=utcnow()
    )
    click.echo(
        f"{result.added} added, {result.already} already suppressed, "
        f"{len(result.rejected)} rejected"
    )
    for line, value, problem in result.rejected:
        click.echo(f"  line {line}: {value!r}: {problem}", err=True)


@suppress_group.command("export")
@pass_app
def export_command(app: AppContext) -> None:
    """Write the suppression list as CSV (email, reason, source, added) to stdout."""
    writer = csvsafe.Writer(sys.stdout, lineterminator="\n")
    writer.writerow(["email", "reason", "source", "added"])
    for row in export_suppressions(app.db()):
        added = row.created_at.isoformat(timespec="seconds") if row.created_at else ""
        writer.writerow([row.email, row.reason, row.source, added])


@click.command("resubscribe")
@click.argument("email")
@click.option("--reason", required=True, help="Why (kept in the event log), e.g. 'asked by email'.")
@pass_app
def resubscribe_command(app: AppContext, email: str, reason: str) -> None:
    """Make an unsubscribed supporter EMAIL active again (logged with your reason)."""
    with app.db().session() as session:
        supporter = resubscribe(session, email, actor="cli", reason=reason, now=utcnow())
        click.echo(f"{supporter.email} is active again")


COMMANDS = [suppress_group, resubscribe_command]

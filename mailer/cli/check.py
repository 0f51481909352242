"""`mailer check BLAST`: the pre-flight lint."""

from __future__ import annotations

import click

from mailer.check import check_blast
from mailer.cli import AppContext, pass_app


@click.command("check")
@click.argument("blast")
@pass_app
def check_command(app: AppContext, blast: str) -> None:
    """Check BLAST before sending: templates, links, footer, headers, size, subject.

    Renders it for real recipients in every language of its audience. Exits 1
    when there are errors; `blast send` and the service refuse such a blast
    unless it is sent or scheduled with --force.
    """
    problems = check_blast(app.db(), app.settings, blast)
    for problem in problems:
        click.echo(f"{problem.severity:<8} {problem.code:<26} {problem.message}")
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors:
        raise click.exceptions.Exit(1)


COMMANDS = [check_command]

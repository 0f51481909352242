"""`mailer db upgrade` and `mailer db current`: the schema's migrations."""

from __future__ import annotations

import click

from mailer.cli import AppContext, pass_app


@click.group("db")
def db_group() -> None:
    """The database schema: upgrade it to this version of the mailer, show its revision."""


@db_group.command("upgrade")
@pass_app
def upgrade_command(app: AppContext) -> None:
    """Apply every migration the database lacks (an empty database gets them all).

    A database made before migrations existed is recognized (the mailer's
    tables without an alembic_version table), recorded at revision 0001 and
    upgraded from there; no row is touched by that. Safe to run again, and
    from several hosts at once on PostgreSQL.
    """
    from mailer.store import migrate  # Alembic is imported only by the commands that use it

    result = migrate.upgrade(app.db().engine)
    if result.adopted:
        click.echo(f"database from before migrations: recorded at revision {migrate.FIRST}")
    if result.before == result.after:
        click.echo(f"database is at revision {result.after}, the newest; nothing to do")
    else:
        click.echo(f"database upgraded from {result.before or 'empty'} to revision {result.after}")


@db_group.command("current")
@pass_app
def current_command(app: AppContext) -> None:
    """Print the database's revision, and whether it is the newest this mailer knows."""
    from mailer.store import migrate

    revision = migrate.current(app.db().engine)
    newest = migrate.head()
    if revision is None:
        click.echo(f"none (no migrations recorded; run `mailer db upgrade`; newest is {newest})")
    elif revision == newest:
        click.echo(f"{revision} (newest)")
    else:
        click.echo(f"{revision} (newest is {newest}; run `mailer db upgrade`)")


COMMANDS = [db_group]

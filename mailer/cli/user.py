"""`mailer user ...`: accounts of the web admin and tokens for its JSON API."""

from __future__ import annotations

import sys

import click

from mailer import accounts
from mailer.cli import AppContext, pass_app
from mailer.store.models import UserRole, utcnow

ROLES = click.Choice([r.value for r in UserRole])


def _actor() -> str:
    return "cli"


@click.group("user")
def user_group() -> None:
    """Manage who may sign in to the web admin (/admin) and call its API (/api)."""


@user_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=ROLES, help="viewer, organizer or admin.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)
@pass_app
def add_command(app: AppContext, name: str, role: str, password_stdin: bool) -> None:
    """Add user NAME with a role; the password is prompted for (and stored hashed).

    Viewers read; organizers also create, test, schedule, pause and cancel
    blasts; admins also manage users, suppressions and supporters.
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = accounts.add_user(
        app.db(create=True), name, UserRole(role), password, actor=_actor(), now=utcnow()
    )
    click.echo(f"user {user.name} ({user.role}) added")


@user_group.command("token")
@click.argument("name")
@pass_app
def token_command(app: AppContext, name: str) -> None:
    """Print a new API token for user NAME (shown once; only its hash is kept).

    Scripts send it as `Authorization: Bearer TOKEN` to /api.
    """
    click.echo(accounts.new_api_token(app.db(), name, actor=_actor()))


@user_group.command("role")
@click.argument("name")
@click.argument("role", type=ROLES)
@pass_app
def role_command(app: AppContext, name: str, role: str) -> None:
    """Change user NAME's role."""
    accounts.set_role(app.db(), name, UserRole(role), actor=_actor(), now=utcnow())
    click.echo(f"user {name} is {role} now")


@user_group.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again instead (as `user enable`).")
@pass_app
def disable_command(app: AppContext, name: str, enable: bool) -> None:
    """Disable user NAME: their sessions and API tokens end at once.

    The last active admin cannot be disabled (nor demoted with `user role`).
    """
    accounts.set_disabled(app.db(), name, not enable, actor=_actor(), now=utcnow())
    click.echo(f"user {accounts.check_name(name)} {'enabled' if enable else 'disabled'}")


@user_group.command("enable")
@click.argument("name")
@pass_app
def enable_command(app: AppContext, name: str) -> None:
    """Enable user NAME again after `user disable`; they sign in anew (and need new tokens)."""
    accounts.set_disabled(app.db(), name, False, actor=_actor(), now=utcnow())
    click.echo(f"user {accounts.check_name(name)} enabled")


@user_group.command("list")
@pass_app
def list_command(app: AppContext) -> None:
    """List users and their roles."""
    users = accounts.list_users(app.db())
    if not users:
        click.echo("no users yet; `mailer user add NAME --role admin` makes the first")
    for user in users:
        state = " (disabled)" if user.disabled else ""
        click.echo(f"{user.name:<24} {user.role}{state}")


COMMANDS = [user_group]

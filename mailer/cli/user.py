"""`mailer user ...`: accounts of the web admin and tokens for its JSON API."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from mailer import accounts
from mailer.api_tokens import list_tokens, revoke_token
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
@click.option(
    "--expires-in-days",
    type=click.IntRange(min=1),
    default=None,
    help="The token stops working after this many days. Default: until revoked.",
)
@pass_app
def token_command(app: AppContext, name: str, expires_in_days: int | None) -> None:
    """Print a new API token for user NAME (shown once; only its hash is kept).

    Scripts send it as `Authorization: Bearer TOKEN` to /api. `user tokens`
    lists tokens, `user revoke-token ID` ends one.
    """
    expires_in = timedelta(days=expires_in_days) if expires_in_days else None
    click.echo(accounts.new_api_token(app.db(), name, actor=_actor(), expires_in=expires_in))


@user_group.command("tokens")
@click.argument("name", required=False)
@pass_app
def tokens_command(app: AppContext, name: str | None) -> None:
    """List API tokens (of user NAME): id, user, created, last used, expires."""
    for t in list_tokens(app.db(), name):
        times = [
            x.isoformat(timespec="seconds") if x else "-" for x in (t.created_at, t.last_used_at)
        ]
        expires = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never"
        click.echo(f"{t.id:<6} {t.user:<24} created {times[0]}  used {times[1]}  expires {expires}")


@user_group.command("revoke-token")
@click.argument("token_id", type=click.IntRange(min=1))
@pass_app
def revoke_token_command(app: AppContext, token_id: int) -> None:
    """End API token TOKEN_ID (from `user tokens`) at once; the user's others stay."""
    revoke_token(app.db(), token_id, actor=_actor(), now=utcnow())
    click.echo(f"token {token_id} revoked")


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

"""mailer: send action alerts to supporters and prove who got them and who acted.

Every command reads its settings from --config PATH, else $MAILER_CONFIG,
else ./mailer.toml when present; MAILER_<SECTION>_<KEY> variables override
single settings (see config.example.toml).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailer import __version__, config
from mailer.errors import ConfigError, MailerError

if TYPE_CHECKING:
    from mailer.store import Database

# Every top-level command: the module that defines it (in its ``COMMANDS``) and the first
# sentence of its help, shown by ``mailer --help``. A command's module is imported only
# when that command runs (or its own --help is asked for), so ``mailer report`` does not
# import the web app, the sender or the inbound parser. tests/test_cli_table.py checks that
# this table and the commands agree.
COMMANDS: dict[str, tuple[str, str]] = {
    "blast": ("mailer.cli.blast", "Create, send, pause, resume, cancel and list alert blasts."),
    "bounces": ("mailer.cli.inbound", "Bounce and complaint reports kept in a mailbox."),
    "check": (
        "mailer.cli.check",
        "Check BLAST before sending: templates, links, footer, headers, size, subject.",
    ),
    "db": (
        "mailer.cli.db",
        "The database schema: upgrade it to this version of the mailer, show its revision.",
    ),
    "demo": ("mailer.cli.demo", "Run one action alert end to end on the embedded defaults."),
    "devsmtp": (
        "mailer.cli.demo",
        "Run a local SMTP server that accepts everything and keeps it in a Maildir.",
    ),
    "import": ("mailer.cli.lists", "Import supporters from a CSV FILE into a list."),
    "inbound": (
        "mailer.cli.inbound",
        "Receive bounces, complaints and mailto unsubscribes over SMTP (never relays).",
    ),
    "init": (
        "mailer.cli.lists",
        "Create the database and its tables, or upgrade them (safe to run again).",
    ),
    "log": (
        "mailer.cli.log",
        "List BLAST's deliveries: state, attempts, SMTP reply, clicks, times.",
    ),
    "petition": (
        "mailer.cli.petition",
        "Petitions: the action an alert asks for, signed on the mailer's own pages.",
    ),
    "preview": (
        "mailer.cli.preview",
        "Render BLAST for one supporter (--to EMAIL): print headers and text, save HTML and .eml.",
    ),
    "report": (
        "mailer.cli.report",
        "Show BLAST's figures: recipients, sent, failed, clicks, click-through rate, unsubscribes.",
    ),
    "resubscribe": (
        "mailer.cli.suppress",
        "Make an unsubscribed supporter EMAIL active again (logged with your reason).",
    ),
    "run": (
        "mailer.cli.service",
        "Run the service: scheduler, sender and HTTP app in one process.",
    ),
    "scheduler": (
        "mailer.cli.processes",
        "Start scheduled blasts on time, for workers to send; never sends itself.",
    ),
    "status": (
        "mailer.cli.service",
        "Show running services and the blasts that are sending, scheduled, paused or missed.",
    ),
    "suppress": (
        "mailer.cli.suppress",
        "The suppression list: addresses never mailed, whether supporters or not.",
    ),
    "template": (
        "mailer.cli.template",
        "Alerts stored in the database (with every revision), and template folders.",
    ),
    "user": (
        "mailer.cli.user",
        "Manage who may sign in to the web admin (/admin) and call its API (/api).",
    ),
    "web": (
        "mailer.cli.web",
        "Serve the HTTP app: click and open tracking, unsubscribe and action pages, "
        "the web admin and its JSON API.",
    ),
    "worker": ("mailer.cli.processes", "Send: work on every blast that is sending, until stopped."),
}


@dataclass
class AppContext:
    """What every command gets: settings loaded once, the database opened on demand."""

    config_path: Path | None
    _settings: config.Settings | None = None
    _db: Database | None = field(default=None, repr=False)

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            self._settings = config.load(self.config_path)
        return self._settings

    def db(self, *, create: bool = False) -> Database:
        if self._db is None:
            from mailer.store import open_database  # SQLAlchemy only for commands that use it

            cfg = self.settings.database
            self._db = open_database(
                cfg.url, create=create, pool_size=cfg.pool_size, max_overflow=cfg.max_overflow
            )
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


pass_app = click.make_pass_decorator(AppContext)


class LazyGroup(click.Group):
    """The top-level group: it imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command: click.Command = next(c for c in module.COMMANDS if c.name == cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The summaries come from the table, as click would shorten each command's help,
        # so that ``mailer --help`` imports no command.
        if not COMMANDS:
            return
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, summary) in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click suggests close names from the commands it holds; here they are in the table.
            name = args[0] if args else ""
            close = sorted(difflib.get_close_matches(name, COMMANDS))
            if name in COMMANDS or not close or "?" in exc.format_message():
                raise
            names = ", ".join(repr(c) for c in close)
            hint = (
                f"Did you mean {names}?" if len(close) == 1 else f"(Did you mean one of: {names}?)"
            )
            raise click.UsageError(f"No such command {name!r}. {hint}", ctx) from None


@click.group(
    cls=LazyGroup,
    help=__doc__,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Settings file (TOML). Default: $MAILER_CONFIG, else ./mailer.toml when present.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more detail to stderr.")
@click.version_option(__version__, prog_name="mailer")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = AppContext(config_path)
    ctx.obj = app
    ctx.call_on_close(app.close)


def main() -> None:
    """Console entry point: run the CLI, turning expected errors into one clear line."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except MailerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

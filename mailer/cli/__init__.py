"""mailer: send action alerts to supporters and prove who got them and who acted.

Every command reads its settings from --config PATH, else $MAILER_CONFIG,
else ./mailer.toml when present; MAILER_<SECTION>_<KEY> variables override
single settings (see config.example.toml).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from mailer import __version__, config
from mailer.errors import ConfigError, MailerError
from mailer.store import Database, open_database


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
            cfg = self.settings.database
            self._db = open_database(
                cfg.url, create=create, pool_size=cfg.pool_size, max_overflow=cfg.max_overflow
            )
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


pass_app = click.make_pass_decorator(AppContext)


@click.group(
    help=__doc__, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
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


def _register() -> None:
    from mailer.cli import (
        blast,
        check,
        db,
        demo,
        inbound,
        lists,
        log,
        petition,
        preview,
        processes,
        report,
        service,
        suppress,
        template,
        user,
        web,
    )

    for module in (
        lists,
        suppress,
        blast,
        preview,
        check,
        log,
        report,
        web,
        service,
        inbound,
        user,
        demo,
        db,
        petition,
        processes,
        template,
    ):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


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

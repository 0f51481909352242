"""The command table of ``mailer``: each command is imported only when it is used.

``mailer.cli.COMMANDS`` names each top-level command's module and the summary
``mailer --help`` shows; these tests keep the table and the commands in step.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import mailer.cli
from mailer.cli import COMMANDS, cli
from tests.processes import mailer_env


def defined_commands() -> dict[str, str]:
    """Every command in a ``COMMANDS`` list of a module of mailer.cli: name -> module."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(mailer.cli.__path__, "mailer.cli."):
        module = importlib.import_module(info.name)
        for command in getattr(module, "COMMANDS", []):
            assert command.name not in found, f"{command.name} defined twice"
            found[command.name] = info.name
    return found


def test_the_table_names_every_command_and_its_module() -> None:
    assert {name: module for name, (module, _) in COMMANDS.items()} == defined_commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_summary_is_what_the_command_says_of_itself(name: str) -> None:
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, name)
    assert command is not None and command.name == name
    summary = click.Command(name, help=COMMANDS[name][1])
    for limit in (45, 80, 10_000):
        assert summary.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_a_mistyped_command_gets_a_suggestion() -> None:
    result = CliRunner().invoke(cli, ["repot", "1"])
    assert result.exit_code == 2
    assert "No such command 'repot'. Did you mean 'report'?" in result.output
    result = CliRunner().invoke(cli, ["nothing-like-it"])
    assert result.exit_code == 2
    assert "No such command 'nothing-like-it'." in result.output
    assert "Did you mean" not in result.output


# Which modules a fresh interpreter holds after running the CLI with ARGS.
LOADED = """
import json, sys
from mailer.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="mailer", standalone_mode=False)
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_after(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args],
        env=mailer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Usage:" in done.stdout
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return set(modules)


@pytest.mark.processes
def test_help_imports_no_command_and_a_command_only_its_own() -> None:
    top = loaded_after("--help")
    assert not {m for m in top if m.startswith("mailer.cli.")}
    assert "sqlalchemy" not in top
    report = loaded_after("report", "--help")
    assert {m for m in report if m.startswith("mailer.cli.")} == {"mailer.cli.report"}
    # Not the web app, the sender or the inbound parser that other commands need.
    assert not report & {"mailer.web", "mailer.send.engine", "mailer.inbound", "uvicorn"}

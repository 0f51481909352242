"""The CLI reference (docs/cli.md), generated from the commands' own --help.

``python -m mailer.cli.reference > docs/cli.md`` rewrites it; a test fails
when the committed file and the commands disagree.
"""

from __future__ import annotations

import click

from mailer.cli import cli

HEADER = """\
# Command-line reference

Generated from `mailer --help` and each command's `--help`
(`make docs` rewrites it; a test checks it is current).
"""


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        # Through list_commands and get_command: the top-level group loads its commands lazily.
        ctx = click.Context(command, info_name=" ".join(path))
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found.extend(_walk(sub, [*path, name]))
    return found


def render() -> str:
    parts = [HEADER]
    for path, command in _walk(cli, ["mailer"]):
        info_name = " ".join(path)
        with click.Context(
            command,
            info_name=info_name,
            terminal_width=100,
            max_content_width=100,
            help_option_names=["-h", "--help"],
        ) as ctx:
            text = command.get_help(ctx)
        parts.append(f"\n## `{info_name}`\n\n```text\n{text}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")

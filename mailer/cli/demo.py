"""`mailer demo` and `mailer devsmtp`: try the mailer without any outside service."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from mailer.cli.progress import progress_for
from mailer.cli.report import heading, render_table
from mailer.demo import run_demo
from mailer.devsmtp import DevSmtpServer


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Working folder; deleted and recreated on each run.",
)
def demo_command(folder: Path) -> None:
    """Run one action alert end to end on the embedded defaults.

    Starts a local SMTP server that keeps messages in a Maildir, creates a
    SQLite database, imports the sample supporter list, sends the
    executive-orders alert to it, follows a few tracking links and one
    unsubscribe link over HTTP, and prints the blast report.
    """
    started = time.monotonic()
    result = run_demo(folder, say=click.echo, progress=progress_for("sending"))
    click.echo(heading(result.report))
    Console().print(render_table(result.report))
    click.echo(f"delivered messages: {result.outbox}/new/ (one file per message)")
    click.echo(f"database:           {result.database}")
    click.echo(f"settings used:      {result.config_path}")
    program = Path(sys.argv[0])
    command = os.path.relpath(program) if program.name == "mailer" else "mailer"
    click.echo(f"try:  {command} --config {result.config_path} report 1 --json")
    click.echo(f"demo finished in {time.monotonic() - started:.1f}s")


@click.command("devsmtp")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=2525, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/outbox"),
    show_default=True,
    help="Maildir to keep received messages in.",
)
def devsmtp_command(host: str, port: int, maildir: Path) -> None:
    """Run a local SMTP server that accepts everything and keeps it in a Maildir.

    For trying the mailer without a real relay: point [smtp] host/port at it.
    Stop it with Ctrl-C.
    """
    with DevSmtpServer(maildir, host=host, port=port) as server:
        click.echo(
            f"listening on {host}:{server.port}, keeping messages in {maildir}; Ctrl-C stops"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


COMMANDS = [demo_command, devsmtp_command]

"""`mailer worker` and `mailer scheduler`: the parts of `mailer run`, one per process.

For several hosts on one PostgreSQL database (docs/deployment.md): any number
of workers, one or more schedulers (one acts, the others stand by), and
`mailer web` for the HTTP app.
"""

from __future__ import annotations

import asyncio
import logging

import click

from mailer import logs
from mailer.assemble import SEND_KEYS
from mailer.cli import AppContext, pass_app
from mailer.schedule.service import SCHEDULER, WORKER, Service

_LOG_OPTION = click.option(
    "--json-logs/--text-logs", default=None, help="Log format. Default: JSON unless a TTY."
)


def _serve(app: AppContext, role: str, json_logs: bool | None) -> None:
    logs.setup(level=logging.INFO, json_lines=json_logs)
    settings = app.settings
    service = Service(app.db(create=True), settings, host="", port=0, roles=frozenset({role}))
    asyncio.run(service.run())


@click.command("worker")
@_LOG_OPTION
@pass_app
def worker_command(app: AppContext, json_logs: bool | None) -> None:
    """Send: work on every blast that is sending, until stopped.

    Picks up blasts started by a scheduler or by `mailer blast send`, and
    blasts left sending when a worker stopped. Several workers may share a
    blast. SIGTERM or Ctrl-C let in-flight messages finish, give the rest back
    to the queue and leave the blast sending, for this or another worker.
    """
    app.settings.require(*SEND_KEYS)
    _serve(app, WORKER, json_logs)


@click.command("scheduler")
@_LOG_OPTION
@pass_app
def scheduler_command(app: AppContext, json_logs: bool | None) -> None:
    """Start scheduled blasts on time, for workers to send; never sends itself.

    Run two for availability: one acts, the other stands by and takes over
    within seconds (schedule.poll_interval) when the active one dies. When a
    blast is due, it takes the audience snapshot and leaves the blast sending.
    """
    _serve(app, SCHEDULER, json_logs)


COMMANDS = [worker_command, scheduler_command]

"""`mailer log BLAST`: every delivery of a blast and what the relay said."""

from __future__ import annotations

import sys

import click

from mailer import csvsafe
from mailer.cli import AppContext, pass_app
from mailer.report import LOG_COLUMNS, delivery_log
from mailer.store import DeliveryState, find_blast


@click.command("log")
@click.argument("blast")
@click.option(
    "--state",
    type=click.Choice([s.value for s in DeliveryState]),
    default=None,
    help="Only deliveries in this state (e.g. unknown, failed, deferred).",
)
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV (all columns) instead of a table.")
@pass_app
def log_command(app: AppContext, blast: str, state: str | None, as_csv: bool) -> None:
    """List BLAST's deliveries: state, attempts, SMTP reply, clicks, times.

    Clicks are the recipient's own; clicks_flagged (in --csv) are link-scanner
    clicks within tracking.scanner_window of sending.
    """
    db = app.db()
    with db.session() as session:
        found = find_blast(session, blast)
    assert found.id is not None
    rows = delivery_log(db, found.id, state=DeliveryState(state) if state else None)
    if as_csv:
        writer = csvsafe.DictWriter(sys.stdout, fieldnames=LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    count = 0
    for row in rows:
        if count == 0:
            click.echo(f"{'state':<9} {'tries':>5} {'code':>4} {'clicks':>6}  {'email':<36} reply")
        count += 1
        code = row["reply_code"] if row["reply_code"] is not None else ""
        click.echo(
            f"{row['state']:<9} {row['attempts']:>5} {code!s:>4} {row['clicks']:>6}  "
            f"{row['email']:<36} {row['reply_text']}"
        )
    if count == 0:
        click.echo("no deliveries" + (f" in state {state}" if state else ""))


COMMANDS = [log_command]

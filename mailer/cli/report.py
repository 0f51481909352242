"""`mailer report BLAST`: the figures of one blast."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mailer.cli import AppContext, pass_app
from mailer.report import blast_report, link_report

ROWS = [
    ("recipients", "Recipients"),
    ("sent", "Sent"),
    ("failed", "Failed"),
    ("bounced", "Bounced"),
    ("blocked", "  of which blocked (refused as spam, policy...)"),
    ("deferred", "Deferred (will retry)"),
    ("skipped", "Skipped"),
    ("unknown", "Unknown (in doubt)"),
    ("queued", "Queued"),
    ("clicks_unique", "Unique clicks"),
    ("clicks_total", "Total clicks"),
    ("clicks_flagged", "  of which link scanners"),
    ("click_rate", "Click-through rate"),
    ("unsubscribed", "Unsubscribed"),
    ("opens_unique", "Opens (unique, unreliable)"),
    ("actions", "Actions (petition signed)"),
    ("action_rate", "Action rate (of recipients)"),
    ("actions_per_click", "Actions per click"),
]
RATES = ("click_rate", "action_rate", "actions_per_click")


def render_table(report: dict[str, Any]) -> Table:
    table = Table(show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, label in ROWS:
        if key.startswith("action") and not report.get("petition"):
            continue  # no petition, nothing to act on
        value = report[key]
        table.add_row(label, f"{value:.1%}" if key in RATES else str(value))
    return table


def heading(report: dict[str, Any]) -> str:
    return f"Blast {report['id']}: {report['blast']} ({report['status']})"


@click.command("report")
@click.argument("blast")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--links", is_flag=True, help="Also show the clicks of each link.")
@pass_app
def report_command(app: AppContext, blast: str, as_json: bool, links: bool) -> None:
    """Show BLAST's figures: recipients, sent, failed, clicks, click-through rate, unsubscribes.

    For a blast linked to a petition also actions (signatures through its
    alert), the action rate (actions / recipients) and actions per click.

    Unique clicks leave out clicks that came within tracking.scanner_window
    seconds of sending (link scanners); the total keeps every click.
    """
    report = blast_report(app.db(), blast)
    if links:
        report["links"] = link_report(app.db(), report["id"])
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(heading(report))
    Console().print(render_table(report))
    if links:
        table = Table("link", "unique", "total", "scanners")
        for row in report["links"]:
            table.add_row(
                row["url"],
                str(row["clicks_unique"]),
                str(row["clicks_total"]),
                str(row["clicks_flagged"]),
            )
        Console().print(table)
    if report["blocked_by_domain"]:
        table = Table("blocked by domain", "messages", "why (classifier rule)", "first", "last")
        for row in report["blocked_by_domain"]:
            why = ", ".join(f"{rule} {n}" for rule, n in row["rules"].items())
            table.add_row(row["domain"], str(row["blocked"]), why, row["first"], row["last"])
        Console().print(table)
    if report["last_error"]:
        click.echo(f"last error: {report['last_error']}")


COMMANDS = [report_command]

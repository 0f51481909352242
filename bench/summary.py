"""The default mode's summary: the table of rates and ratios, the CPU per message,
the targets met or not, and the DKIM budget (what a message may cost at the DKIM
target on this machine)."""

from __future__ import annotations

import os

from bench import breakdown, clicks, e2e
from bench.common import fmt, met, ratio, say

# Targets of the performance issue (printed as met / not met, never asserted).
TARGET_OF_CEILING = 0.40  # mailer end to end, DKIM off, at least this fraction of the ceiling
TARGET_X_FLOOR = 8.0  # ... and at least this multiple of the floor
TARGET_DKIM_OF_CEILING = 0.25  # the same with DKIM on (RSA-2048)


def row(
    stage: str, what: str, msgs: str, of_ceiling: str = "", x_floor: str = "", rss: str = ""
) -> None:
    say(f"{stage:<10}{what:<46}{msgs:>9}{of_ceiling:>9}{x_floor:>9}{rss:>10}")


def dkim_budget(run: e2e.EndToEnd, ceiling_rate: float, found: breakdown.Breakdown) -> str:
    """What a message may cost at the DKIM target, against what the signature and the
    receiver alone take (``run``'s): whether the target is in reach here at all."""
    cores = os.cpu_count() or 1
    budget = cores * 1e6 / (TARGET_DKIM_OF_CEILING * ceiling_rate)
    text = (
        f"DKIM budget: at {TARGET_DKIM_OF_CEILING:.2f} of the ceiling a message may cost"
        f" {budget:,.0f} µs of CPU with all {cores} cores busy; the RSA-2048 signature alone"
        f" takes {found.us('rsa'):,.0f}"
    )
    if run.receiver_cpu_s is not None:
        text += f", the receiver {run.per_message_us(run.receiver_cpu_s):,.0f}"
    if run.machine_busy_s is not None:
        text += f"; {run.label()} spent {run.per_message_us(run.machine_busy_s):,.0f}"
    return text


def summary(
    n: int,
    message: breakdown.MessageSizes,
    ceiling_rate: float | None,
    floor_rate: float,
    prepared: e2e.Prepared,
    runs: list[e2e.EndToEnd],
    clients: list[breakdown.TransportRun],
    found: breakdown.Breakdown,
    click_result: clicks.Result | None = None,
) -> None:
    line = "=" * 93
    say(line)
    say(f"summary: N = {n:,}, {os.cpu_count()} CPUs; msg/s are noisy, read the ratios")
    row("stage", "what", "msg/s", "/ceiling", "x floor", "peak RSS")
    say("-" * 93)
    kb = message.mailer / 1000
    if ceiling_rate is None:
        row("ceiling", f"smtp-source -> smtp-sink, {kb:.1f} KB, 16 sessions", "n/a")
    else:
        row(
            "ceiling",
            f"smtp-source -> smtp-sink, {kb:.1f} KB, 16 sessions",
            f"{ceiling_rate:,.0f}",
            "1.00",
        )
    row(
        "floor",
        "Jinja + EmailMessage + smtplib, 1 conn",
        f"{floor_rate:,.0f}",
        fmt(ratio(floor_rate, ceiling_rate), ".3f"),
        "1.0",
    )
    for run in runs:
        row(
            "mailer",
            "end to end, " + run.label(),
            f"{run.rate:,.0f}",
            fmt(ratio(run.rate, ceiling_rate), ".3f"),
            fmt(ratio(run.rate, floor_rate), ".1f"),
            f"{run.peak_rss_mb:.0f} MB",
        )
    for client in clients:
        row(
            "client",
            f"SMTP client alone, pre-composed, {client.connections} conn",
            f"{client.rate:,.0f}",
            fmt(ratio(client.rate, ceiling_rate), ".3f"),
            fmt(ratio(client.rate, floor_rate), ".1f"),
        )
    say("-" * 93)
    base = next((r for r in runs if r.default and not r.dkim), None)
    if base is not None:
        us = base.per_message_us
        sink = (
            f", {us(base.receiver_cpu_s):,.0f} in the receiver"
            if base.receiver_cpu_s is not None
            else ""
        )
        say(
            f"CPU per message, {base.label()}: {us(base.cpu_s):,.0f} µs in the send process"
            f"{sink}; wall {us(base.send_s):,.0f} µs"
        )
        say(
            f"  event-loop thread {us(base.loop_cpu_s):,.0f} µs:"
            f" compose {us(base.compose_cpu_s):,.0f}"
            f" + SMTP client, asyncio, engine {us(base.loop_cpu_s - base.compose_cpu_s):,.0f};"
            f" database thread {us(base.db_cpu_s):,.0f} µs"
        )
        say(
            f"  isolated: Jinja {found.us('render'):,.0f}, links + tokens {found.us('links'):,.0f},"
            f" MIME {found.us('mime'):,.0f}, DKIM {found.us('dkim'):,.0f},"
            f" aiosmtplib DATA regexes (unpipelined path) {found.us('smtp_data'):,.0f},"
            f" 1-conn SMTP client CPU {clients[0].cpu_us:,.0f} of {clients[0].wall_us:,.0f} wall"
        )
    for run in runs:
        if run.dkim or not (run is base or run.processes > 1):
            continue
        if run.processes > 1:
            us = run.per_message_us
            say(
                f"CPU per message, {run.label()}: {us(run.all_cpu_s):,.0f} µs in the"
                f" {run.processes} send processes; wall {us(run.send_s):,.0f} µs"
            )
        of = ratio(run.rate, ceiling_rate)
        x_floor = run.rate / floor_rate
        target = f"targets ({run.label()}): "
        target += f"/ceiling >= {TARGET_OF_CEILING:.2f}: "
        target += f"{met(of >= TARGET_OF_CEILING)} ({of:.3f})" if of is not None else "n/a"
        target += f"; x floor >= {TARGET_X_FLOOR:.0f}: {met(x_floor >= TARGET_X_FLOOR)}"
        target += f" ({x_floor:.1f})"
        say(target)
    for run in runs:
        if run.default and run.dkim and ceiling_rate:
            of = run.rate / ceiling_rate
            say(
                f"targets ({run.label()}): /ceiling >= {TARGET_DKIM_OF_CEILING:.2f}:"
                f" {met(of >= TARGET_DKIM_OF_CEILING)} ({of:.3f})"
            )
    signed = [run for run in runs if run.dkim]
    if signed and ceiling_rate:  # the default run's, else (--smoke) the one there is
        say(dkim_budget(next((r for r in signed if r.default), signed[0]), ceiling_rate, found))
    say(
        f"import: {prepared.import_per_1000_s * 1000:,.0f} ms per 1,000 rows;"
        " memory at 200,000 recipients: python -m bench --memory"
    )
    say("-" * 93)
    if click_result is None:
        say("clicks: not measured (no wrk)")
    else:
        for text in click_result.summary_lines():
            say(text)
    say(line)

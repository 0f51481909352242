"""``python -m bench`` (``make bench``): ceiling, floor, the mailer end to end, cost breakdown.

Options: ``--quick`` for a short smoke run (smaller N; figures less stable).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import breakdown, e2e
from bench.floor import naive_send
from bench.postfix import NullSmtp, Receiver, SmtpSink, Tools, ensure_tools, free_port, smtp_source


@dataclass(frozen=True)
class Sizes:
    ceiling_messages: int = 10_000
    ceiling_runs: int = 3
    floor: int = 2_000
    e2e: tuple[int, ...] = (2_000, 10_000)
    breakdown_iterations: int = 2_000


QUICK = Sizes(ceiling_messages=3_000, floor=500, e2e=(500, 2_000), breakdown_iterations=300)


def say(text: str = "") -> None:
    print(text, flush=True)


def rate(text: float | None) -> str:
    return "n/a" if text is None else f"{text:,.0f} msg/s"


def ratio(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return ""
    return f"{part / whole:.2f}"


def counted(receiver: Receiver, before: int | None, expected: int) -> str:
    """'(receiver got N)' for a stage, warning when the count is off."""
    after = receiver.received()
    if after is None or before is None:
        return ""
    got = after - before
    warning = "" if got == expected else f", expected {expected:,}"
    return f"  [{receiver.name} got {got:,}{warning}]"


def ceiling(tools: Tools, port: int, sink: Receiver, sizes: Sizes) -> float:
    say(
        f"ceiling: smtp-source -d -l 14000 -s 16 -m {sizes.ceiling_messages:,}"
        f" -> smtp-sink on 127.0.0.1:{port}"
    )
    smtp_source(tools, port, messages=200)  # warm up (page cache, first connections)
    rates = []
    for run in range(1, sizes.ceiling_runs + 1):
        before = sink.received()
        seconds = smtp_source(tools, port, messages=sizes.ceiling_messages)
        rates.append(sizes.ceiling_messages / seconds)
        note = counted(sink, before, sizes.ceiling_messages)
        say(f"  run {run}: {seconds:6.2f} s  {rates[-1]:8,.0f} msg/s{note}")
    median = statistics.median(rates)
    say(f"  median {median:,.0f} msg/s")
    return median


def timed_stage(title: str, fn: Callable[[], float], n: int, receiver: Receiver) -> float:
    say(title)
    before = receiver.received()
    seconds = fn()
    value = n / seconds
    say(f"  {n:,} messages in {seconds:.2f} s: {value:,.0f} msg/s{counted(receiver, before, n)}")
    return value


def end_to_end(n: int, port: int, receiver: Receiver) -> e2e.EndToEnd:
    say(f"mailer end to end, {n:,} recipients (import + blast, then send_now: 2 processes)")
    before = receiver.received()
    run = e2e.run(n, port)
    per_1000 = run.import_per_1000_s * 1000
    say(f"  import {run.import_s:.2f} s ({per_1000:,.0f} ms per 1,000 rows)")
    got = counted(receiver, before, run.sent)
    say(f"  send {run.send_s:.2f} s: {run.rate:,.0f} msg/s{got}; deliveries {run.counts}")
    compose, deliver = run.per_message_us(run.compose_s), run.per_message_us(run.deliver_s)
    rest = run.per_message_us(run.send_s) - compose - deliver
    say(
        f"  per message {run.per_message_us(run.send_s):,.0f} µs = compose {compose:,.0f}"
        f" + deliver {deliver:,.0f} + rest {rest:,.0f} (claim, record, loop)"
    )
    say(
        f"  rate over the first half {run.first_half_rate:,.0f} msg/s,"
        f" second half {run.second_half_rate:,.0f} msg/s"
    )
    growth = run.peak_rss_mb - run.baseline_rss_mb
    say(
        f"  send process RSS {run.baseline_rss_mb:.1f} MB before sending,"
        f" {run.peak_rss_mb:.1f} MB peak (+{growth:.1f} MB)"
    )
    if run.error:
        say(f"  ERROR: {run.error}")
    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller N, for a smoke run")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    started = time.perf_counter()
    say(
        f"mailer bench: {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" {platform.platform(terse=True)}"
    )
    tools = ensure_tools()
    if isinstance(tools, str):
        say(f"CEILING NOT MEASURED: {tools}")
        say("  the other stages send into an aiosmtpd null server instead (slower: lower bounds)")
    port = free_port()
    ceiling_rate: float | None = None
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        log = Path(tmp) / "receiver.log"
        receiver: Receiver = (
            SmtpSink(tools, port, log) if isinstance(tools, Tools) else NullSmtp(port, log)
        )
        with receiver:
            say(f"receiver: {receiver.name} on 127.0.0.1:{port}")
            say()
            if isinstance(tools, Tools):
                ceiling_rate = ceiling(tools, port, receiver, sizes)
            floor_rate = timed_stage(
                "floor: naive loop, Jinja + EmailMessage + smtplib over one connection",
                lambda: naive_send(port, sizes.floor),
                sizes.floor,
                receiver,
            )
            runs = [end_to_end(n, port, receiver) for n in sizes.e2e]
            say("mailer transport alone: SmtpTransport.deliver of pre-composed messages, 1 conn")
            before = receiver.received()
            deliver_us, delivered = breakdown.transport_us(port, sizes.floor)
            got = counted(receiver, before, sizes.floor + 1)
            say(f"  {delivered:,} of {sizes.floor:,} accepted: {deliver_us:,.0f} µs each{got}")
    say(f"per-message cost breakdown ({sizes.breakdown_iterations:,}-iteration loops, no network)")
    costs = breakdown.measure(sizes.breakdown_iterations)
    costs.steps.append(
        breakdown.Step(
            "deliver", "mailer SmtpTransport.deliver (aiosmtplib, 1 connection)", deliver_us
        )
    )
    for step in costs.steps:
        say(f"  {step.name:<62} {step.us:8,.0f} µs")
    mailer_kb, naive_kb = costs.mailer_bytes / 1000, costs.naive_bytes / 1000
    say(f"  message size: mailer {mailer_kb:.1f} KB, floor {naive_kb:.1f} KB, ceiling 14 KB body")
    say()
    summary(sizes, ceiling_rate, floor_rate, runs, costs)
    say(f"(bench took {time.perf_counter() - started:.0f} s)")
    return 0


def row(label: str, what: str, figure: str, note: str = "") -> None:
    say(f"{label:<9}{what:<58}{figure:>14}" + (f"  {note}" if note else ""))


def summary(
    sizes: Sizes,
    ceiling_rate: float | None,
    floor_rate: float,
    runs: list[e2e.EndToEnd],
    costs: breakdown.Breakdown,
) -> None:
    say("=" * 100)
    what = "smtp-source -> smtp-sink (14 KB, 16 sessions)"
    if ceiling_rate is None:
        row("ceiling", what, "not measured")
    else:
        row("ceiling", what, rate(ceiling_rate), f"(median of {sizes.ceiling_runs})")
    floor_of = ratio(floor_rate, ceiling_rate)
    row(
        "floor",
        "naive Jinja + EmailMessage + smtplib, 1 conn",
        rate(floor_rate),
        f"{floor_of} of ceiling" if floor_of else "",
    )
    for run in runs:
        of = ratio(run.rate, ceiling_rate)
        parts = ([f"{of} of ceiling"] if of else []) + [f"{run.rate / floor_rate:.2f}x floor"]
        row("mailer", f"end to end, SQLite, {run.n:,} recipients", rate(run.rate), ", ".join(parts))
    if not runs:
        say("=" * 100)
        return
    ns = " vs ".join(f"{r.n:,}" for r in runs)
    mbs = " vs ".join(f"{r.peak_rss_mb:.0f} MB" for r in runs)
    growth = " vs ".join(f"+{r.peak_rss_mb - r.baseline_rss_mb:.1f}" for r in runs)
    row("memory", f"peak RSS of the send process, {ns} recipients", mbs, f"(growth {growth} MB)")
    imports = " vs ".join(f"{r.import_per_1000_s * 1000:,.0f} ms" for r in runs)
    row("import", f"CSV import per 1,000 rows, {ns} rows", imports)
    last = runs[-1]
    per_message = last.per_message_us(last.send_s)
    compose, deliver = last.per_message_us(last.compose_s), last.per_message_us(last.deliver_s)
    row(
        "budget",
        f"per message, end to end at {last.n:,} recipients",
        f"{per_message:,.0f} µs",
        f"= compose {compose:,.0f} + deliver {deliver:,.0f}"
        f" + rest {per_message - compose - deliver:,.0f} (claim, record, loop)",
    )
    row(
        "",
        "  of compose: MIME build + as_bytes (isolated loop)",
        f"{costs.us('mime'):,.0f} µs",
        f"Jinja render {costs.us('render'):,.0f} µs, links + tokens {costs.us('links'):,.0f} µs",
    )
    say("=" * 100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

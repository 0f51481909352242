"""``python -m bench`` (``make bench``): ceiling, floor, the mailer end to end, where time goes.

Modes (see the package docstring for the method):

default
    ceiling (the median of runs before and after the end-to-end runs, which
    take minutes while the machine's speed drifts), floor, the mailer end
    to end for ``--n`` supporters (20,000) with
    DKIM off and on, with the default ``[sending] connections`` and with 16,
    the SMTP client alone, isolated per-message loops, the click endpoint
    under wrk (as ``--clicks``, 5,000 deliveries), and a summary table.
``--memory``
    peak RSS of the send process for ``--n`` supporters (200,000) and for a
    tenth of that, and their ratio.
``--profile``
    one end-to-end send of ``--n`` supporters (5,000) under cProfile (both
    threads, CPU time), split by owner, plus the top functions by tottime.
``--clicks``
    only the click-tracking stage (:mod:`bench.clicks`): ``GET /c/<token>`` of
    the real app under wrk for ``--seconds`` (10) with valid tokens of ``--n``
    deliveries (5,000), against a bare redirect of the same framework and
    server; requests per second, p50/p99, the ratio, and stored clicks
    against the 302s counted (lost clicks).
``--scale``
    scale-out (:mod:`bench.scale`): the blast of ``--n`` supporters (20,000)
    sent by 1, 2 and 4 sender processes sharing a PostgreSQL database
    (``MAILER_BENCH_PG_URL``, default the local test database), each run in a
    fresh schema, and by one process with a rate limit that never binds (the
    cost of the shared token bucket); messages per second, the scaling ratio,
    and the SQLite single-process figure of the same run beside them.
``--studio``
    the same alert (``templates/executive-orders``) sent to ``--n`` supporters
    (20,000) as a template folder and as a stored alert imported from it (what
    the studio writes and ``mailer template import`` stores), alternately
    (each kind first in turn), three times each, into the same receiver: the
    median rates and CPU per message, and their ratios. The studio's pages
    are timed by ``python -m bench.studio``.
``--million [N]``
    a million supporters (or N) through ``mailer import`` into SQLite, then
    one blast through ``mailer blast send`` into ``smtp-sink`` with the
    default settings and DKIM on (:mod:`bench.million`): import time, send
    time, msg/s, the rate over each tenth of the list, the peak RSS of every
    process, every delivery recorded and received.
``--bounces``
    the bounce classifier on the labelled corpus of real reports
    (:mod:`bench.bounces`): confusion table, precision and recall per class,
    address extraction, the slowest message. No SMTP tools needed.
``--quick``
    any mode with small sizes, as a smoke run (figures less stable).
``--smoke``
    any mode with tiny sizes, one ceiling run, 1-second wrk runs, and in the
    default mode two end-to-end runs instead of six (the default settings without DKIM, the
    sender processes with it): every stage and code path runs, in well
    under a minute, and the figures mean nothing. The test suite runs it
    (``tests/test_bench.py``) so the benchmarks cannot break unnoticed.
``--no-install``
    never install Postfix or wrk with apt-get: without ``smtp-sink`` the
    stages send into an aiosmtpd server that discards (lower bounds) and the
    ceiling is not measured; without wrk the click stage is skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench import bounces, breakdown, clicks, e2e, million, scale
from bench.common import (
    TEMPLATE,
    children_cpu_s,
    default_connections,
    fmt,
    met,
    ratio,
    say,
    settings_for,
    write_dkim_key,
)
from bench.floor import naive_send
from bench.postfix import NullSmtp, Receiver, SmtpSink, Tools, ensure_tools, free_port, smtp_source
from bench.summary import summary

# The second engine setting measured besides the default (16 each for the default two
# processes here): the fixed default before `connections = 0` shared 32 over them.
OTHER_CONNECTIONS = 8


def all_cores() -> int:
    """``[sending] processes`` for the many-process runs: one sender per CPU core."""
    return max(2, os.cpu_count() or 1)


# Targets of --memory (printed as met / not met, never asserted); the default mode's
# are in bench.summary.
TARGET_PEAK_MB = 200.0  # peak RSS of the send process at 200,000 recipients below this
TARGET_GROWTH = 1.25  # ... and at most this multiple of its value at 20,000


@dataclass(frozen=True)
class Sizes:
    n: int = 20_000  # supporters per end-to-end run, and messages per ceiling run
    ceiling_runs: int = 3
    floor: int = 2_000
    transport: int = 5_000
    breakdown_iterations: int = 2_000
    memory_n: int = 200_000  # the larger list of --memory (the smaller is a tenth)
    profile_n: int = 5_000
    clicks_n: int = 5_000  # deliveries whose click tokens wrk cycles through
    clicks_seconds: int = 10  # each wrk run
    clicks_short_seconds: int | None = None  # the two limit-finding wrk runs (None: half)
    clicks_iterations: int = 2_000  # loops of the click handler's steps in isolation
    every_variant: bool = True  # end to end: each engine setting with DKIM off and on


QUICK = Sizes(
    n=1_000,
    floor=300,
    transport=1_000,
    breakdown_iterations=300,
    memory_n=5_000,
    profile_n=1_000,
    clicks_n=1_000,
    clicks_seconds=3,
)

SMOKE = Sizes(
    n=100,
    ceiling_runs=1,
    floor=50,
    transport=100,
    breakdown_iterations=30,
    memory_n=1_000,
    profile_n=100,
    clicks_n=100,
    clicks_seconds=1,
    clicks_short_seconds=1,
    clicks_iterations=100,
    every_variant=False,
)


def counted(receiver: Receiver, before: int | None, expected: int) -> str:
    """'[receiver got N]' for a stage, warning when the count is off."""
    after = receiver.received()
    if after is None or before is None:
        return ""
    got = after - before
    warning = "" if got == expected else f", EXPECTED {expected:,}"
    return f"  [{receiver.name} got {got:,}{warning}]"


@contextmanager
def receiver_for(tools: Tools | str, tmp: Path) -> Iterator[Receiver]:
    port = free_port()
    log = tmp / "receiver.log"
    receiver: Receiver = (
        SmtpSink(tools, port, log) if isinstance(tools, Tools) else NullSmtp(port, log)
    )
    with receiver:
        say(f"receiver: {receiver.name} on 127.0.0.1:{port}")
        yield receiver


def header(sizes: Sizes, *, smtp: bool = True, install: bool = True) -> Tools | str:
    say(
        f"mailer bench: {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" {platform.platform(terse=True)}"
    )
    if not smtp:
        return "not needed"
    sending = settings_for(port=0).sending
    say(
        f"engine defaults: [sending] processes = {sending.processes}"
        f" ({all_cores()} here), connections = {sending.connections}"
        f" ({default_connections(all_cores())} each here), batch_size = {sending.batch_size},"
        f" domain_concurrency = {sending.domain_concurrency}"
    )
    tools = ensure_tools(install=install)
    if isinstance(tools, str):
        say(f"CEILING NOT MEASURED: {tools}")
        say("  the other stages send into an aiosmtpd null server instead (slower: lower bounds)")
    return tools


# -- stages ------------------------------------------------------------------------------


def ceiling(
    tools: Tools, receiver: Receiver, sizes: Sizes, size: int, when: str = "", first: int = 1
) -> list[float]:
    """The ceiling's runs (msg/s), numbered from ``first``; ``when`` says when they ran."""
    say(
        f"ceiling{when}: smtp-source -d -s 16 -l {size} -m {sizes.n:,}"
        f" -> smtp-sink on 127.0.0.1:{receiver.port}"
    )
    smtp_source(tools, receiver.port, messages=200, size=size)  # warm up
    rates = []
    for run in range(first, first + sizes.ceiling_runs):
        before, sink_before, source_before = receiver.received(), receiver.cpu_s(), children_cpu_s()
        seconds = smtp_source(tools, receiver.port, messages=sizes.n, size=size)
        rates.append(sizes.n / seconds)
        sink_after, source_s = receiver.cpu_s(), children_cpu_s() - source_before
        note = counted(receiver, before, sizes.n)
        busy = f"; cores busy: smtp-source {source_s / seconds:.2f}"
        if sink_before is not None and sink_after is not None:
            busy += f", smtp-sink {(sink_after - sink_before) / seconds:.2f}"
        say(f"  run {run}: {seconds:6.2f} s  {rates[-1]:8,.0f} msg/s{busy}{note}")
    return rates


def floor(receiver: Receiver, n: int) -> float:
    say("floor: naive loop, Jinja + EmailMessage + smtplib over one connection")
    before = receiver.received()
    seconds = naive_send(receiver.port, n)
    value = n / seconds
    say(f"  {n:,} messages in {seconds:.2f} s: {value:,.0f} msg/s{counted(receiver, before, n)}")
    return value


def prepared_list(tmp: Path, n: int) -> e2e.Prepared:
    say(f"import: {n:,} synthetic supporters (CSV -> SQLite) and a draft blast")
    prepared = e2e.prepare_list(tmp, n)
    say(
        f"  {prepared.added:,} imported in {prepared.import_s:.2f} s"
        f" ({prepared.import_per_1000_s * 1000:,.0f} ms per 1,000 rows)"
    )
    return prepared


def end_to_end(
    prepared: e2e.Prepared,
    receiver: Receiver,
    *,
    connections: int | None = None,
    dkim_key: Path | None = None,
    profile: bool = False,
    processes: int | None = None,
    blast: str = e2e.BLAST,
) -> e2e.EndToEnd:
    chosen = connections or default_connections(processes or all_cores())
    procs = "default sender processes" if processes is None else f"{processes} sender processes"
    label = f"{procs} x {chosen} conns{' (default)' if connections is None else ''}"
    if blast == e2e.STUDIO_BLAST:
        label += f", the stored alert {e2e.STORED!r}"
    dkim = "on (RSA-2048)" if dkim_key else "off"
    profiled = ", under cProfile" if profile else ""
    say(f"mailer end to end, {prepared.n:,} recipients, {label}, DKIM {dkim}{profiled}")
    before, sink_before = receiver.received(), receiver.cpu_s()
    run = e2e.send_copy(
        prepared,
        receiver.port,
        connections=connections,
        dkim_key=dkim_key,
        profile=profile,
        processes=processes,
        blast=blast,
    )
    sink_after = receiver.cpu_s()
    if sink_before is not None and sink_after is not None:
        run = replace(run, receiver_cpu_s=sink_after - sink_before)
    got = counted(receiver, before, run.sent)
    say(f"  send {run.send_s:.2f} s: {run.rate:,.0f} msg/s{got}; deliveries {run.counts}")
    say(
        f"  rate over the first half {run.first_half_rate:,.0f} msg/s,"
        f" second half {run.second_half_rate:,.0f} msg/s"
    )
    us = run.per_message_us
    compose, loop = us(run.compose_cpu_s), us(run.loop_cpu_s)
    if run.processes > 1:
        say(
            f"  CPU per message of all {run.processes} sender processes:"
            f" {us(run.all_cpu_s):,.0f} µs (helpers {us(run.helpers_cpu_s):,.0f});"
            " the split below is the first process's"
        )
    say(
        f"  per message: wall {us(run.send_s):,.0f} µs; CPU of the send process"
        f" {us(run.cpu_s):,.0f} µs = event-loop thread {loop:,.0f}"
        f" (compose {compose:,.0f} + SMTP client, asyncio, engine {loop - compose:,.0f})"
        f" + database thread {us(run.db_cpu_s):,.0f}"
        + (
            f"; {receiver.name} {us(run.receiver_cpu_s):,.0f} µs"
            if run.receiver_cpu_s is not None
            else ""
        )
    )
    busy = f"  cores busy: send process {run.cpu_s / run.send_s:.2f}"
    if run.processes > 1:
        busy += f" + helpers {run.helpers_cpu_s / run.send_s:.2f}"
    busy += f" (event-loop thread {run.loop_cpu_s / run.send_s:.2f})"
    if run.receiver_cpu_s is not None:
        busy += f", {receiver.name} {run.receiver_cpu_s / run.send_s:.2f}"
    if run.machine_busy_s is not None:
        busy += f"; whole machine {run.machine_busy_s / run.send_s:.2f}"
    say(busy + f" of {os.cpu_count()}")
    if run.machine_busy_s is not None:
        whole = us(run.machine_busy_s)
        say(f"  whole machine, kernel included: {whole:,.0f} µs of CPU per message")
    growth = run.peak_rss_mb - run.baseline_rss_mb
    say(
        f"  send process RSS {run.baseline_rss_mb:.1f} MB before sending,"
        f" {run.peak_rss_mb:.1f} MB peak (+{growth:.1f} MB)"
    )
    if run.error or run.status != "done":
        say(f"  STATUS {run.status}: {run.error}")
    return run


def client_alone(receiver: Receiver, sizes: Sizes) -> list[breakdown.TransportRun]:
    say("SMTP client alone: SmtpTransport (pipelining), pre-composed messages, no database")
    runs = []
    for connections, n in (
        (1, sizes.floor),
        (OTHER_CONNECTIONS, sizes.transport),
        (default_connections(), sizes.transport),
    ):
        before = receiver.received()
        run = breakdown.transport(receiver.port, n, connections)
        got = counted(receiver, before, n + connections)
        say(
            f"  {connections:>2} conn: {run.rate:6,.0f} msg/s; per message"
            f" wall {run.wall_us:,.0f} µs, client CPU {run.cpu_us:,.0f} µs;"
            f" {run.accepted:,} of {n:,} accepted{got}"
        )
        runs.append(run)
    return runs


def costs(sizes: Sizes, dkim_key: Path) -> breakdown.Breakdown:
    say(f"per-message cost, isolated loops of {sizes.breakdown_iterations:,} (no network)")
    found = breakdown.measure(sizes.breakdown_iterations, dkim_key)
    for step in found.steps:
        say(f"  {step.name:<62} {step.us:8,.0f} µs")
    return found


# -- modes -------------------------------------------------------------------------------


def run_default(sizes: Sizes, tools: Tools | str, tmp: Path, install: bool) -> None:
    key = write_dkim_key(tmp / "dkim-bench.pem")
    message = breakdown.message_sizes(key)
    say(
        f"message size: mailer {message.mailer:,} bytes, {message.mailer_dkim:,} with DKIM;"
        f" floor {message.naive:,} bytes"
    )
    ceiling_rate: float | None = None
    ceilings: list[float] = []
    runs: list[e2e.EndToEnd] = []
    with receiver_for(tools, tmp) as receiver:
        say()
        if isinstance(tools, Tools):
            ceilings = ceiling(tools, receiver, sizes, message.mailer, " (before)")
        floor_rate = floor(receiver, sizes.floor)
        prepared = prepared_list(tmp, sizes.n)
        default = default_connections(all_cores())
        other = [OTHER_CONNECTIONS] if default != OTHER_CONNECTIONS else []
        # (processes, connections): the defaults (a sender process per core), one
        # process with the default connections, and the default processes with more.
        variants: list[tuple[int | None, int | None]] = [(None, None), (1, None)]
        variants += [(None, c) for c in other]
        plan = [(p, c, k) for p, c in variants for k in (None, key)]
        if not sizes.every_variant:  # each code path once: defaults, then processes with DKIM
            plan = [(None, None, None), (all_cores(), OTHER_CONNECTIONS, key)]
        for processes, connections, dkim_key in plan:
            runs.append(
                end_to_end(
                    prepared,
                    receiver,
                    connections=connections,
                    dkim_key=dkim_key,
                    processes=processes,
                )
            )
        if isinstance(tools, Tools):
            # The machine's speed drifts over the minutes the end-to-end runs take: the
            # ceiling is the median of runs before and after them.
            ceilings += ceiling(
                tools, receiver, sizes, message.mailer, " (after)", first=len(ceilings) + 1
            )
            ceiling_rate = statistics.median(ceilings)
            say(f"ceiling: median of {len(ceilings)} runs, before and after: {ceiling_rate:,.0f}")
        clients = client_alone(receiver, sizes)
    found = costs(sizes, key)
    say()
    click_result = clicks.measure(
        tmp,
        sizes.clicks_n,
        sizes.clicks_seconds,
        install=install,
        short_seconds=sizes.clicks_short_seconds,
        iterations=sizes.clicks_iterations,
    )
    say()
    summary(
        sizes.n, message, ceiling_rate, floor_rate, prepared, runs, clients, found, click_result
    )


def run_memory(sizes: Sizes, tools: Tools | str, tmp: Path, install: bool) -> None:
    large = sizes.memory_n
    small = max(1, large // 10)
    say(f"memory: peak RSS of the send process, {small:,} vs {large:,} recipients")
    say("  (default engine settings, DKIM off; each list imported and sent in fresh processes)")
    results: list[e2e.EndToEnd] = []
    with receiver_for(tools, tmp) as receiver:
        for n in (small, large):
            say()
            prepared = prepared_list(tmp, n)
            if results:
                last = results[-1]
                estimate = n / last.rate if last.rate else 0.0
                say(f"  estimated send time from the {last.n:,} run: {estimate / 60:.1f} min")
            results.append(end_to_end(prepared, receiver))
    say()
    lo, hi = results
    growth = hi.peak_rss_mb / lo.peak_rss_mb
    say("=" * 100)
    say(
        f"memory   peak RSS of the send process: {lo.peak_rss_mb:.1f} MB at {lo.n:,},"
        f" {hi.peak_rss_mb:.1f} MB at {hi.n:,}: ratio {growth:.2f}"
    )
    say(
        f"         before sending {lo.baseline_rss_mb:.1f} / {hi.baseline_rss_mb:.1f} MB;"
        f" rate {lo.rate:,.0f} / {hi.rate:,.0f} msg/s"
        f" (second half of the {hi.n:,} run {hi.second_half_rate:,.0f} msg/s)"
    )
    if hi.n == 200_000:
        below = met(hi.peak_rss_mb < TARGET_PEAK_MB)
        say(
            f"targets  peak < {TARGET_PEAK_MB:.0f} MB at 200,000: {below};"
            f" at most {TARGET_GROWTH:.2f}x the 20,000 figure: {met(growth <= TARGET_GROWTH)}"
        )
    say("=" * 100)


STUDIO_ROUNDS = 3  # sends of each kind, alternated, in --studio


def run_studio(sizes: Sizes, tools: Tools | str, tmp: Path, install: bool) -> None:
    """The same alert sent as a template folder and as a stored alert, alternately."""
    rounds = STUDIO_ROUNDS if sizes.every_variant else 1
    say(
        f"studio alert vs template folder: {TEMPLATE!r} as a folder and as the stored"
        f" alert {e2e.STORED!r} (mailer template import), {rounds} sends of each"
    )
    runs: dict[str, list[e2e.EndToEnd]] = {e2e.BLAST: [], e2e.STUDIO_BLAST: []}
    with receiver_for(tools, tmp) as receiver:
        prepared = prepared_list(tmp, sizes.n)
        for round_number in range(rounds):
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for blast in order:  # each kind first in turn: the load of the moment is shared
                say()
                runs[blast].append(end_to_end(prepared, receiver, blast=blast))

    def medians(blast: str) -> tuple[float, float]:
        """(msg/s, CPU µs per message of the send process) of ``blast``'s runs."""
        done = runs[blast]
        cpu = statistics.median(r.per_message_us(r.cpu_s) for r in done)
        return statistics.median(r.rate for r in done), cpu

    (folder, folder_us), (stored, stored_us) = medians(e2e.BLAST), medians(e2e.STUDIO_BLAST)
    say()
    say("=" * 100)
    say(
        f"studio   {prepared.n:,} recipients, default settings, DKIM off, median of {rounds}:"
        f" folder {folder:,.0f} msg/s, stored alert {stored:,.0f} msg/s:"
        f" ratio {fmt(ratio(stored, folder), '.2f')}"
    )
    say(
        f"         CPU of the send process per message: folder {folder_us:,.0f} µs,"
        f" stored alert {stored_us:,.0f} µs: ratio {fmt(ratio(stored_us, folder_us), '.2f')}"
    )
    for blast, label in ((e2e.BLAST, "folder"), (e2e.STUDIO_BLAST, "stored alert")):
        each = ", ".join(f"{r.rate:,.0f}" for r in runs[blast])
        say(f"         {label} runs: {each} msg/s")
    say("=" * 100)


UNBINDING_RATE = 5000.0  # msg/s: a limit above what one sender reaches here


def run_scale(sizes: Sizes, tools: Tools | str, tmp: Path, install: bool) -> None:
    why = scale.reachable(scale.PG_URL)
    if why:
        say(f"SCALE-OUT NOT MEASURED: no PostgreSQL at MAILER_BENCH_PG_URL ({why})")
        return
    runs: list[scale.ScaleRun] = []
    with receiver_for(tools, tmp) as receiver:
        say()
        sqlite = end_to_end(prepared_list(tmp, sizes.n), receiver, processes=1)
        variants = [(w, 0.0) for w in scale.WORKER_COUNTS] + [(1, UNBINDING_RATE)]
        for workers, rate in variants:
            limit = f", rate limit {rate:,.0f}/s (shared bucket)" if rate else ""
            say(f"scale-out: {sizes.n:,} recipients, {workers} sender processes, PostgreSQL{limit}")
            before = receiver.received()
            run = scale.run_workers(scale.PG_URL, sizes.n, receiver.port, workers, rate)
            say(
                f"  {run.seconds:.2f} s: {run.rate:,.0f} msg/s; senders' CPU"
                f" {run.cpu_us:,.0f} µs/msg; deliveries {run.counts}"
                f"{counted(receiver, before, run.sent)}"
            )
            if run.status != "done" or run.sent != sizes.n:
                say(f"  STATUS {run.status}, {run.sent:,} of {sizes.n:,} sent")
            runs.append(run)
    say()
    line = "=" * 93
    say(line)
    say(
        f"scale-out: N = {sizes.n:,}, {os.cpu_count()} CPUs"
        " (PostgreSQL and the receiver share them)"
    )
    say(f"{'database':<12}{'senders':<34}{'msg/s':>9}{'x 1 sender':>12}{'CPU µs/msg':>12}")
    say("-" * 93)
    say(
        f"{'SQLite':<12}{'1 process':<34}{sqlite.rate:>9,.0f}{'':>12}"
        f"{sqlite.per_message_us(sqlite.cpu_s):>12,.0f}"
    )
    one = runs[0].rate
    for run in runs:
        what = f"{run.workers} process{'es' if run.workers > 1 else ''}"
        if run.rate_limit:
            what += f", limit {run.rate_limit:,.0f}/s"
        say(
            f"{'PostgreSQL':<12}{what:<34}{run.rate:>9,.0f}"
            f"{fmt(ratio(run.rate, one), '.2f'):>12}{run.cpu_us:>12,.0f}"
        )
    say(line)


def run_clicks(sizes: Sizes, tools: Tools | str, tmp: Path, install: bool) -> None:
    found = clicks.measure(
        tmp,
        sizes.clicks_n,
        sizes.clicks_seconds,
        install=install,
        short_seconds=sizes.clicks_short_seconds,
        iterations=sizes.clicks_iterations,
    )
    if found is None:
        return
    say()
    say("=" * 100)
    for line in found.summary_lines():
        say(line)
    say("=" * 100)


def run_profile(sizes: Sizes, tools: Tools | str, tmp: Path, install: bool) -> None:
    with receiver_for(tools, tmp) as receiver:
        prepared = prepared_list(tmp, sizes.profile_n)
        run = end_to_end(prepared, receiver, profile=True, processes=1)  # one process's profile
    found = run.profile
    assert found is not None
    profiled = found.loop_cpu_s + found.other_threads_cpu_s
    say()
    say(
        f"CPU by owner (cProfile timed by thread CPU; event-loop thread {found.loop_cpu_s:.2f} s,"
        f" database thread {found.other_threads_cpu_s:.2f} s; profiling slows Python code)"
    )
    for owner, seconds in found.owners:
        share = seconds / profiled if profiled else 0.0
        say(f"  {owner:<40} {run.per_message_us(seconds):8,.0f} µs/msg  {share:6.1%}")
    say()
    say(f"database jobs of the engine, {run.sent:,} messages sent:")
    for name, calls, seconds in found.db_jobs:
        per_call = seconds / calls * 1e6 if calls else 0.0
        say(
            f"  {name:<16} {calls:7,} calls, {run.sent / calls if calls else 0:6.1f} msgs per call,"
            f" {per_call:7,.0f} µs CPU per call (profiled)"
        )
    say()
    say("top functions by tottime (CPU seconds, both threads merged):")
    say(found.top)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--memory", action="store_true", help="peak RSS of the send process at N and N/10"
    )
    mode.add_argument("--profile", action="store_true", help="one end-to-end send under cProfile")
    mode.add_argument(
        "--scale", action="store_true", help="1, 2 and 4 sender processes on PostgreSQL"
    )
    mode.add_argument(
        "--clicks",
        action="store_true",
        help="only the click endpoint under wrk, against a bare one",
    )
    mode.add_argument(
        "--bounces", action="store_true", help="the bounce classifier on the real-report corpus"
    )
    mode.add_argument(
        "--studio",
        action="store_true",
        help="send rate of the same alert as a template folder and as a stored alert",
    )
    mode.add_argument(
        "--million",
        type=int,
        nargs="?",
        const=million.DEFAULT_N,
        metavar="N",
        help="import N supporters (1,000,000) with `mailer import`, send them one blast, DKIM on",
    )
    parser.add_argument(
        "--n",
        type=int,
        help="supporters: end to end (default 20,000), --memory (200,000), --profile (5,000),"
        " --clicks (5,000), --scale (20,000)",
    )
    parser.add_argument(
        "--seconds", type=int, help="duration of each wrk run of the click stage (default 10)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, two end-to-end runs: checks that every stage runs",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never install postfix or wrk with apt-get; go on without them",
    )
    args = parser.parse_args(argv)
    if args.bounces:
        return bounces.main([])
    sizes = SMOKE if args.smoke else QUICK if args.quick else Sizes()
    if args.n is not None:
        if args.n < 10:
            parser.error("--n must be at least 10")
        if args.clicks:
            sizes = replace(sizes, clicks_n=args.n)
        else:
            sizes = replace(sizes, n=args.n, memory_n=args.n, profile_n=args.n)
    if args.seconds is not None:
        if args.seconds < 1:
            parser.error("--seconds must be at least 1")
        sizes = replace(sizes, clicks_seconds=args.seconds)
    started = time.perf_counter()
    install = not args.no_install
    tools = header(sizes, smtp=not args.clicks, install=install)
    chosen: Callable[[Sizes, Tools | str, Path, bool], None] = run_default
    if args.memory:
        chosen = run_memory
    elif args.profile:
        chosen = run_profile
    elif args.clicks:
        chosen = run_clicks
    elif args.scale:
        chosen = run_scale
    elif args.studio:
        chosen = run_studio
    elif args.million is not None:
        chosen = lambda _sizes, tools, tmp, _install: million.run(args.million, tools, tmp)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        chosen(sizes, tools, Path(tmp), install)
    say(f"(bench took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

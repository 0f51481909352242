"""``python -m bench --million [N]``: a million supporters, imported and sent, as a user would.

Everything goes through the ``mailer`` command line, in child processes, from
a settings file that says only what a new installation must say (the relay,
the sender, the organization, the site, the secret key, DKIM) and leaves
``[sending]`` at its defaults:

1. a CSV of N synthetic supporters (1,000,000 unless N is given) is written
   and ``mailer import`` loads it into a fresh SQLite database: the import
   time and rate, the peak RSS of the importing process;
2. ``mailer blast create`` makes a blast of ``templates/executive-orders``
   to the list, and ``mailer blast send`` sends it into Postfix's
   ``smtp-sink`` on a free port of 127.0.0.1, DKIM on (a fresh RSA-2048
   key). While it runs, a thread of the bench reads ``VmHWM`` (the peak
   resident set, a high-water mark) of the send process and of every process
   under it (helper senders) from ``/proc`` every 0.2 s;
3. afterwards, from the database: the blast's own start and finish, the
   deliveries by state, and the moments the 1st, 10th, ... 100th percent of
   the ``sent`` deliveries were recorded (``sent_at``, read through its
   index), hence the rate over each tenth of the list; and the messages
   ``smtp-sink`` counted.

Printed: the import time and rate; the send time (the blast's start to its
finish, and the command's wall time with interpreter start-up, the
pre-send check and the audience snapshot), msg/s, the rate over the first
and the last tenth, the peak RSS of every process, and whether every
supporter got exactly one ``sent`` delivery and the receiver that many
messages. The targets (send under 10 minutes, every process under 200 MB,
the last tenth within 10% of the first) are printed as met or not met, never
asserted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    DKIM_DOMAIN,
    DKIM_SELECTOR,
    TEMPLATE,
    bench_sections,
    met,
    say,
    write_dkim_key,
    write_supporters_csv,
)
from bench.postfix import NullSmtp, Receiver, SmtpSink, Tools, free_port

DEFAULT_N = 1_000_000
LIST = "million"
BLAST = "million"
TARGET_SEND_S = 600.0  # the whole blast in under 10 minutes
TARGET_PEAK_MB = 200.0  # every process
TARGET_TENTHS = 0.10  # the last tenth's rate within 10% of the first's
SAMPLE_S = 0.2


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(folder: Path, port: int, dkim_key: Path) -> Path:
    """A settings file as a new user writes it: no ``[sending]`` section, DKIM on."""
    sections: dict[str, dict[str, Any]] = {
        "database": {"url": f"sqlite:///{folder.resolve()}/million.db"},
        **bench_sections(port, "https://act.example.org"),
        "dkim": {
            "private_key_file": str(dkim_key),
            "domain": DKIM_DOMAIN,
            "selector": DKIM_SELECTOR,
        },
    }
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            text = toml_string(value) if isinstance(value, str) else repr(value)
            lines.append(f"{key} = {text}")
    path = folder / "mailer.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def clean_env() -> dict[str, str]:
    """This environment without ``MAILER_*`` overrides: only the settings file applies."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}


# -- peak memory of a process tree ------------------------------------------------------


def _status_kb(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return None


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list, Linux 3.5+)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _label(pid: int) -> str:
    """What a process under the mailer command is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    code = " ".join(words[1:])
    if "resource_tracker" in code:  # multiprocessing's semaphore tracker
        return "multiprocessing resource tracker"
    if "spawn_main" in code:  # a process started with multiprocessing's spawn
        return "helper sender (multiprocessing spawn)"
    return " ".join(Path(w).name for w in words[:3])


@dataclass
class PeakWatch:
    """Polls ``VmHWM`` of ``root`` and all its descendants until stopped."""

    root: int
    root_label: str
    peaks_kb: dict[int, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PeakWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    def sample(self) -> None:
        todo = [self.root]
        while todo:
            pid = todo.pop()
            todo += _children(pid)
            kb = _status_kb(pid, "VmHWM:")
            if kb is None:
                continue
            if pid not in self.labels:
                self.labels[pid] = self.root_label if pid == self.root else _label(pid)
            self.peaks_kb[pid] = max(kb, self.peaks_kb.get(pid, 0))

    def lines(self) -> list[tuple[str, float]]:
        """(label, peak MB) of every process seen, the root first."""
        order = sorted(self.peaks_kb, key=lambda p: (p != self.root, p))
        return [(f"{self.labels[p]} (pid {p})", self.peaks_kb[p] / 1024) for p in order]


# -- running the mailer ------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    seconds: float
    cpu_s: float  # user + system of the process and the children it waited for
    peaks: list[tuple[str, float]]
    out: str
    err: str


def run_mailer(config: Path, *args: str, watch: bool = False) -> Ran:
    """``python -m mailer --config CONFIG ARGS`` in the config's folder; raises on failure."""
    command = [sys.executable, "-m", "mailer", "--config", str(config), *args]
    folder = config.parent
    out_path, err_path = folder / "out.log", folder / "err.log"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=folder, env=clean_env(), stdout=out, stderr=err)
        label = "mailer " + " ".join(a for a in args if not a.startswith("/"))[:40]
        peaks = PeakWatch(proc.pid, label).start() if watch else None
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if peaks is not None:
            peaks.stop()
    text_out = out_path.read_text(errors="replace")
    text_err = err_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(
            f"mailer {' '.join(args)} exit {proc.returncode}:\n{text_out[-2000:]}{text_err[-3000:]}"
        )
    return Ran(
        seconds=seconds,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peaks=peaks.lines() if peaks is not None else [],
        out=text_out,
        err=text_err,
    )


# -- reading the outcome -----------------------------------------------------------------


def _when(value: str | None) -> float:
    if not value:
        raise RuntimeError("a timestamp the blast should have is missing")
    return datetime.fromisoformat(value).timestamp()


@dataclass(frozen=True)
class Outcome:
    supporters: int
    counts: dict[str, int]
    started: float  # the blast's started_at (epoch seconds)
    finished: float
    marks: list[float]  # sent_at of the 0th, 10th, ..., 100th percent of the sent deliveries

    @property
    def sent(self) -> int:
        return self.counts.get("sent", 0)

    @property
    def send_s(self) -> float:
        return self.finished - self.started

    def tenth_rates(self) -> list[float]:
        """msg/s over each tenth of the sent deliveries, in the order they were recorded."""
        tenth = self.sent / 10
        rates = []
        for a, b in zip(self.marks, self.marks[1:], strict=False):
            rates.append(tenth / (b - a) if b > a else 0.0)
        return rates


def read_outcome(db_path: Path) -> Outcome:
    """The blast's figures, from a read-only connection (after the send)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (supporters,) = conn.execute("SELECT count(*) FROM supporter").fetchone()
        blast_id, started, finished = conn.execute(
            "SELECT id, started_at, finished_at FROM blast WHERE name = ?", (BLAST,)
        ).fetchone()
        counts = dict(
            conn.execute(
                "SELECT state, count(*) FROM delivery WHERE blast_id = ? GROUP BY state",
                (blast_id,),
            ).fetchall()
        )
        sent = counts.get("sent", 0)
        marks: list[float] = []
        if sent:
            # The k-th earliest sent_at through the index on sent_at (one blast in the file).
            positions = [min(sent - 1, sent * i // 10) for i in range(11)]
            for k in positions:
                (value,) = conn.execute(
                    "SELECT sent_at FROM delivery WHERE sent_at IS NOT NULL"
                    " ORDER BY sent_at LIMIT 1 OFFSET ?",
                    (k,),
                ).fetchone()
                marks.append(_when(value))
    finally:
        conn.close()
    return Outcome(
        supporters=supporters,
        counts={str(k): int(v) for k, v in counts.items() if v},
        started=_when(started),
        finished=_when(finished),
        marks=marks,
    )


# -- the mode ----------------------------------------------------------------------------


def run(n: int, tools: Tools | str, tmp: Path) -> None:
    say(f"million: {n:,} supporters through `mailer import`, then one blast through")
    say("  `mailer blast send` with the default [sending] settings and DKIM on (RSA-2048)")
    key = write_dkim_key(tmp / "dkim.pem")
    port = free_port()
    log = tmp / "receiver.log"
    receiver: Receiver = (
        SmtpSink(tools, port, log) if isinstance(tools, Tools) else NullSmtp(port, log)
    )
    config = write_config(tmp, port, key)
    csv_path = tmp / "supporters.csv"
    start = time.perf_counter()
    write_supporters_csv(csv_path, n)
    say(
        f"csv: {n:,} rows, {csv_path.stat().st_size / 1e6:,.1f} MB written in"
        f" {time.perf_counter() - start:.1f} s"
    )
    run_mailer(config, "init")

    imported = run_mailer(config, "import", str(csv_path), "--list", LIST, watch=True)
    import_peak = max((mb for _, mb in imported.peaks), default=0.0)
    say(
        f"import: `mailer import` {imported.seconds:,.1f} s, {n / imported.seconds:,.0f} rows/s"
        f" ({imported.seconds / n * 1e6:,.0f} ms per 1,000 rows; start-up included);"
        f" CPU {imported.cpu_s:,.1f} s; peak RSS {import_peak:.1f} MB"
    )
    csv_path.unlink()
    run_mailer(config, "blast", "create", BLAST, "-t", TEMPLATE, "-l", LIST)

    with receiver:
        say(f"receiver: {receiver.name} on 127.0.0.1:{port}")
        before, sink_cpu_before = receiver.received() or 0, receiver.cpu_s()
        sent = run_mailer(config, "blast", "send", BLAST, watch=True)
        sink_cpu_after = receiver.cpu_s()
        after = receiver.received()
    got = None if after is None else after - before
    outcome = read_outcome(tmp / "million.db")
    report(n, imported, sent, outcome, receiver.name, got, sink_cpu_before, sink_cpu_after)


def report(
    n: int,
    imported: Ran,
    sent: Ran,
    outcome: Outcome,
    receiver_name: str,
    got: int | None,
    sink_cpu_before: float | None,
    sink_cpu_after: float | None,
) -> None:
    progress = [line for line in sent.err.splitlines() if " done, " in line]
    if progress:
        say("progress lines of `mailer blast send` (stderr, every 5 s), first and last three:")
        shown = progress if len(progress) <= 6 else [*progress[:3], "...", *progress[-3:]]
        for line in shown:
            say(f"  {line}")
    rate = outcome.sent / outcome.send_s if outcome.send_s else 0.0
    say(
        f"send: blast started -> finished {outcome.send_s:,.1f} s"
        f" ({outcome.send_s / 60:.1f} min), {rate:,.0f} msg/s;"
        f" the command {sent.seconds:,.1f} s (start-up, check, audience snapshot included)"
    )
    tenths = outcome.tenth_rates()
    if tenths:
        say("  msg/s over each tenth of the list: " + ", ".join(f"{r:,.0f}" for r in tenths))
    busy = f"  cores busy: mailer processes {sent.cpu_s / sent.seconds:.2f}"
    if sink_cpu_before is not None and sink_cpu_after is not None:
        busy += f", {receiver_name} {(sink_cpu_after - sink_cpu_before) / sent.seconds:.2f}"
    say(busy + f" of {os.cpu_count()} (over the command's wall time)")
    say("  peak RSS (VmHWM, sampled every 0.2 s) of every process of the send:")
    for label, mb in sent.peaks:
        say(f"    {label:<60} {mb:7.1f} MB")
    say(f"  deliveries {outcome.counts}; supporters {outcome.supporters:,}")

    import_peak = max((mb for _, mb in imported.peaks), default=0.0)
    send_peak = max((mb for _, mb in sent.peaks), default=0.0)
    first, last = (tenths[0], tenths[-1]) if tenths else (0.0, 0.0)
    change = last / first - 1 if first else 0.0
    every = outcome.sent == n == outcome.supporters
    counted = "not counted" if got is None else f"{got:,}"
    line = "=" * 93
    say(line)
    say(f"million: N = {n:,}, {os.cpu_count()} CPUs, default [sending] settings, DKIM on")
    say(
        f"import   {imported.seconds:,.1f} s, {n / imported.seconds:,.0f} rows/s,"
        f" peak RSS {import_peak:.1f} MB"
    )
    say(
        f"send     {outcome.send_s:,.1f} s ({outcome.send_s / 60:.1f} min), {rate:,.0f} msg/s;"
        f" first tenth {first:,.0f} msg/s, last tenth {last:,.0f} msg/s ({change:+.1%})"
    )
    say(
        f"memory   peak RSS of {len(sent.peaks)} process(es) of the send:"
        f" {', '.join(f'{mb:.1f}' for _, mb in sent.peaks)} MB"
    )
    say(
        f"recorded {outcome.sent:,} deliveries sent of {n:,} supporters;"
        f" {receiver_name} received {counted}"
    )
    say(
        f"targets  send < {TARGET_SEND_S / 60:.0f} min: {met(outcome.send_s < TARGET_SEND_S)};"
        f" every process < {TARGET_PEAK_MB:.0f} MB: {met(0 < send_peak < TARGET_PEAK_MB)};"
        f" last tenth within {TARGET_TENTHS:.0%} of the first:"
        f" {met(first > 0 and abs(change) <= TARGET_TENTHS)};"
        f" every supporter sent and received once:"
        f" {met(every and (got is None or got == n))}"
    )
    if not every or (got is not None and got != n):
        say(f"MISMATCH: {outcome.sent:,} sent, {got} received, {n:,} supporters")
    say(line)


def main(argv: list[str]) -> int:
    """``python -m bench.million [N]``: the same as ``python -m bench --million [N]``."""
    from bench.__main__ import main as bench_main

    return bench_main(["--million", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

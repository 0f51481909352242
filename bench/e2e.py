"""The mailer end to end: CSV import, blast, and the real sending path into the receiver.

Two phases, each in a fresh process so that the peak RSS (``VmHWM``, a
high-water mark that never goes down) belongs to one phase only:

``python -m bench.e2e prepare DIR N``
    writes a CSV of N synthetic supporters, imports it into a new SQLite
    database in DIR and creates a draft blast of the template folder; imports
    the same folder as a stored alert (as `mailer template import` does) and
    creates a second draft blast of it to the same list; prints one JSON line.
``python -m bench.e2e send DIR PORT [--connections K] [--dkim-key PEM] [--profile] [--blast B]``
    sends the folder's blast (or blast ``B``) with :func:`mailer.blasts.send_now`
    into 127.0.0.1:PORT with the default settings (``--connections`` overrides
    ``[sending] connections``; ``--dkim-key`` turns DKIM on), timing only the send; prints
    one JSON line with the rate, the CPU time of the process and of its
    event-loop thread, and the peak RSS. ``--profile`` adds a CPU profile of
    both threads (:mod:`bench.cpuprofile`), which slows the run down.

A prepared database is sent from a fresh copy each time (:func:`send_copy`),
so the variants of one run (DKIM off and on, 4 or 16 connections) send the
same list from the same starting point without importing it again.

Where the time goes, honestly
=============================

With several SMTP connections in flight at once, wall-clock stopwatches
around ``SmtpTransport.deliver`` add up overlapping waits and say nothing
about cost. What is measured instead, in the send process:

* its CPU time (user + system, every thread) from ``getrusage``;
* the CPU time of its event-loop thread (``time.thread_time`` around
  ``send_now``, which runs the loop in the calling thread), the rest being
  the engine's database thread;
* the event-loop thread's CPU time inside ``AlertComposer.compose`` (it is
  synchronous, so a thread-CPU stopwatch around it is exact);
* by difference, the loop thread's CPU for everything else: aiosmtplib, the
  socket writes and reads, asyncio, the engine's scheduling.

The caller adds the receiver's own CPU time over the same interval.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    TEMPLATE,
    children_cpu_s,
    cpu_s,
    machine_busy_s,
    peak_rss_mb,
    settings_for,
    write_supporters_csv,
)

BLAST = "bench"  # the blast of the template folder (TEMPLATE)
STORED = f"{TEMPLATE}-stored"  # the same folder, imported as a stored alert
STUDIO_BLAST = "bench-stored"  # the blast of the stored alert, to the same list
LIST = "bench"
DB_FILE = "bench.db"
SEND_TIMEOUT_S = 3600


def _db_url(folder: Path) -> str:
    return f"sqlite:///{folder.resolve()}/{DB_FILE}"


def prepare(folder: Path, n: int) -> dict[str, Any]:
    from mailer.alerts.folders import import_folder
    from mailer.blasts import create_blast
    from mailer.store import open_database
    from mailer.supporters.importer import import_csv

    csv_path = folder / "supporters.csv"
    write_supporters_csv(csv_path, n)
    settings = settings_for(port=0)
    db = open_database(_db_url(folder), create=True)
    start = time.perf_counter()
    summary = import_csv(db, csv_path, LIST)
    import_s = time.perf_counter() - start
    blast = create_blast(db, settings, name=BLAST, template=TEMPLATE, list_names=[LIST])
    # The same content as a stored alert, as `mailer template import` stores it.
    import_folder(
        db,
        settings.templates_path() / TEMPLATE,
        layouts=settings.templates_path(),
        author="bench",
        name=STORED,
    )
    create_blast(db, settings, name=STUDIO_BLAST, template=STORED, list_names=[LIST])
    db.dispose()
    csv_path.unlink()
    return {
        "n": n,
        "added": summary.added,
        "rejected": summary.rejected,
        "import_s": import_s,
        "blast_id": blast.id,
        "import_peak_rss_mb": peak_rss_mb(),
    }


class Timeline:
    """A :class:`mailer.send.engine.Progress` that notes when each batch was recorded."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []  # (seconds since start, deliveries done)
        self._start = time.perf_counter()
        self._done = 0

    def start(self, total: int, done: int) -> None:
        self._start = time.perf_counter()
        self._done = done
        self.marks = [(0.0, done)]

    def advance(self, count: int) -> None:
        self._done += count
        self.marks.append((time.perf_counter() - self._start, self._done))

    def finish(self) -> None:
        pass

    def halves(self) -> tuple[float, float]:
        """msg/s over the first and the second half of the deliveries."""
        if len(self.marks) < 3:
            return 0.0, 0.0
        (t0, d0), (t2, d2) = self.marks[0], self.marks[-1]
        t1, d1 = min(self.marks, key=lambda m: abs(m[1] - (d0 + d2) / 2))
        first = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        second = (d2 - d1) / (t2 - t1) if t2 > t1 else 0.0
        return first, second


class ComposeClock:
    """CPU seconds of the calling thread spent in ``AlertComposer.compose`` during the send.

    ``compose`` is synchronous and runs on the event-loop thread, so
    ``time.thread_time`` around it counts exactly its own CPU, even while
    other connections' messages are on the wire.
    """

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def install(self) -> None:
        from mailer.compose.alert import AlertComposer, Composed, Recipient

        compose = AlertComposer.compose

        def timed_compose(composer: AlertComposer, delivery_id: int, r: Recipient) -> Composed:
            start = time.thread_time()
            try:
                return compose(composer, delivery_id, r)
            finally:
                self.cpu_s += time.thread_time() - start

        AlertComposer.compose = timed_compose  # type: ignore[method-assign,assignment]


def send(
    folder: Path,
    port: int,
    *,
    connections: int | None = None,
    dkim_key: Path | None = None,
    profile: bool = False,
    processes: int | None = None,
    blast: str = BLAST,
) -> dict[str, Any]:
    from bench.cpuprofile import ThreadProfiles, report
    from mailer.blasts import send_now
    from mailer.send.policy import connections_for
    from mailer.send.processes import processes_for
    from mailer.store import find_blast, open_database

    settings = settings_for(port, connections=connections, dkim_key=dkim_key, processes=processes)
    db = open_database(_db_url(folder))
    with db.session() as session:  # how many sender processes the settings come to
        senders = processes_for(db, settings.sending.processes, find_blast(session, BLAST))
    clock = ComposeClock()
    clock.install()
    profiles = ThreadProfiles() if profile else None
    if profiles is not None:
        profiles.install()
    baseline = peak_rss_mb()
    timeline = Timeline()
    cpu_before, loop_before, helpers_before = cpu_s(), time.thread_time(), children_cpu_s()
    machine_before = machine_busy_s()
    start = time.perf_counter()
    with profiles if profiles is not None else contextlib.nullcontext():
        result = send_now(db, settings, blast, progress=timeline)
    send_s = time.perf_counter() - start
    machine_after = machine_busy_s()
    loop_cpu_s, process_cpu_s = time.thread_time() - loop_before, cpu_s() - cpu_before
    helpers_cpu_s = children_cpu_s() - helpers_before
    first_half, second_half = timeline.halves()
    peak = peak_rss_mb()
    db.dispose()
    out: dict[str, Any] = {
        "connections": connections_for(settings.sending.connections, senders),
        "processes": senders,
        "default": connections is None and processes is None,
        "helpers_cpu_s": helpers_cpu_s,
        "machine_busy_s": None
        if machine_before is None or machine_after is None
        else machine_after - machine_before,
        "dkim": dkim_key is not None,
        "send_s": send_s,
        "compose_cpu_s": clock.cpu_s,
        "loop_cpu_s": loop_cpu_s,
        "cpu_s": process_cpu_s,
        "counts": {k: v for k, v in result.counts.items() if v},
        "status": str(result.status),
        "error": result.error,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "first_half_rate": first_half,
        "second_half_rate": second_half,
    }
    if profiles is not None:
        found = report(profiles)
        out["profile"] = {
            "top": found.top,
            "owners": found.owners,
            "loop_cpu_s": found.loop_cpu_s,
            "other_threads_cpu_s": found.other_threads_cpu_s,
            "db_jobs": found.db_jobs,
        }
    return out


@dataclass(frozen=True)
class Prepared:
    """A database holding one imported list and a draft blast, ready to be copied and sent."""

    folder: Path
    n: int
    added: int
    import_s: float
    import_peak_rss_mb: float

    @property
    def import_per_1000_s(self) -> float:
        return self.import_s / self.n * 1000


@dataclass(frozen=True)
class Profile:
    top: str
    owners: list[tuple[str, float]]
    loop_cpu_s: float
    other_threads_cpu_s: float
    db_jobs: list[tuple[str, int, float]]  # (what, calls, cumulative CPU s)


@dataclass(frozen=True)
class EndToEnd:
    n: int
    connections: int
    dkim: bool
    send_s: float
    compose_cpu_s: float  # CPU of the event-loop thread inside AlertComposer.compose
    loop_cpu_s: float  # CPU of the event-loop thread, all of it
    cpu_s: float  # CPU of the send process, every thread
    sent: int
    counts: dict[str, int]
    status: str
    error: str
    baseline_rss_mb: float
    peak_rss_mb: float
    first_half_rate: float
    second_half_rate: float
    processes: int = 1
    default: bool = False  # sent with the default [sending] settings
    helpers_cpu_s: float = 0.0  # CPU of the helper sender processes (processes > 1)
    receiver_cpu_s: float | None = None  # the receiver's CPU over the send, added by the caller
    machine_busy_s: float | None = None  # the whole machine's busy CPU over the send, kernel too
    profile: Profile | None = field(default=None, repr=False)

    @property
    def rate(self) -> float:
        return self.sent / self.send_s if self.send_s else 0.0

    @property
    def db_cpu_s(self) -> float:
        """CPU of the threads other than the event loop: the engine's database thread."""
        return max(0.0, self.cpu_s - self.loop_cpu_s)

    def per_message_us(self, seconds: float) -> float:
        return seconds / self.sent * 1e6 if self.sent else 0.0

    @property
    def all_cpu_s(self) -> float:
        """CPU of every sender process: this one and its helpers."""
        return self.cpu_s + self.helpers_cpu_s

    def label(self) -> str:
        procs = f"{self.processes} proc{'s' if self.processes > 1 else ''}"
        what = f"{procs} x {self.connections} conns"
        return f"{what}{' (default)' if self.default else ''}, DKIM {'on' if self.dkim else 'off'}"


def _child(*args: str, timeout: float = SEND_TIMEOUT_S) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.e2e", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.e2e {' '.join(args)} failed:\n{done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def prepare_list(parent: Path, n: int) -> Prepared:
    """Import ``n`` supporters into a new database in a new folder under ``parent``."""
    folder = Path(tempfile.mkdtemp(prefix=f"list-{n}-", dir=parent))
    prepared = _child("prepare", str(folder), str(n))
    return Prepared(
        folder=folder,
        n=n,
        added=prepared["added"],
        import_s=prepared["import_s"],
        import_peak_rss_mb=prepared["import_peak_rss_mb"],
    )


def send_copy(
    prepared: Prepared,
    port: int,
    *,
    connections: int | None = None,
    dkim_key: Path | None = None,
    profile: bool = False,
    processes: int | None = None,
    blast: str = BLAST,
) -> EndToEnd:
    """Send ``blast`` (the folder template's, or ``STUDIO_BLAST``: the stored alert's)
    of a fresh copy of ``prepared``'s database, in a subprocess."""
    folder = Path(tempfile.mkdtemp(prefix="send-", dir=prepared.folder.parent))
    try:
        for path in prepared.folder.glob(DB_FILE + "*"):  # the database, and any -wal/-shm
            shutil.copy2(path, folder / path.name)
        args = ["send", str(folder), str(port)]
        if connections is not None:
            args += ["--connections", str(connections)]
        if dkim_key is not None:
            args += ["--dkim-key", str(dkim_key)]
        if profile:
            args.append("--profile")
        if processes is not None:
            args += ["--processes", str(processes)]
        if blast != BLAST:
            args += ["--blast", blast]
        sent = _child(*args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    counts: dict[str, int] = sent["counts"]
    found = sent.get("profile")
    return EndToEnd(
        n=prepared.n,
        connections=sent["connections"],
        processes=sent["processes"],
        default=sent["default"],
        helpers_cpu_s=sent["helpers_cpu_s"],
        machine_busy_s=sent.get("machine_busy_s"),
        dkim=sent["dkim"],
        send_s=sent["send_s"],
        compose_cpu_s=sent["compose_cpu_s"],
        loop_cpu_s=sent["loop_cpu_s"],
        cpu_s=sent["cpu_s"],
        sent=counts.get("sent", 0),
        counts=counts,
        status=sent["status"],
        error=sent["error"],
        baseline_rss_mb=sent["baseline_rss_mb"],
        peak_rss_mb=sent["peak_rss_mb"],
        first_half_rate=sent["first_half_rate"],
        second_half_rate=sent["second_half_rate"],
        profile=None
        if found is None
        else Profile(
            top=found["top"],
            owners=[(name, seconds) for name, seconds in found["owners"]],
            loop_cpu_s=found["loop_cpu_s"],
            other_threads_cpu_s=found["other_threads_cpu_s"],
            db_jobs=[(name, calls, seconds) for name, calls, seconds in found["db_jobs"]],
        ),
    )


def run(n: int, port: int) -> EndToEnd:
    """Prepare and send ``n`` recipients with the default settings, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        return send_copy(prepare_list(Path(tmp), n), port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("folder", type=Path)
    prep.add_argument("n", type=int)
    snd = commands.add_parser("send")
    snd.add_argument("folder", type=Path)
    snd.add_argument("port", type=int)
    snd.add_argument("--connections", type=int)
    snd.add_argument("--dkim-key", type=Path)
    snd.add_argument("--profile", action="store_true")
    snd.add_argument("--processes", type=int)
    snd.add_argument("--blast", default=BLAST)
    both = commands.add_parser("run")
    both.add_argument("n", type=int)
    both.add_argument("port", type=int)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(json.dumps(prepare(args.folder, args.n)))
    elif args.command == "send":
        found = send(
            args.folder,
            args.port,
            connections=args.connections,
            dkim_key=args.dkim_key,
            profile=args.profile,
            processes=args.processes,
            blast=args.blast,
        )
        print(json.dumps(found))
    else:
        print(json.dumps(asdict(run(args.n, args.port)), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

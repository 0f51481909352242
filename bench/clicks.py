"""Click tracking under load: the real ``GET /c/<token>`` against a bare redirect, with wrk.

What is measured (``python -m bench --clicks``; also part of ``make bench``):

prepare
    N synthetic supporters (5,000) imported into a fresh SQLite database and a
    blast created, as for the end-to-end stage (:func:`bench.e2e.prepare_list`);
    then one ``sent`` delivery per supporter, sent an hour ago (so no click is
    a suspected link scanner), and each delivery's message composed by the
    real composer (:func:`mailer.assemble.composer_for`), which records the
    blast's links. The ``/c/<token>`` paths found in the composed messages
    (one per distinct link and delivery) are shuffled into a file.
load
    ``wrk -t2 -c32 -d10s --latency`` with a Lua script that cycles through
    those paths (each wrk thread from its own place) and counts responses by
    status. Before each run a few hundred requests go one at a time, to warm
    the server up; they are not part of the figures.
bare
    the ceiling: the same wrk run against a Starlette app with one route,
    ``/c/{token}``, answering ``302`` with no database, served by uvicorn the
    same way (:mod:`bench.clickserver`: a separate process, one worker,
    ``log_level="warning"``).
real
    the mailer's app (:func:`mailer.web.app_for`) on the prepared database.
    Each request verifies the token, reads the delivery and the link, hands
    the click to the group-commit writer and is answered ``302`` only once
    the click is committed. After the run the server gets SIGTERM; uvicorn
    finishes the requests in hand and the writer drains before the process
    exits. Then the ``click`` rows added during the run are counted and
    compared with the ``302`` responses wrk counted: fewer rows than
    redirects are lost clicks. A few more rows than redirects are expected:
    requests the server was answering when wrk stopped counting (at most one
    per connection).
real, kept on one CPU
    the real app again (half as long) with its whole process, every thread,
    on one CPU (``sched_setaffinity``): how much of its cost is threads
    handing one GIL back and forth between cores.
bare, handler in the thread pool
    the bare app again (half as long) with a plain-function handler, which
    Starlette runs in its thread pool, as a sync click handler would run: the
    cost of that hop alone, without the database.
steps
    each step of the click path in a single-threaded loop (token, the
    session reading delivery and link, the ``Click`` row, a new SQLite
    connection, a commit of 1 and of 10 clicks).

For each run it prints requests per second, p50/p99 latency, responses by
status and socket errors, and the CPU the server's event-loop thread, its
other threads and wrk used per request (from ``/proc``), with the click
writer's transactions (clicks per commit, CPU per click) for the real app.
The ratio of the real app to the bare one is the figure to read; the issue's
target is at least 0.5 of the ceiling with no lost click.

wrk is installed with apt-get when missing (unless ``--no-install``); without it the
stage is skipped.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench import e2e
from bench.common import met, say
from bench.postfix import HOST, Receiver, free_port

THREADS = 2
CONNECTIONS = 32
WARM_UP_REQUESTS = 300
TARGET_OF_BARE = 0.5  # the target: at least this fraction of the bare ceiling ...
# ... with zero lost clicks.
STOP_TIMEOUT_S = 60.0
_TOKEN_PATH = re.compile(r"/c/[A-Za-z0-9_-]+")
_DONE = re.compile(r"^bench-clicks (.*)$", re.MULTILINE)
_STATUS = re.compile(r"^bench-clicks-status (\d+) (\d+)$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s*([\d.]+)", re.MULTILINE)

LUA = """\
-- Written by bench/clicks.py: cycle through the click paths, count responses by status.
local paths_file = [==[{paths}]==]
local threads = {{}}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prepared = {{}}
  for path in io.lines(paths_file) do
    prepared[#prepared + 1] = wrk.format("GET", path)
  end
  count = #prepared
  at = math.floor(id * count / {threads}) % count
  statuses = {{}}
end

function request()
  at = at % count + 1
  return prepared[at]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    "bench-clicks requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d"
      .. " p50_us=%d p90_us=%d p99_us=%d max_us=%d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      io.write(string.format("bench-clicks-status %d %d\\n", status, n))
    end
  end
end
"""


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# -- wrk ---------------------------------------------------------------------------------


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        ["apt-get", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def ensure_wrk(*, log: bool = True, install: bool = True) -> Path | str:
    """wrk, installing the Debian package when missing and ``install``; or why it is unavailable."""
    found = shutil.which("wrk")
    if found:
        return Path(found)
    if not install:
        return "wrk missing (not installed: --no-install)"
    if os.geteuid() != 0:
        return "wrk missing and not running as root, so it cannot be installed"
    if shutil.which("apt-get") is None:
        return "wrk missing and there is no apt-get to install it with"
    if log:
        say("installing wrk with apt-get ...")
    command = ["install", "-y", "--no-install-recommends", "wrk"]
    try:
        done = _apt(command)
        if done.returncode != 0:
            _apt(["update"])
            done = _apt(command)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing wrk failed: {exc}"
    found = shutil.which("wrk")
    if found:
        return Path(found)
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return "installing wrk failed: " + (" | ".join(tail) or f"apt-get exit {done.returncode}")


@dataclass(frozen=True)
class Load:
    """What one wrk run reported."""

    requests: int
    seconds: float
    statuses: dict[int, int]
    errors: dict[str, int]  # connect, read, write, timeout; "status" is any status >= 400
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    wrk_rps: float  # wrk's own "Requests/sec" line, for comparison
    wrk_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def redirects(self) -> int:
        return self.statuses.get(302, 0)

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")


def write_script(folder: Path, paths_file: Path) -> Path:
    script = folder / "clicks.lua"
    script.write_text(LUA.format(paths=paths_file.resolve(), threads=THREADS))
    return script


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(wrk: Path, port: int, script: Path, seconds: int, log: Path) -> Load:
    args = [
        str(wrk),
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        f"http://{HOST}:{port}/",
    ]
    cpu_before = children_cpu_s()
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, check=False)
    wrk_cpu_s = children_cpu_s() - cpu_before
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    found = _DONE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"wrk exit {done.returncode}: {(done.stderr or done.stdout).strip()}")
    fields = {k: int(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    statuses: dict[int, int] = {}
    for status, n in _STATUS.findall(done.stdout):
        statuses[int(status)] = statuses.get(int(status), 0) + int(n)
    rps = _RPS.search(done.stdout)
    return Load(
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        statuses=statuses,
        errors={k: fields[k] for k in ("connect", "read", "write", "timeout", "status")},
        p50_ms=fields["p50_us"] / 1000,
        p90_ms=fields["p90_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        max_ms=fields["max_us"] / 1000,
        wrk_rps=float(rps.group(1)) if rps else 0.0,
        wrk_cpu_s=wrk_cpu_s,
    )


# -- the database and the tokens ---------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    db_path: Path
    deliveries: int
    links: int
    paths_file: Path
    paths: list[str]
    seconds: float


def prepare(parent: Path, n: int) -> Prepared:
    """A database with a blast sent to ``n`` supporters, and the click paths of its messages."""
    from sqlmodel import select

    from bench.common import settings_for
    from mailer.assemble import composer_for
    from mailer.compose.alert import Recipient
    from mailer.store import (
        BlastStatus,
        Delivery,
        DeliveryState,
        Link,
        Supporter,
        find_blast,
        open_database,
    )
    from mailer.store.models import utcnow

    start = time.perf_counter()
    listed = e2e.prepare_list(parent, n)
    db_path = listed.folder / e2e.DB_FILE
    db = open_database(f"sqlite:///{db_path.resolve()}")
    sent_at = utcnow() - timedelta(hours=1)
    with db.session() as session:
        blast = find_blast(session, e2e.BLAST)
        assert blast.id is not None
        supporters = list(session.exec(select(Supporter).order_by(Supporter.id)))  # type: ignore[arg-type]
        deliveries = [
            Delivery(
                blast_id=blast.id,
                supporter_id=s.id,
                state=DeliveryState.SENT,
                attempts=1,
                created_at=sent_at,
                updated_at=sent_at,
                sent_at=sent_at,
            )
            for s in supporters
            if s.id is not None
        ]
        session.add_all(deliveries)
        blast.status = BlastStatus.DONE
        blast.started_at = blast.finished_at = sent_at
        session.add(blast)
    composer = composer_for(db, settings_for(port=0), blast)
    paths: list[str] = []
    for delivery, s in zip(deliveries, supporters, strict=True):
        assert delivery.id is not None
        recipient = Recipient(
            email=s.email,
            first_name=s.first_name,
            last_name=s.last_name,
            zip=s.zip,
            region=s.region,
            language=s.language,
        )
        alert = composer.compose(delivery.id, recipient).alert
        paths.extend(sorted(set(_TOKEN_PATH.findall(alert.html + "\n" + alert.text))))
    with db.session() as session:
        links = len(list(session.exec(select(Link).where(Link.blast_id == blast.id))))
    db.dispose()
    random.Random(1).shuffle(paths)
    paths_file = parent / "click-paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    return Prepared(
        db_path=db_path,
        deliveries=len(deliveries),
        links=links,
        paths_file=paths_file,
        paths=paths,
        seconds=time.perf_counter() - start,
    )


def stored_clicks(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        # A row counts the replays of its link (tracking.click_dedup_window).
        (count,) = conn.execute("SELECT coalesce(sum(clicks), 0) FROM click").fetchone()
    conn.close()
    return int(count)


# -- the servers -------------------------------------------------------------------------


class AppServer(Receiver):
    """``python -m bench.clickserver ...`` as a subprocess, listening on 127.0.0.1:``port``."""

    def __init__(self, name: str, args: list[str], port: int, log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "bench.clickserver", *args], port, log_path)
        self.name = name

    def __enter__(self) -> AppServer:
        super().__enter__()
        return self

    def threads_cpu_s(self) -> tuple[float, float] | None:
        """CPU seconds so far of the event-loop (main) thread, and of the whole process."""
        proc = self._proc
        if proc is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        main = every = 0.0
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            every += cpu
            if task.name == str(proc.pid):
                main = cpu
        return main, every

    def stop(self) -> int | None:
        """SIGTERM, then wait for a graceful exit; the exit code (None if it had to be killed)."""
        proc = self._proc
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.close()
            return None
        self._proc = None
        return code


def warm_up(port: int, paths: list[str]) -> dict[int, int]:
    """Requests one at a time over one connection; the count of each status."""
    statuses: dict[int, int] = {}
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
    finally:
        conn.close()
    return statuses


@dataclass(frozen=True)
class Run:
    label: str
    load: Load
    loop_cpu_s: float  # the server's event-loop thread during the wrk run
    cpu_s: float  # the whole server process during the wrk run
    # the real app only:
    stored: int | None = None  # click rows added during the wrk run
    commits: int | None = None  # the writer's transactions during the run
    writer_cpu_s: float | None = None
    largest_commit: int | None = None
    connects: int | None = None  # new database connections opened during the run
    exit_code: int | None = None

    def per_request_us(self, seconds: float) -> float:
        return seconds / self.load.requests * 1e6 if self.load.requests else 0.0

    @property
    def lost(self) -> int | None:
        return None if self.stored is None else max(0, self.load.redirects - self.stored)


def _warm(server: AppServer, prepared: Prepared) -> None:
    warm = warm_up(server.port, prepared.paths[-WARM_UP_REQUESTS:])
    if set(warm) != {302}:
        raise RuntimeError(f"{server.name}: warm-up answered {warm}, expected only 302")


def _load(
    server: AppServer, wrk: Path, script: Path, seconds: int, log: Path
) -> tuple[Load, float, float]:
    """One wrk run; with the server's event-loop thread's and whole process's CPU over it."""
    before = server.threads_cpu_s()
    load = run_wrk(wrk, server.port, script, seconds, log)
    after = server.threads_cpu_s()
    loop_cpu = every_cpu = 0.0
    if before is not None and after is not None:
        loop_cpu, every_cpu = after[0] - before[0], after[1] - before[1]
    return load, loop_cpu, every_cpu


def run_bare(
    wrk: Path, script: Path, prepared: Prepared, seconds: int, tmp: Path, *, sync: bool
) -> Run:
    port = free_port()
    label = "bare redirect, handler in the thread pool" if sync else "bare redirect (ceiling)"
    args = ["bare", str(port), *(["--sync"] if sync else [])]
    with AppServer(label, args, port, tmp / "bare-server.log") as server:
        _warm(server, prepared)
        load, loop_cpu, cpu = _load(server, wrk, script, seconds, tmp / "wrk.log")
        code = server.stop()
    return Run(label, load, loop_cpu, cpu, exit_code=code)


def run_real(
    wrk: Path, script: Path, prepared: Prepared, seconds: int, tmp: Path, *, cpu: int | None = None
) -> Run:
    port = free_port()
    stats_path = tmp / "click-writer.json"
    stats_path.unlink(missing_ok=True)
    url = f"sqlite:///{prepared.db_path.resolve()}"
    args = ["real", url, str(port), str(stats_path)]
    label = "mailer click endpoint"
    if cpu is not None:
        args += ["--cpu", str(cpu)]
        label += f", server pinned to CPU {cpu}"
    with AppServer(label, args, port, tmp / "real-server.log") as server:
        _warm(server, prepared)  # one request at a time: each click is committed before its 302
        before = stored_clicks(prepared.db_path)
        started = time.time()
        load, loop_cpu, cpu_s = _load(server, wrk, script, seconds, tmp / "wrk.log")
        code = server.stop()  # the writer drains before the process exits
    stored = stored_clicks(prepared.db_path) - before
    # The writer's commits, each [wall-clock time, clicks, writer thread CPU s], since wrk began.
    commits, connects = [], []
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        commits = [c for c in stats["commits"] if c[0] >= started]
        connects = [t for t in stats["connects"] if t >= started]
    return Run(
        label,
        load,
        loop_cpu,
        cpu_s,
        stored=stored,
        commits=len(commits),
        writer_cpu_s=sum(c[2] for c in commits),
        largest_commit=max((c[1] for c in commits), default=0),
        connects=len(connects),
        exit_code=code,
    )


def handler_steps(prepared: Prepared, iterations: int) -> list[tuple[str, float]]:
    """µs per call of each step of the click path on its own, one thread, no HTTP.

    Runs after the load runs, on the same database (the clicks it stores come
    after the counting).
    """
    from bench.common import per_call_us, settings_for
    from mailer.compose.tokens import TokenSigner
    from mailer.store import Click, Delivery, Link, open_database
    from mailer.store.models import utcnow

    db = open_database(f"sqlite:///{prepared.db_path.resolve()}")
    signer = TokenSigner(settings_for(port=0).security.secret_key)
    raw = [path.rsplit("/", 1)[1] for path in prepared.paths]
    tokens = [signer.read_click(t) for t in raw]
    now = utcnow()
    with db.session() as session:
        link = session.get(Link, tokens[0].link_id)
    assert link is not None
    blast_id = link.blast_id

    def read(i: int) -> None:
        token = tokens[i % len(tokens)]
        with db.session() as session:
            session.get(Delivery, token.delivery_id)
            session.get(Link, token.link_id)

    def click(i: int) -> Click:
        token = tokens[i % len(tokens)]
        return Click(
            blast_id=blast_id, delivery_id=token.delivery_id, link_id=token.link_id, clicked_at=now
        )

    def store(count: int) -> Callable[[int], None]:
        def stored(i: int) -> None:
            with db.session() as session:
                session.add_all([click(i * count + j) for j in range(count)])

        return stored

    def connect(i: int) -> None:
        db.engine.dispose()  # so the next checkout opens a new connection, as pool overflow does
        with db.engine.connect():
            pass

    batch = 10
    steps = [
        (
            "verify the token (HMAC-SHA256)",
            per_call_us(lambda i: signer.read_click(raw[i % len(raw)]), iterations),
        ),
        ("a session reading the delivery and the link (ORM)", per_call_us(read, iterations)),
        ("build the Click row (SQLModel)", per_call_us(click, iterations)),
        ("open a new SQLite connection (with its PRAGMAs)", per_call_us(connect, iterations // 4)),
        ("store 1 click in its own transaction", per_call_us(store(1), iterations // 4)),
        (
            f"store {batch} clicks in one transaction, per click",
            per_call_us(store(batch), iterations // (4 * batch)) / batch,
        ),
    ]
    db.dispose()
    return steps


# -- the stage ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    prepared: Prepared
    seconds: int
    bare: Run
    real: Run
    bare_sync: Run
    pinned: Run | None  # the real app again, its process kept on one CPU
    steps: list[tuple[str, float]]  # (what, µs per call) of the click path in isolation

    @property
    def ratio(self) -> float:
        return ratio(self.real.load.rps, self.bare.load.rps)

    def summary_lines(self) -> list[str]:
        real, bare = self.real, self.bare
        stored = real.stored or 0
        extra = max(0, stored - real.load.redirects)
        pinned = []
        if self.pinned is not None:
            load = self.pinned.load
            pinned = [
                f"  real, server kept on one CPU: {load.rps:,.0f} req/s (p50 {load.p50_ms:.1f} ms,"
                f" p99 {load.p99_ms:.1f} ms), {ratio(load.rps, bare.load.rps):.2f} of bare;"
                f" lost clicks: {self.pinned.lost}"
            ]
        return [
            f"clicks: wrk -t{THREADS} -c{CONNECTIONS} -d{self.seconds}s over"
            f" {len(self.prepared.paths):,} tokens of {self.prepared.deliveries:,} deliveries",
            f"  real {real.load.rps:,.0f} req/s (p50 {real.load.p50_ms:.1f} ms,"
            f" p99 {real.load.p99_ms:.1f} ms); bare {bare.load.rps:,.0f} req/s"
            f" (p50 {bare.load.p50_ms:.1f} ms, p99 {bare.load.p99_ms:.1f} ms);"
            f" ratio {self.ratio:.2f}",
            f"  302s {real.load.redirects:,}, clicks stored {stored:,}"
            f" (+{extra} answered after wrk stopped counting); lost clicks: {real.lost}",
            *pinned,
            f"targets (clicks): >= {TARGET_OF_BARE:.0%} of the bare ceiling:"
            f" {met(self.ratio >= TARGET_OF_BARE)} ({self.ratio:.2f});"
            f" zero lost clicks: {met(real.lost == 0)} ({real.lost})",
        ]


def report(run: Run) -> None:
    load = run.load
    say(
        f"  {load.requests:,} requests in {load.seconds:.2f} s: {load.rps:,.0f} req/s"
        f" (wrk: {load.wrk_rps:,.0f}); latency p50 {load.p50_ms:.2f} ms, p90 {load.p90_ms:.2f},"
        f" p99 {load.p99_ms:.2f}, max {load.max_ms:.1f}"
    )
    statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(load.statuses.items()))
    errors = ", ".join(f"{k} {v}" for k, v in load.errors.items() if k != "status")
    say(
        f"  responses by status {{{statuses}}}; non-2xx/3xx {load.errors['status']};"
        f" socket errors {load.socket_errors} ({errors})"
    )
    us = run.per_request_us
    say(
        f"  CPU per request: server {us(run.cpu_s):,.0f} µs = event-loop thread"
        f" {us(run.loop_cpu_s):,.0f} + other threads {us(run.cpu_s - run.loop_cpu_s):,.0f};"
        f" wrk {us(load.wrk_cpu_s):,.0f} µs"
    )
    say(
        f"  cores busy: server {run.cpu_s / load.seconds:.2f}"
        f" (event loop {run.loop_cpu_s / load.seconds:.2f}),"
        f" wrk {load.wrk_cpu_s / load.seconds:.2f} of {os.cpu_count()}"
    )
    if run.exit_code != 0:
        say(f"  SERVER EXIT {run.exit_code} (see its log)")


def report_real(run: Run) -> None:
    report(run)
    stored = run.stored or 0
    redirects = run.load.redirects
    commits = run.commits or 0
    if commits:
        writer = run.writer_cpu_s or 0.0
        say(
            f"  click writer: {commits:,} commits, {stored / commits:.1f} clicks per commit"
            f" (largest {run.largest_commit}); writer thread CPU {writer / stored * 1e6:,.0f} µs"
            f" per click, {writer / run.load.seconds:.2f} of a core"
        )
    if run.connects is not None:
        say(
            f"  new SQLite connections opened during the run: {run.connects:,}"
            f" ({run.connects / run.load.requests if run.load.requests else 0:.2f} per request)"
        )
    say(
        f"  302 responses counted by wrk: {redirects:,}; clicks stored during the run:"
        f" {stored:,} (difference {stored - redirects:+,}: requests in flight when wrk stopped"
        f" counting, at most {CONNECTIONS})"
    )
    say(f"  lost clicks: {run.lost}")


def measure(
    tmp: Path,
    n: int,
    seconds: int,
    *,
    install: bool = True,
    short_seconds: int | None = None,
    iterations: int = 2_000,
) -> Result | None:
    """The whole stage; None when wrk cannot be had (or is missing and ``install`` is off).

    ``seconds`` is each main wrk run, ``short_seconds`` each of the two runs that
    look for the limit (half as long, at least 2 s, by default), ``iterations``
    the loops of the handler's steps in isolation.
    """
    wrk = ensure_wrk(install=install)
    if isinstance(wrk, str):
        say(f"CLICKS NOT MEASURED: {wrk}")
        return None
    folder = tmp / "clicks"
    folder.mkdir(exist_ok=True)
    say(f"clicks: {n:,} supporters, a blast sent to them an hour ago, its messages composed")
    prepared = prepare(folder, n)
    say(
        f"  {prepared.deliveries:,} deliveries, {prepared.links} links,"
        f" {len(prepared.paths):,} distinct click paths in {prepared.seconds:.1f} s"
    )
    script = write_script(folder, prepared.paths_file)
    say(
        f"  wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s --latency, cycling through the paths;"
        f" uvicorn, 1 worker, log_level warning; {WARM_UP_REQUESTS} warm-up requests first"
    )
    say("bare redirect (the ceiling): Starlette, one async route, 302, no database")
    bare = run_bare(wrk, script, prepared, seconds, folder, sync=False)
    report(bare)
    say("mailer click endpoint: verify token, read delivery and link, group-commit the click, 302")
    real = run_real(wrk, script, prepared, seconds, folder)
    report_real(real)
    short = short_seconds or max(2, seconds // 2)
    pinned = None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        say(
            f"mailer click endpoint again, its server process (every thread) kept on CPU"
            f" {cpus[-1]} with sched_setaffinity; wrk -d{short}s"
        )
        pinned = run_real(wrk, script, prepared, short, folder, cpu=cpus[-1])
        report_real(pinned)
    say(f"bare redirect with its handler in the thread pool (a sync handler); -d{short}s")
    bare_sync = run_bare(wrk, script, prepared, short, folder, sync=True)
    report(bare_sync)
    say(f"the click path's steps in isolation, loops of {iterations:,} (one thread, no HTTP)")
    steps = handler_steps(prepared, iterations)
    for name, us in steps:
        say(f"  {name:<55} {us:8,.0f} µs")
    result = Result(prepared, seconds, bare, real, bare_sync, pinned, steps)
    pinned_ratio = (
        ""
        if pinned is None
        else f"; pinned real / bare {ratio(pinned.load.rps, bare.load.rps):.2f}"
    )
    say(
        f"  real / bare: {result.ratio:.2f}{pinned_ratio};"
        f" thread-pool bare / bare: {ratio(bare_sync.load.rps, bare.load.rps):.2f}"
    )
    return result

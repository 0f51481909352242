"""A CPU profile of the send process: cProfile on both of its threads, split by owner.

The sending engine runs on two threads: the event loop (composing, the SMTP
client, asyncio itself) and one database thread (claims, marks, records). A
plain ``cProfile`` run sees only the thread that enabled it, and its default
timer is the wall clock, which on the event-loop thread counts time spent
idle in ``epoll`` waiting for the relay. Here each thread gets its own
profiler timed by :func:`time.thread_time` (CPU time of that thread), and the
two are merged, so ``tottime`` is CPU time.

The merged profile is then split by *owner*: each function is attributed to
a part of the work by where its code lives (Jinja, the link rewriter and
tokens, the MIME builder, DKIM, aiosmtplib, SQLAlchemy, sqlite3's own calls, asyncio,
...). Functions that belong to no part by themselves (built-ins such as
``re.Pattern.sub``, stdlib helpers such as ``base64``) inherit the owners of
their callers in proportion to the time each caller spent in them, so
aiosmtplib's dot-stuffing regex counts as aiosmtplib and DKIM's as DKIM.

Profiling slows pure-Python code much more than C code (every call is an
event), so the shares are indicative: Jinja, SQLAlchemy and asyncio look
heavier under the profiler than they are without it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import REPO, TEMPLATES

Func = tuple[str, int, str]  # (file, line, function name), as pstats keys them

# (owner, substrings of the file path); the first match wins, so order matters.
_FILE_OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Jinja render", (str(TEMPLATES), "/jinja2/", "/markupsafe/", "mailer/compose/templates.py")),
    (
        "links + tokens",
        ("mailer/compose/links.py", "mailer/compose/tokens.py", "mailer/store/links.py"),
    ),
    ("MIME (fastmime)", ("mailer/compose/fastmime.py", "mailer/compose/message.py")),
    ("DKIM (dkimpy + OpenSSL)", ("mailer/compose/dkim.py", "/dkim/", "/cryptography/")),
    ("compose, the rest", ("mailer/compose/alert.py",)),
    (
        "aiosmtplib (SMTP client)",
        ("/aiosmtplib/", "mailer/send/transport.py", "mailer/send/outcome.py"),
    ),
    ("database: SQLAlchemy, sqlmodel, store", ("/sqlalchemy/", "/sqlmodel/", "mailer/store/")),
    ("engine (claim, pace, mark, record)", ("mailer/send/", "mailer/blasts.py")),
    (
        "asyncio + threads",
        ("/asyncio/", "/selectors.py", "/concurrent/futures/", "/threading.py", "/queue.py"),
    ),
    ("bench instrumentation", (str(REPO / "bench"),)),
)
# Built-ins are owned by what they do when that is unambiguous.
_BUILTIN_OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database: sqlite3 C calls", ("sqlite3.",)),
    ("socket send/recv (syscalls)", ("of '_socket.socket' objects",)),
    ("asyncio + threads", ("select.epoll", "_thread.lock", "_asyncio.")),
)
OTHER = "other"


def own_owner(func: Func) -> str | None:
    """The owner of ``func`` by its own location, or None when it must inherit one."""
    filename, _, name = func
    if filename == "~":
        for owner, needles in _BUILTIN_OWNERS:
            if any(needle in name for needle in needles):
                return owner
        return None
    for owner, needles in _FILE_OWNERS:
        if any(needle in filename for needle in needles):
            return owner
    return None


def owners(stats: dict[Func, Any]) -> dict[str, float]:
    """Seconds of ``tottime`` per owner, over every function in the (merged) pstats table."""
    cache: dict[Func, dict[str, float]] = {}

    def shares(func: Func, seen: frozenset[Func]) -> dict[str, float]:
        if func in cache:
            return cache[func]
        own = own_owner(func)
        if own is not None:
            result = {own: 1.0}
        else:
            callers: dict[Func, tuple[Any, ...]] = stats[func][4] if func in stats else {}
            weights = {
                c: float(v[3]) for c, v in callers.items() if c not in seen and c in stats
            }  # cumulative time of the calls from each caller
            total = sum(weights.values())
            if not total:
                result = {OTHER: 1.0}
            else:
                result = {}
                for caller, weight in weights.items():
                    for owner, part in shares(caller, seen | {func}).items():
                        result[owner] = result.get(owner, 0.0) + part * weight / total
        if not seen:  # only results computed without a cycle guard are reusable
            cache[func] = result
        return result

    totals: dict[str, float] = {}
    for func, entry in stats.items():
        tottime = float(entry[2])
        if tottime <= 0:
            continue
        for owner, part in shares(func, frozenset()).items():
            totals[owner] = totals.get(owner, 0.0) + tottime * part
    return totals


class ThreadProfiles:
    """cProfile, timed by thread CPU time, on this thread and on the engine's database thread.

    :meth:`install` makes :mod:`mailer.send.engine` create its executor
    threads with a profiler running in each; use the object as a context
    manager around the send to profile the calling (event-loop) thread.
    """

    def __init__(self) -> None:
        self.main = cProfile.Profile(time.thread_time)
        self.threads: list[cProfile.Profile] = []

    def _start_in_thread(self) -> None:
        profiler = cProfile.Profile(time.thread_time)
        self.threads.append(profiler)
        profiler.enable()

    def install(self) -> None:
        from mailer.send import engine

        start = self._start_in_thread

        class ProfiledExecutor(ThreadPoolExecutor):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, initializer=start, **kwargs)

        engine.ThreadPoolExecutor = ProfiledExecutor  # type: ignore[attr-defined]

    def __enter__(self) -> ThreadProfiles:
        self.main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.main.disable()

    def stats(self) -> pstats.Stats:
        """The merged profile (call after the executor's threads have finished)."""
        merged = pstats.Stats(self.main, stream=io.StringIO())
        for profiler in self.threads:
            merged.add(profiler)
        return merged

    def thread_cpu_s(self) -> tuple[float, float]:
        """Profiled CPU seconds of the event-loop thread and of the other threads."""

        def total(profiler: cProfile.Profile) -> float:
            return float(pstats.Stats(profiler, stream=io.StringIO()).total_tt)  # type: ignore[attr-defined]

        return total(self.main), sum(total(p) for p in self.threads)


# The ledger's jobs on the database thread, and sqlite3's commits: how often each ran.
_DB_JOBS = (
    "claim",
    "mark_sending",
    "try_mark_sending",
    "record",
    "release",
    "heartbeat",
    "cap_room",
)
_COMMIT = "<method 'commit' of 'sqlite3.Connection' objects>"


@dataclass(frozen=True)
class Report:
    top: str  # pstats' own listing, sorted by tottime
    owners: list[tuple[str, float]]  # (owner, CPU seconds), largest first
    loop_cpu_s: float
    other_threads_cpu_s: float
    db_jobs: list[tuple[str, int, float]]  # (ledger method or "commit", calls, cumulative CPU s)


def db_jobs(stats: dict[Func, Any]) -> list[tuple[str, int, float]]:
    found = []
    for (filename, _, name), entry in stats.items():
        engine_job = filename.endswith("mailer/send/ledger.py") and name in _DB_JOBS
        if engine_job or (filename == "~" and name == _COMMIT):
            found.append(("sqlite3 commit" if name == _COMMIT else name, int(entry[1]), entry[3]))
    return sorted(found, key=lambda job: -job[2])


def report(profiles: ThreadProfiles, lines: int = 15) -> Report:
    stats = profiles.stats()
    raw: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    by_owner = sorted(owners(raw).items(), key=lambda kv: -kv[1])
    jobs = db_jobs(raw)
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(lines)
    loop_s, others_s = profiles.thread_cpu_s()
    return Report(_tidy(out.getvalue()), by_owner, loop_s, others_s, jobs)


def _tidy(listing: str) -> str:
    """pstats' listing without its blank lines and the 'Ordered by' chatter."""

    def keep(line: str) -> bool:
        return bool(line.strip()) and not line.lstrip().startswith(("Ordered by", "List reduced"))

    return "\n".join(line.rstrip() for line in listing.splitlines() if keep(line))

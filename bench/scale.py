"""Scale-out: 1, 2 and 4 sender processes on one blast in PostgreSQL, into the receiver.

``python -m bench --scale`` runs it (see :func:`run_scale`); the children are

``python -m bench.scale prepare URL N``
    imports N synthetic supporters into the (empty) PostgreSQL schema of URL
    and creates a draft blast; prints one JSON line.
``python -m bench.scale send URL PORT [--rate R]``
    opens the database, prints ``ready``, waits for a line on stdin, then
    sends the blast with :func:`mailer.blasts.send_now` (joining the other
    senders) into 127.0.0.1:PORT; prints one JSON line with its start and end
    (wall clock), its CPU time and the blast's counts at its end.

Every sender is started and connected before any of them is told to go, so
process start-up is not timed. The rate of a run is the messages sent over
the time from the first sender's start to the last sender's end. Each run
gets a fresh schema (dropped afterwards); PostgreSQL runs on the same
machine, so its CPU time competes with the senders' and the receiver's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import REPO, TEMPLATE, cpu_s, settings_for, write_supporters_csv

BLAST = "bench"
LIST = "bench"
PG_URL = os.environ.get("MAILER_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORKER_COUNTS = (1, 2, 4)
TIMEOUT_S = 3600


def prepare(url: str, n: int) -> dict[str, Any]:
    from mailer.blasts import create_blast
    from mailer.store import open_database
    from mailer.supporters.importer import import_csv

    settings = settings_for(port=0)
    db = open_database(url, create=True)
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        csv_path = Path(tmp) / "supporters.csv"
        write_supporters_csv(csv_path, n)
        start = time.perf_counter()
        summary = import_csv(db, csv_path, LIST)
        import_s = time.perf_counter() - start
    create_blast(db, settings, name=BLAST, template=TEMPLATE, list_names=[LIST])
    db.dispose()
    return {"added": summary.added, "import_s": import_s}


def send(url: str, port: int, rate: float) -> dict[str, Any]:
    from mailer.blasts import send_now
    from mailer.store import open_database

    settings = settings_for(port, processes=1)  # the senders are these processes
    if rate:
        settings = replace(settings, sending=replace(settings.sending, rate=rate))
    db = open_database(url)
    with db.session():
        pass  # connected before the start
    print("ready", flush=True)
    sys.stdin.readline()
    cpu_before, start = cpu_s(), time.time()
    result = send_now(db, settings, BLAST)
    end = time.time()
    db.dispose()
    return {
        "start": start,
        "end": end,
        "cpu_s": cpu_s() - cpu_before,
        "counts": {k: v for k, v in result.counts.items() if v},
        "status": str(result.status),
        "error": result.error,
    }


@dataclass(frozen=True)
class ScaleRun:
    workers: int
    rate_limit: float
    sent: int
    seconds: float
    cpu_s: float  # all senders together
    status: str
    counts: dict[str, int]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.sent * 1e6 if self.sent else 0.0


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new, empty schema in the database of ``url``; yields the URL that uses it."""
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def reachable(url: str) -> str:
    """'' when PostgreSQL at ``url`` answers, else why not."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect is reported, not raised
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return ""


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.scale", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(child: subprocess.Popen[str], what: str) -> dict[str, Any]:
    out, err = child.communicate(timeout=TIMEOUT_S)
    if child.returncode != 0:
        raise RuntimeError(f"bench.scale {what} failed:\n{err.strip()}")
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def run_workers(url: str, n: int, port: int, workers: int, rate: float = 0.0) -> ScaleRun:
    """Prepare a fresh schema with ``n`` supporters and send it with ``workers`` senders."""
    with fresh_schema(url) as schema_url:
        _result(_child("prepare", schema_url, str(n)), "prepare")
        children = [
            _child("send", schema_url, str(port), "--rate", str(rate)) for _ in range(workers)
        ]
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                _, err = child.communicate(timeout=60)
                raise RuntimeError(f"bench.scale send did not start:\n{line}\n{err.strip()}")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [_result(child, "send") for child in children]
    last = max(results, key=lambda r: float(r["end"]))
    counts: dict[str, int] = last["counts"]
    return ScaleRun(
        workers=workers,
        rate_limit=rate,
        sent=counts.get("sent", 0),
        seconds=max(float(r["end"]) for r in results) - min(float(r["start"]) for r in results),
        cpu_s=sum(float(r["cpu_s"]) for r in results),
        status=str(last["status"]),
        counts=counts,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("url")
    prep.add_argument("n", type=int)
    snd = commands.add_parser("send")
    snd.add_argument("url")
    snd.add_argument("port", type=int)
    snd.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(json.dumps(prepare(args.url, args.n)))
    else:
        print(json.dumps(send(args.url, args.port, args.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

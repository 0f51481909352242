"""The mailer end to end: CSV import, blast, and the real sending path into smtp-sink.

Two phases, each in a fresh process so that ``ru_maxrss`` (a high-water mark
that never goes down) belongs to one phase only:

``python -m bench.e2e prepare DIR N``
    writes a CSV of N synthetic supporters, imports it into a new SQLite
    database in DIR and creates a draft blast; prints one JSON line.
``python -m bench.e2e send DIR PORT``
    sends that blast with :func:`mailer.blasts.send_now` into 127.0.0.1:PORT,
    timing only the send; prints one JSON line with the rate and peak RSS.
``python -m bench.e2e N PORT``
    both of the above, each in its own subprocess, in a temporary folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, TEMPLATE, peak_rss_mb, settings_for, write_supporters_csv

BLAST = "bench"
LIST = "bench"


def _db_url(folder: Path) -> str:
    return f"sqlite:///{folder.resolve()}/bench.db"


def prepare(folder: Path, n: int) -> dict[str, Any]:
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
    db.dispose()
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


class Stopwatch:
    """Seconds spent in AlertComposer.compose and SmtpTransport.deliver during the send.

    Installed by wrapping the two methods in this (bench-only) process, at the
    cost of two clock reads per call, so the real run shows where its time went.
    """

    def __init__(self) -> None:
        self.compose_s = 0.0
        self.deliver_s = 0.0

    def install(self) -> None:
        from mailer.compose.alert import AlertComposer, Composed, OutgoingMessage, Recipient
        from mailer.send.outcome import Outcome
        from mailer.send.transport import SmtpTransport

        compose, deliver = AlertComposer.compose, SmtpTransport.deliver

        def timed_compose(composer: AlertComposer, delivery_id: int, r: Recipient) -> Composed:
            start = time.perf_counter()
            try:
                return compose(composer, delivery_id, r)
            finally:
                self.compose_s += time.perf_counter() - start

        async def timed_deliver(transport: SmtpTransport, message: OutgoingMessage) -> Outcome:
            start = time.perf_counter()
            try:
                return await deliver(transport, message)
            finally:
                self.deliver_s += time.perf_counter() - start

        AlertComposer.compose = timed_compose  # type: ignore[method-assign,assignment]
        SmtpTransport.deliver = timed_deliver  # type: ignore[method-assign,assignment]


def send(folder: Path, port: int) -> dict[str, Any]:
    from mailer.blasts import send_now
    from mailer.store import open_database

    settings = settings_for(port)
    db = open_database(_db_url(folder))
    stopwatch = Stopwatch()
    stopwatch.install()
    baseline = peak_rss_mb()
    timeline = Timeline()
    start = time.perf_counter()
    result = send_now(db, settings, BLAST, progress=timeline)
    send_s = time.perf_counter() - start
    first_half, second_half = timeline.halves()
    peak = peak_rss_mb()
    db.dispose()
    return {
        "compose_s": stopwatch.compose_s,
        "deliver_s": stopwatch.deliver_s,
        "send_s": send_s,
        "counts": {k: v for k, v in result.counts.items() if v},
        "status": str(result.status),
        "error": result.error,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "first_half_rate": first_half,
        "second_half_rate": second_half,
    }


@dataclass(frozen=True)
class EndToEnd:
    n: int
    import_s: float
    send_s: float
    compose_s: float  # of send_s, spent in AlertComposer.compose
    deliver_s: float  # of send_s, spent in SmtpTransport.deliver
    sent: int
    counts: dict[str, int]
    error: str
    baseline_rss_mb: float
    peak_rss_mb: float
    first_half_rate: float
    second_half_rate: float

    @property
    def rate(self) -> float:
        return self.sent / self.send_s if self.send_s else 0.0

    def per_message_us(self, seconds: float) -> float:
        return seconds / self.sent * 1e6 if self.sent else 0.0

    @property
    def import_per_1000_s(self) -> float:
        return self.import_s / self.n * 1000


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.e2e", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.e2e {' '.join(args)} failed:\n{done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(n: int, port: int) -> EndToEnd:
    """Prepare and send ``n`` recipients, each phase in a fresh subprocess."""
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        prepared = _child("prepare", tmp, str(n))
        sent = _child("send", tmp, str(port))
    counts: dict[str, int] = sent["counts"]
    return EndToEnd(
        n=n,
        import_s=prepared["import_s"],
        send_s=sent["send_s"],
        compose_s=sent["compose_s"],
        deliver_s=sent["deliver_s"],
        sent=counts.get("sent", 0),
        counts=counts,
        error=sent["error"],
        baseline_rss_mb=sent["baseline_rss_mb"],
        peak_rss_mb=sent["peak_rss_mb"],
        first_half_rate=sent["first_half_rate"],
        second_half_rate=sent["second_half_rate"],
    )


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "prepare":
        print(json.dumps(prepare(Path(argv[1]), int(argv[2]))))
    elif len(argv) == 3 and argv[0] == "send":
        print(json.dumps(send(Path(argv[1]), int(argv[2]))))
    elif len(argv) == 2:
        print(json.dumps(asdict(run(int(argv[0]), int(argv[1])))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

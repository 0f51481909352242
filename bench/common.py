"""What the bench's stages share: paths, settings, synthetic supporters, timing helpers."""

from __future__ import annotations

import csv
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailer import config
from mailer.compose.templates import sample_context
from mailer.config import Settings

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
TEMPLATE = "executive-orders"
SENDER = "alerts@example.org"


def language_of(i: int) -> str:
    """A third of the synthetic supporters read Spanish, the rest English."""
    return "es" if i % 3 == 2 else "en"


def supporter_context(i: int) -> dict[str, Any]:
    """The template context of synthetic supporter ``i`` (for the naive floor loop)."""
    base = sample_context()
    base["supporter"] = dict(
        base["supporter"],
        first_name=f"First{i}",
        last_name=f"Last{i}",
        email=f"s{i}@example.org",
        language=language_of(i),
    )
    base["unsubscribe_url"] = f"http://127.0.0.1:8000/u/token{i}"
    return base


def write_supporters_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "first_name", "last_name", "zip", "language"])
        for i in range(n):
            writer.writerow(
                [f"s{i}@example.org", f"First{i}", f"Last{i}", f"{i % 100000:05d}", language_of(i)]
            )


def settings_for(port: int) -> Settings:
    return config.build(
        {
            "smtp": {"host": "127.0.0.1", "port": port},
            "sender": {"name": "Bench", "address": SENDER},
            "organization": {"name": "Bench Org", "postal_address": "1 Example Way"},
            "web": {"base_url": "http://127.0.0.1:8000"},
            "security": {"secret_key": "x" * 40},
            "templates": {"dir": str(TEMPLATES)},
        },
        env={},
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def per_call_us(fn: Callable[[int], object], iterations: int, repeats: int = 3) -> float:
    """Median over ``repeats`` loops of ``iterations`` calls of ``fn(i)``, in µs per call."""
    fn(0)  # warm caches (compiled templates, link ids, regexes)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(iterations):
            fn(i)
        samples.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(samples)

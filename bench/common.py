"""What the bench's stages share: paths, settings, synthetic supporters, keys, timing helpers."""

from __future__ import annotations

import csv
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer import config
from mailer.compose.templates import sample_context
from mailer.config import Settings
from mailer.send.policy import connections_for

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
TEMPLATE = "executive-orders"
SENDER = "alerts@example.org"
DKIM_DOMAIN = "example.org"
DKIM_SELECTOR = "bench"


def say(text: str = "") -> None:
    """Print a line of the bench's report at once (a run takes minutes)."""
    print(text, flush=True)


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def ratio(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """``value`` formatted with ``spec``, or "n/a" when it was not measured."""
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


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


def bench_sections(port: int, base_url: str) -> dict[str, dict[str, Any]]:
    """The settings every bench sends with: the relay on 127.0.0.1:``port``, the
    bench's sender and organization, the repository's templates; no ``[sending]``."""
    return {
        "smtp": {"host": "127.0.0.1", "port": port},
        "sender": {"name": "Bench", "address": SENDER},
        "organization": {"name": "Bench Org", "postal_address": "1 Example Way"},
        "web": {"base_url": base_url},
        "security": {"secret_key": "x" * 40},
        "templates": {"dir": str(TEMPLATES)},
    }


def settings_for(
    port: int,
    *,
    connections: int | None = None,
    dkim_key: Path | None = None,
    processes: int | None = None,
) -> Settings:
    """The bench's settings: the relay on 127.0.0.1:``port``, everything else default.

    ``connections`` and ``processes`` override ``[sending]`` (None keeps the default);
    ``dkim_key`` turns DKIM on (``[dkim]``, domain example.org, selector "bench").
    """
    data: dict[str, dict[str, Any]] = bench_sections(port, "http://127.0.0.1:8000")
    if connections is not None:
        data.setdefault("sending", {})["connections"] = connections
    if processes is not None:
        data.setdefault("sending", {})["processes"] = processes
    if dkim_key is not None:
        data["dkim"] = {
            "private_key_file": str(dkim_key),
            "domain": DKIM_DOMAIN,
            "selector": DKIM_SELECTOR,
        }
    return config.build(data, env={})


def default_connections(processes: int = 1) -> int:
    """The SMTP connections of each of ``processes`` senders when the settings do not say."""
    return connections_for(settings_for(port=0).sending.connections, processes)


def write_dkim_key(path: Path) -> Path:
    """A fresh RSA-2048 private key, as unencrypted PKCS#8 PEM, at ``path``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def peak_rss_mb() -> float:
    """This process's own peak resident set size so far, in MB.

    Linux's ``VmHWM`` (the high-water mark of this process's memory map), not
    ``getrusage``'s ``ru_maxrss``: that one survives ``execve``, so a child
    started by the bench would report the bench's own peak when it is larger.
    ``ru_maxrss`` (KiB on Linux) is the fallback where there is no ``/proc``.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # "VmHWM:   81234 kB"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot, every core; None without /proc.

    From the first line of ``/proc/stat``: user, nice, system, irq, softirq
    and steal time, so the kernel's own work (loopback TCP, the page cache)
    counts too, whichever process it was done for.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process's children that have ended (helper sender processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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

"""A smoke run of the benchmarks (``python -m bench --smoke``), so they cannot rot unnoticed.

The benchmarks print figures and assert none (DESIGN.md, "Performance,
measured not assumed"); this test checks only that every stage still runs to
the end and reports what it measured, never how fast anything was. It never
installs Postfix or wrk: without ``smtp-sink`` the bench sends into its own
aiosmtpd server and says the ceiling was not measured.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from bench.postfix import SBIN
from tests.conftest import REPO
from tests.processes import mailer_env

pytestmark = pytest.mark.processes

RATE = r"[\d,]+"  # a figure as the bench prints it: 1,234


def has_postfix_tools() -> bool:
    return all(
        shutil.which(tool) or (SBIN / tool).exists() for tool in ("smtp-sink", "smtp-source")
    )


def bench(*args: str) -> str:
    """``python -m bench *args --smoke --no-install``, which must exit 0; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--smoke", "--no-install"],
        cwd=REPO,
        env=mailer_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_smoke_run_exits_0_and_prints_every_figure() -> None:
    assert_every_figure(bench())


def assert_every_figure(out: str) -> None:
    """``out`` is a whole smoke run's output, every stage reporting its figures."""
    assert "installing" not in out  # --no-install: nothing is fetched by a test
    # The receivers counted what every stage sent, and every blast finished.
    assert "EXPECTED" not in out and "STATUS" not in out, out

    summary = out[out.index("summary: N = 100,") :]
    if has_postfix_tools():
        assert re.search(rf"^ceiling .* {RATE} +1\.00 *$", summary, re.M), summary
        # Whether the DKIM target is in reach here: its budget beside what RSA alone takes.
        budget = rf"^DKIM budget: at 0\.25 of the ceiling a message may cost {RATE} µs of CPU"
        budget += rf" with all \d+ cores busy; the RSA-2048 signature alone takes {RATE}"
        assert re.search(budget, summary, re.M), summary
    else:
        assert "CEILING NOT MEASURED" in out
        assert re.search(r"^ceiling .* n/a *$", summary, re.M), summary
    assert re.search(rf"^floor .* {RATE} .* 1\.0 *$", summary, re.M), summary
    mailer_rows = re.findall(rf"^mailer +end to end, (.+?) {{2,}}{RATE} ", summary, re.M)
    assert len(mailer_rows) == 2, summary  # the defaults, then processes with DKIM
    assert "DKIM off" in mailer_rows[0] and "procs x" not in mailer_rows[0], mailer_rows
    assert "DKIM on" in mailer_rows[1] and "procs x" in mailer_rows[1], mailer_rows
    assert len(re.findall(rf"^client +SMTP client alone, .* {RATE} ", summary, re.M)) == 3
    assert re.search(r"^targets \(.*\): /ceiling >= 0\.40: ", summary, re.M), summary
    # The isolated per-message costs, one line each.
    for step in (
        "EmailMessage build",
        "Jinja render",
        "MIME: fastmime",
        "DKIM sign",
        "RSA-2048 sig",
    ):
        assert re.search(rf"^  .*{step}.* {RATE} µs$", out, re.M), step
    assert "import: " in summary and " ms per 1,000 rows" in summary
    if shutil.which("wrk"):
        assert re.search(rf"^  real {RATE} req/s .*; bare {RATE} req/s", summary, re.M), summary
    else:
        assert "clicks: not measured (no wrk)" in summary
    assert re.search(r"^\(bench took \d+ s\)$", out, re.M)


def test_the_studio_comparison_sends_both_kinds_and_prints_their_ratio() -> None:
    out = bench("--studio")
    assert "installing" not in out and "EXPECTED" not in out and "STATUS" not in out, out
    sends = re.findall(r"^mailer end to end, 100 recipients, (.*)$", out, re.M)
    assert len(sends) == 2 and "stored alert" in sends[1] and "stored" not in sends[0], sends
    assert re.search(
        rf"^studio .* folder {RATE} msg/s, stored alert {RATE} msg/s: ratio \d\.\d\d$", out, re.M
    ), out
    assert re.search(rf"^ .* folder {RATE} µs, stored alert {RATE} µs: ratio \d\.\d\d$", out, re.M)

"""`mailer demo`, run as a user runs it: a real process in an empty folder."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
import subprocess
from pathlib import Path

import pytest

from tests.processes import run_mailer

pytestmark = pytest.mark.processes  # every test here starts mailer processes


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args)


def test_demo_sends_the_alert_end_to_end(tmp_path: Path) -> None:
    done = run(["demo", "--dir", "work"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "work"
    out = done.stdout
    assert "imported 200 rows" in out and "6 rejected" in out and "4 duplicates" in out
    assert "-> 302 https://www.whitehouse.gov/contact/" in out
    assert "one-click unsubscribe" in out and "-> 200" in out
    assert str(Path("work") / "outbox") in out and "mailer.db" in out
    # The blast report, printed as a table: recipients, sent, failed, unique clicks,
    # click-through rate, unsubscribes.
    figures_printed = {
        label.strip(): value.strip()
        for label, value in re.findall(r"│ ([^│]+?)\s*│\s*([^│]+?) │", out)
    }
    assert figures_printed["Recipients"] == "190"
    assert figures_printed["Sent"] == "190" and figures_printed["Failed"] == "0"
    assert figures_printed["Unique clicks"] == "5"
    assert figures_printed["Click-through rate"] == f"{5 / 190:.1%}"
    assert figures_printed["Unsubscribed"] == "1"

    messages = list(mailbox.Maildir(folder / "outbox", create=False))
    assert len(messages) == 190
    recipients = [m["Delivered-To"] for m in messages]
    assert len(set(recipients)) == 190  # nobody twice
    parsed = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in messages]
    spanish = [m for m in parsed if m["Content-Language"] == "es"]
    assert len(spanish) >= 20 and all("Casa Blanca" in str(m["Subject"]) for m in spanish)

    report = run(["--config", str(folder / "mailer.toml"), "report", "1", "--json"], cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert figures["recipients"] == 190 and figures["sent"] == 190 and figures["failed"] == 0
    assert figures["clicks_unique"] == 5 and figures["clicks_total"] == 5
    assert figures["unsubscribed"] == 1
    assert figures["click_rate"] == round(5 / 190, 4)

    # Each run starts afresh: a second run replaces the folder instead of adding to it.
    again = run(["demo", "--dir", "work"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(list(mailbox.Maildir(folder / "outbox", create=False))) == 190

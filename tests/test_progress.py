"""The send progress display: a bar with rate and ETA on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mailer.cli.progress import BarProgress, LineProgress


def test_plain_lines_say_done_total_rate_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    progress = LineProgress("sending 1", every=0.0)
    progress.start(200, 50)  # resumed: 50 were final already
    progress.advance(30)
    progress.finish()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("sending 1: 50/200 done, ")
    assert re.fullmatch(r"sending 1: 80/200 done, \d+ msg/s, ETA \d+s", lines[-1])


def test_the_bar_shows_count_rate_and_eta_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    progress = BarProgress("sending 7", console=console)
    progress.start(100, 0)
    progress.advance(40)
    progress.finish()
    shown = out.getvalue()
    assert "sending 7" in shown and "40/100" in shown and "msg/s" in shown and "ETA" in shown

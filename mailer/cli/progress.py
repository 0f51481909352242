"""Showing a blast's progress: a bar with rate and ETA on a terminal, log lines elsewhere."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class BarProgress:
    """A rich progress bar on stderr."""

    def __init__(self, label: str, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
        )
        self._label = label
        self._task: TaskID | None = None
        self._started = 0.0
        self._first = 0
        self._done = 0

    def start(self, total: int, done: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(self._label, total=total, completed=done, rate="")
        self._started = time.monotonic()
        self._first = self._done = done

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._done += count
            elapsed = max(time.monotonic() - self._started, 1e-9)
            rate = f"{(self._done - self._first) / elapsed:,.0f} msg/s"
            self._progress.update(self._task, advance=count, rate=rate)

    def finish(self) -> None:
        self._progress.stop()


class LineProgress:
    """One plain line every ``every`` seconds, for logs and pipes."""

    def __init__(self, label: str, every: float = 5.0) -> None:
        self._label = label
        self._every = every
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._first = 0
        self._last = 0.0

    def start(self, total: int, done: int) -> None:
        self._total, self._done, self._first = total, done, done
        self._started = self._last = time.monotonic()
        self._line()

    def advance(self, count: int) -> None:
        self._done += count
        if time.monotonic() - self._last >= self._every:
            self._line()

    def finish(self) -> None:
        self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        elapsed = max(self._last - self._started, 1e-9)
        rate = (self._done - self._first) / elapsed
        left = self._total - self._done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        click.echo(
            f"{self._label}: {self._done}/{self._total} done, {rate:.0f} msg/s, ETA {eta}", err=True
        )


def progress_for(label: str) -> BarProgress | LineProgress:
    return BarProgress(label) if sys.stderr.isatty() else LineProgress(label)

"""A run's ``sending`` marks and outcomes, written together in group commits.

A worker asks :meth:`Marks.mark` for its next message just before handing it
to the relay, and waits for the answer; every mark asked for in the same
turn of the event loop goes in one commit, with the outcomes queued since the
last one (:class:`Outcomes`): one write for both.

Where the commit is made depends on the database:

* **SQLite** — on the event loop's own thread, on a connection of the
  loop's own (:meth:`~mailer.send.ledger.Ledger.try_mark_sending`). A write
  on the local file costs less than the trip to the database thread and back,
  which kept every connection's next message waiting for the interpreter lock
  to be handed over. The write never waits inside SQLite: when another
  process (or this one's database thread) holds the write lock, nothing is
  written and the batch, with any marks asked for meanwhile, is tried again
  after 50 µs, doubling to 1 ms, for as long as SQLite's busy timeout.
* **PostgreSQL** — on the database thread (:class:`~mailer.send.run.AsyncLedger`),
  one batch at a time: a round trip to the server must not hold the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Protocol

from mailer.send.hot import BUSY_FIRST_PAUSE, BUSY_TIMEOUT, next_pause
from mailer.send.ledger import Ledger
from mailer.send.policy import OutcomeRow


class Progress(Protocol):
    """What :class:`Outcomes` tells (a :class:`mailer.send.run.Progress`)."""

    def advance(self, count: int) -> None: ...


class AsyncMarks(Protocol):
    """What :class:`Marks` needs of :class:`mailer.send.run.AsyncLedger`."""

    @property
    def sync(self) -> Ledger: ...

    def mark_sending(
        self, ids: list[int], outcomes: list[OutcomeRow] | None = None
    ) -> asyncio.Future[set[int]]: ...


class Outcomes:
    """Outcomes waiting for their group commit; the progress is told as they are taken."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self._rows: list[OutcomeRow] = []

    def add(self, row: OutcomeRow) -> None:
        self._rows.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def peek(self) -> list[OutcomeRow]:
        """The waiting outcomes, left waiting (to be taken once written)."""
        return self._rows

    def take(self) -> list[OutcomeRow]:
        """The waiting outcomes, taken to be written now."""
        rows, self._rows = self._rows, []
        if rows and self.progress:
            self.progress.advance(len(rows))
        return rows


class Marks:
    """One run's marks; see the module docstring for where they are written."""

    def __init__(self, ledger: AsyncMarks, outcomes: Outcomes) -> None:
        self.ledger = ledger
        self.outcomes = outcomes
        self.inline = ledger.sync.marks_inline
        self._waiting: list[tuple[int, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None  # the database thread's batches
        self._pending: asyncio.Handle | None = None  # the next inline write, scheduled
        self._busy = 0.0  # seconds the waiting batch has waited for SQLite's write lock
        self._pause = BUSY_FIRST_PAUSE  # before its next try, should it wait again

    async def mark(self, delivery_id: int) -> bool:
        """Mark one delivery ``sending`` (with others, in one commit); False if not ours."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((delivery_id, future))
        if self.inline:
            if self._pending is None:
                self._pending = loop.call_soon(self._write_inline)
        elif self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_on_thread())
        return await future

    def close(self) -> None:
        """At the end of the run (no worker waits for a mark any more)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.inline:
            self.ledger.sync.close_loop_connection()

    def _write_inline(self) -> None:
        self._pending = None
        batch = self._waiting
        if not batch:
            return
        try:
            done = self.ledger.sync.try_mark_sending([i for i, _ in batch], self.outcomes.peek())
            if done is None and self._busy >= BUSY_TIMEOUT:
                raise sqlite3.OperationalError(
                    f"database is locked: no write lock for the marks in {BUSY_TIMEOUT:g} s"
                )
        except Exception as exc:
            self._next_batch()
            _fail(batch, exc)
            return
        if done is None:  # the write lock is taken: this batch and later marks, shortly
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._pause, self._write_inline)
            self._busy += self._pause
            self._pause = next_pause(self._pause)
            return
        self._next_batch()
        self.outcomes.take()  # written with the marks
        _answer(batch, done[0])

    def _next_batch(self) -> None:
        """The waiting batch is done with (written or failed): the next starts afresh."""
        self._waiting, self._busy, self._pause = [], 0.0, BUSY_FIRST_PAUSE

    async def _write_on_thread(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let the other workers add theirs
            batch, self._waiting = self._waiting, []
            rows = self.outcomes.take()
            try:
                # Shielded: outcomes taken from the queue must be written even if this
                # task is cancelled while the write waits its turn on the database thread.
                marked = await asyncio.shield(self.ledger.mark_sending([i for i, _ in batch], rows))
            except BaseException as exc:
                _fail(batch, exc)
                raise
            _answer(batch, marked)


def _answer(batch: list[tuple[int, asyncio.Future[bool]]], marked: set[int]) -> None:
    for delivery_id, future in batch:
        if not future.done():
            future.set_result(delivery_id in marked)


def _fail(batch: list[tuple[int, asyncio.Future[bool]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)

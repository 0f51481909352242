"""Group commit for the click handler: many requests, one transaction.

Each request thread hands its row to :class:`GroupWriter` and waits; one
writer thread takes everything waiting, stores it in a single transaction and
then releases the waiters. A request is answered only after its row is
committed (no click is ever lost to a crash after the redirect), yet under
load a hundred clicks cost one commit instead of a hundred. On SQLite this is
also the single writer that keeps the click handler from contending with
itself for the write lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlmodel import SQLModel

from mailer.store import Database

MAX_BATCH = 500
WAIT_SECONDS = 30.0


@dataclass
class _Pending:
    row: SQLModel
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class GroupWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Pending] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mailer-click-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS)
            self._thread = None

    def submit(self, row: SQLModel) -> None:
        """Store ``row``; return once it is committed (raise if it could not be)."""
        if self._thread is None:
            raise RuntimeError("the writer is not running")
        pending = _Pending(row)
        with self._ready:
            self._queue.append(pending)
            self._ready.notify()
        if not pending.done.wait(WAIT_SECONDS):
            raise TimeoutError("the database did not store the row in time")
        if pending.error is not None:
            raise pending.error

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue and self._stopping:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                with self.db.session() as session:
                    session.add_all([p.row for p in batch])
            except Exception as exc:  # every waiter learns why its row was not stored
                for pending in batch:
                    pending.error = exc
            for pending in batch:
                pending.done.set()

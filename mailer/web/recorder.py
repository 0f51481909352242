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

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlmodel import SQLModel

from mailer.store import Click, Database, Delivery, Link

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


@dataclass
class _Click:
    delivery_id: int
    link_id: int
    at: datetime
    ip: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[str | None]


class ClickBatcher:
    """Checks and stores clicks in batches for the async click handler.

    The handler awaits :meth:`record`; the writer thread takes every click
    waiting, looks all their deliveries up in one query (links are cached:
    a blast's links never change), inserts the valid ones in one Core
    statement and transaction, and only then tells each handler the URL to
    redirect to, or None for a token naming no delivery or a link of another
    blast. No thread is held per request while the database works.
    """

    def __init__(self, db: Database, scanner_window: float) -> None:
        self.db = db
        self.scanner_window = scanner_window
        self._queue: list[_Click] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._links: dict[int, tuple[int, str]] = {}  # link id -> (blast id, url)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mailer-clicks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS)
            self._thread = None

    async def record(self, delivery_id: int, link_id: int, at: datetime, ip: str) -> str | None:
        """Store the click; return where to redirect (None: not a link of that delivery)."""
        if self._thread is None:
            raise RuntimeError("the click writer is not running")
        loop = asyncio.get_running_loop()
        item = _Click(delivery_id, link_id, at, ip, loop, loop.create_future())
        with self._ready:
            self._queue.append(item)
            self._ready.notify()
        return await asyncio.wait_for(item.future, WAIT_SECONDS)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue and self._stopping:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                answers = self._store(batch)
            except Exception as exc:
                for item in batch:
                    item.loop.call_soon_threadsafe(_fail, item.future, exc)
                continue
            for item, answer in zip(batch, answers, strict=True):
                item.loop.call_soon_threadsafe(_answer, item.future, answer)

    def _store(self, batch: list[_Click]) -> list[str | None]:
        deliveries = Delivery.__table__.c  # type: ignore[attr-defined]
        with self.db.engine.begin() as conn:
            found = {
                row.id: (row.blast_id, row.sent_at)
                for row in conn.execute(
                    select(deliveries.id, deliveries.blast_id, deliveries.sent_at).where(
                        deliveries.id.in_({c.delivery_id for c in batch})
                    )
                )
            }
            missing = {c.link_id for c in batch} - set(self._links)
            if missing:
                links = Link.__table__.c  # type: ignore[attr-defined]
                for row in conn.execute(
                    select(links.id, links.blast_id, links.url).where(links.id.in_(missing))
                ):
                    self._links[row.id] = (row.blast_id, row.url)
            rows: list[dict[str, object]] = []
            answers: list[str | None] = []
            for c in batch:
                delivery = found.get(c.delivery_id)
                link = self._links.get(c.link_id)
                if delivery is None or link is None or link[0] != delivery[0]:
                    answers.append(None)
                    continue
                sent_at = delivery[1]
                rows.append(
                    {
                        "blast_id": delivery[0],
                        "delivery_id": c.delivery_id,
                        "link_id": c.link_id,
                        "clicked_at": c.at,
                        "suspected_bot": sent_at is not None
                        and (c.at - sent_at).total_seconds() <= self.scanner_window,
                        "ip": c.ip,
                    }
                )
                answers.append(link[1])
            if rows:
                conn.execute(insert(Click.__table__), rows)  # type: ignore[attr-defined]
        return answers


def _answer(future: asyncio.Future[str | None], answer: str | None) -> None:
    if not future.done():
        future.set_result(answer)


def _fail(future: asyncio.Future[str | None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)

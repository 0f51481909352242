"""Group commit for the public endpoints: many requests, one transaction.

One thread takes every item waiting and stores them together; each request
is answered only after the transaction holding its row has committed, so a
redirect never goes out for a click that a crash could lose, yet under load a
hundred clicks cost one commit instead of a hundred. On SQLite this is also
the single writer, so requests never contend for the write lock.

- :class:`ClickBatcher` serves the async click handler: it checks the
  batch's tokens against the database in one query and answers each request
  with the URL to redirect to (or None).
- :class:`GroupWriter` serves plain request threads (the open pixel).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Dialect, select
from sqlmodel import SQLModel

from mailer.store import Blast, Click, Database, Delivery, Link
from mailer.store.driver import IDS, DriverSql

T = TypeVar("T")
MAX_BATCH = 500
WAIT_SECONDS = 30.0


@dataclass
class _Pending:
    row: SQLModel
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _BatchThread(Generic[T]):
    """One thread that takes every item waiting and handles them together."""

    name = "mailer-batch"

    def __init__(self) -> None:
        self._queue: list[T] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Handle what is queued, then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS)
            self._thread = None

    def _put(self, item: T) -> None:
        if self._thread is None:
            raise RuntimeError(f"{self.name} is not running")
        with self._ready:
            self._queue.append(item)
            if len(self._queue) == 1:  # the thread waits only on an empty queue
                self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue and self._stopping:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._handle(batch)

    def _handle(self, batch: list[T]) -> None:
        raise NotImplementedError


class GroupWriter(_BatchThread[_Pending]):
    """Stores rows handed in by request threads, many per transaction."""

    name = "mailer-row-writer"

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    def submit(self, row: SQLModel) -> None:
        """Store ``row``; return once it is committed (raise if it could not be)."""
        pending = _Pending(row)
        self._put(pending)
        if not pending.done.wait(WAIT_SECONDS):
            raise TimeoutError("the database did not store the row in time")
        if pending.error is not None:
            raise pending.error

    def _handle(self, batch: list[_Pending]) -> None:
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


class ClickBatcher(_BatchThread[_Click]):
    """Checks and stores clicks in batches for the async click handler.

    The handler awaits :meth:`record`; the writer thread takes every click
    waiting, looks all their deliveries up in one query (links are cached:
    a blast's links never change), inserts the valid ones in one Core
    statement and transaction, and only then tells each handler the URL to
    redirect to, or None for a token naming no delivery or a link of another
    blast. No thread is held per request while the database works.

    The call-to-action link of a blast linked to a petition answers instead
    the recipient's own action page, made by ``action_path(delivery id,
    petition id)`` from the stored ids alone (never from the request).
    """

    name = "mailer-click-writer"

    def __init__(
        self,
        db: Database,
        scanner_window: float,
        action_path: Callable[[int, int], str] | None = None,
        dedup_window: float = 0.0,
    ) -> None:
        super().__init__()
        self.db = db
        self.scanner_window = scanner_window
        self.dedup_window = dedup_window
        self.action_path = action_path
        # link id -> (blast id, url, petition id when the link leads to the action page)
        self._links: dict[int, tuple[int, str, int | None]] = {}
        self._prepared: _ClickSql | None = None

    async def record(self, delivery_id: int, link_id: int, at: datetime, ip: str) -> str | None:
        """Store the click; return where to redirect (None: not a link of that delivery)."""
        loop = asyncio.get_running_loop()
        item = _Click(delivery_id, link_id, at, ip, loop, loop.create_future())
        self._put(item)
        async with asyncio.timeout(WAIT_SECONDS):  # cheaper than wait_for: no extra future
            return await item.future

    def _handle(self, batch: list[_Click]) -> None:
        answers: list[str | BaseException | None]
        try:
            answers = list(self._store(batch))
        except Exception as exc:
            answers = [exc] * len(batch)
        # One wake-up of each event loop for the whole batch, not one per click.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str | None], Any]]]
        by_loop = {}
        for item, answer in zip(batch, answers, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, answer))
        for loop, pairs in by_loop.items():
            loop.call_soon_threadsafe(_settle, pairs)

    def _store(self, batch: list[_Click]) -> list[str | None]:
        """Check and insert one batch; the answers in the batch's order.

        This is the hot path of the click endpoint, so it talks to the driver
        directly (one SELECT and one executemany) with the statements and the
        datetime conversion prepared once: the per-row work of the ORM and of
        Core's parameter processing held the GIL long enough to slow the event
        loop serving the requests.
        """
        sql = self._sql()
        with self.db.engine.begin() as conn:
            ids = list({c.delivery_id for c in batch})
            found = {
                d_id: (blast_id, sql.driver.read_time(sent_at))
                for d_id, blast_id, sent_at in conn.exec_driver_sql(
                    sql.driver.with_ids(sql.deliveries, len(ids)), tuple(ids)
                )
            }
            missing = {c.link_id for c in batch} - set(self._links)
            if missing:
                links = Link.__table__.c  # type: ignore[attr-defined]
                blasts = Blast.__table__.c  # type: ignore[attr-defined]
                for row in conn.execute(
                    select(links.id, links.blast_id, links.url, links.is_cta, blasts.petition_id)
                    .join(Blast.__table__, blasts.id == links.blast_id)  # type: ignore[attr-defined]
                    .where(links.id.in_(missing))
                ):
                    petition = row.petition_id if row.is_cta else None
                    self._links[row.id] = (row.blast_id, row.url, petition)
            valid: list[tuple[_Click, int, bool]] = []
            answers: list[str | None] = []
            for c in batch:
                delivery = found.get(c.delivery_id)
                link = self._links.get(c.link_id)
                if delivery is None or link is None or link[0] != delivery[0]:
                    answers.append(None)
                    continue
                sent_at = delivery[1]
                bot = (
                    sent_at is not None and (c.at - sent_at).total_seconds() <= self.scanner_window
                )
                valid.append((c, delivery[0], bot))
                petition_id = link[2]
                if petition_id is not None and self.action_path is not None:
                    answers.append(self.action_path(c.delivery_id, petition_id))
                else:
                    answers.append(link[1])
            if valid:
                self._write(conn, sql, valid)
        return answers

    def _write(
        self, conn: Connection, sql: _ClickSql, valid: list[tuple[_Click, int, bool]]
    ) -> None:
        """Store the batch's valid clicks. A replay of a link by the same delivery (with the
        same scanner flag) within ``dedup_window`` seconds of a row's first click adds to
        that row's count instead of making a row: every click is counted, and replaying one
        link cannot grow the table without bound."""
        write = sql.driver.write_time
        rows: list[_Row] = []
        latest: dict[tuple[int, int, bool], _Row] = {}  # the newest row of each key
        if self.dedup_window > 0:
            since = min(c.at for c, _, _ in valid) - timedelta(seconds=self.dedup_window)
            ids = list({c.delivery_id for c, _, _ in valid})
            for row_id, d_id, l_id, flagged, first in conn.exec_driver_sql(
                sql.driver.with_ids(sql.recent, len(ids)), (write(since), *ids)
            ):
                at = sql.driver.read_time(first)
                assert at is not None
                stored = _Row(row_id, 0, d_id, l_id, bool(flagged), "", at, at, 0)
                latest[(d_id, l_id, bool(flagged))] = stored
                rows.append(stored)
        for c, blast_id, bot in valid:
            key = (c.delivery_id, c.link_id, bot)
            seen = latest.get(key)
            if seen is not None and 0 <= (c.at - seen.first).total_seconds() <= self.dedup_window:
                seen.added += 1
                seen.last = max(seen.last, c.at)
                continue
            row = _Row(None, blast_id, c.delivery_id, c.link_id, bot, c.ip, c.at, c.at, 1)
            latest[key] = row
            rows.append(row)
        added = [(r.added, write(r.last), r.id) for r in rows if r.id is not None and r.added]
        if added:
            conn.exec_driver_sql(sql.add, added)
        new = [
            (
                r.blast_id,
                r.delivery_id,
                r.link_id,
                write(r.first),
                r.bot,
                r.ip,
                r.added,
                write(r.last),
            )
            for r in rows
            if r.id is None
        ]
        if new:
            conn.exec_driver_sql(sql.insert, new)

    def _sql(self) -> _ClickSql:
        if self._prepared is None:
            self._prepared = _ClickSql.for_dialect(self.db.engine.dialect)
        return self._prepared


@dataclass
class _Row:
    """A click row the writer adds to (``id`` set) or makes (``id`` None)."""

    id: int | None
    blast_id: int
    delivery_id: int
    link_id: int
    bot: bool
    ip: str
    first: datetime
    last: datetime
    added: int  # clicks to add to its count


@dataclass(frozen=True)
class _ClickSql:
    """The click writer's statements for one database dialect."""

    driver: DriverSql
    deliveries: str  # with ``IDS`` for the batch's delivery ids
    recent: str  # rows since a time, of the deliveries in ``IDS``
    add: str  # clicks to a row's count
    insert: str

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _ClickSql:
        driver = DriverSql.for_dialect(dialect)
        delivery = Delivery.__tablename__
        click = Click.__tablename__
        columns = "blast_id, delivery_id, link_id, clicked_at, suspected_bot, ip, clicks"
        columns += ", last_clicked_at"
        m = driver.mark
        return cls(
            driver=driver,
            deliveries=f"SELECT id, blast_id, sent_at FROM {delivery} WHERE id IN ({IDS})",  # noqa: S608 (constants only)
            recent=(
                f"SELECT id, delivery_id, link_id, suspected_bot, clicked_at FROM {click}"  # noqa: S608 (constants only)
                f" WHERE clicked_at >= {m} AND delivery_id IN ({IDS}) ORDER BY clicked_at, id"
            ),
            add=(
                f"UPDATE {click} SET clicks = clicks + {m}, last_clicked_at = {m} WHERE id = {m}"  # noqa: S608 (constants only)
            ),
            insert=f"INSERT INTO {click} ({columns}) VALUES ({driver.marks(8)})",  # noqa: S608 (constants only)
        )


def _settle(pairs: list[tuple[asyncio.Future[str | None], Any]]) -> None:
    """On the event loop: give each waiting handler its answer (or the error)."""
    for future, answer in pairs:
        if future.done():  # the handler gave up waiting
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)

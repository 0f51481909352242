"""The one database connection a sender's hot writes (claims, marks, outcomes) go through.

The connection is taken from the engine once per run and kept: a pool
checkout per write, with PostgreSQL's pre-ping, would cost more than the
write. It is *detached* from the pool, so the settings it is given here
never reach a web request or another session: when the run ends (or the
connection breaks) it is closed, not handed back.

On SQLite the connection does not wait in SQLite's busy handler, whose first
wait for a write lock another process holds is a whole millisecond, then 2,
then 5: with two sender processes committing marks a thousand times a second
each, those waits kept a connection's next message waiting.
:meth:`HotConnection.write` waits itself, in shorter steps.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import PoolProxiedConnection
from sqlalchemy.engine.interfaces import DBAPICursor

from mailer.store import Database
from mailer.store.engine import SQLITE_BUSY_TIMEOUT_MS

R = TypeVar("R")

# SQLite's write lock held by another process: a write tries again after these
# pauses (seconds), for as long as the engine's busy timeout would have waited.
# The marks written on the event loop (mailer.send.marks) wait the same way.
BUSY_FIRST_PAUSE = 0.00005
BUSY_MOST_PAUSE = 0.001
BUSY_TIMEOUT = SQLITE_BUSY_TIMEOUT_MS / 1000


def next_pause(pause: float) -> float:
    """The pause after ``pause``: twice as long, at most :data:`BUSY_MOST_PAUSE`."""
    return min(pause * 2, BUSY_MOST_PAUSE)


class HotConnection:
    """A driver connection (sqlite3 or psycopg) of one sender's, opened on first use."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: PoolProxiedConnection | None = None

    def driver_connection(self) -> Any:
        """The DB-API connection itself, opened if need be."""
        return self._kept().dbapi_connection

    def _kept(self) -> PoolProxiedConnection:
        if self._conn is None:
            conn = self.db.engine.raw_connection()
            conn.detach()  # closed at the end, never back in the pool with our settings
            if self.db.is_sqlite:  # waits for the write lock are write()'s (see there)
                cursor = conn.cursor()
                cursor.execute("PRAGMA busy_timeout = 0")
                cursor.close()
            self._conn = conn
        return self._conn

    def write(self, work: Callable[[DBAPICursor], R]) -> R:
        """``work`` on a cursor of the connection, committed.

        After any error the connection is closed, so the next write starts on
        a fresh one. On SQLite a write that finds the lock taken is rolled
        back (it changed nothing yet) and tried again after 50 µs, doubling
        to at most 1 ms, for as long as the engine's ``busy_timeout`` would
        have waited.
        """
        pause, waited = BUSY_FIRST_PAUSE, 0.0
        while (done := self.try_write(work)) is None:
            if waited >= BUSY_TIMEOUT:
                raise sqlite3.OperationalError(
                    f"database is locked: no write lock in {BUSY_TIMEOUT:g} s"
                )
            time.sleep(pause)
            waited += pause
            pause = next_pause(pause)
        return done[0]

    def try_write(self, work: Callable[[DBAPICursor], R]) -> tuple[R] | None:
        """``work`` committed, as :meth:`write`, without waiting: None (nothing written)
        when SQLite's write lock is taken. The result comes in a 1-tuple."""
        conn = self._kept()
        cursor = conn.cursor()
        broken = True
        try:
            result = work(cursor)
            conn.commit()
            broken = False
            return (result,)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            conn.rollback()
            broken = False
            return None
        finally:
            cursor.close()  # before the connection: a closed one's cursor cannot close
            if broken:
                self.close()

    def close(self) -> None:
        """Close the connection (at the end of a run, or broken); a later write opens another."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

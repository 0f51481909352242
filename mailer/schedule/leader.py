"""One scheduler at a time: the lock a scheduler holds while it acts.

Several scheduler processes may run for availability; the one holding the
lock starts blasts, the others wait and try again every poll. The lock
belongs to the process, so it is freed when the process dies, even by
``kill -9``, and a waiting scheduler takes over at its next try.

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on
  a connection of its own, held for as long as the scheduler is active. The
  server frees it when that connection ends. The key includes the schema, so
  mailers in different schemas of one database do not exclude each other.
  Each poll checks the connection is alive; a scheduler that loses it stops
  acting at once (another may already hold the lock).
- **SQLite** (one machine): an exclusive ``flock`` on a file next to the
  database (``<database>.scheduler-lock``), which the kernel frees when the
  process exits. An in-memory database has one process by nature: no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

# The first half of the advisory lock's key: "mail" as a 32-bit integer.
PG_LOCK_CLASS = 0x6D61696C


class SchedulerLock(Protocol):
    """Try to become the active scheduler; check that we still are; step down."""

    def acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...


class PostgresLock:
    def __init__(self, engine: Engine) -> None:
        # A connection outside the pool: it lives as long as the lock.
        self._engine = create_engine(engine.url, poolclass=NullPool)
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            return self.held()
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:cls, hashtext(current_schema()))"),
                {"cls": PG_LOCK_CLASS},
            ).scalar_one()
        except DBAPIError:
            conn.close()
            raise
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except DBAPIError:
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(:cls, hashtext(current_schema()))"),
                    {"cls": PG_LOCK_CLASS},
                )
            self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        assert self._conn is not None
        with contextlib.suppress(DBAPIError):
            self._conn.close()
        self._conn = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class NoLock:
    """An in-memory SQLite database: only this process can see it."""

    def acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass


def scheduler_lock(engine: Engine) -> SchedulerLock:
    """The lock that makes one scheduler act among those on ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresLock(engine)
    database = engine.url.database
    if not database or database == ":memory:":
        return NoLock()
    return FileLock(Path(f"{database}.scheduler-lock"))

"""Opening the database: engine, connection settings, schema creation.

SQLite is the embedded default. Each connection is switched to WAL (readers
never block the writer, so the click handler and the sender share the file),
``synchronous=NORMAL`` (durable at each WAL checkpoint, the usual WAL setting),
foreign keys on, and a busy timeout so a writer waits for the lock instead of
failing. PostgreSQL needs nothing special here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

from mailer.errors import ConfigError
from mailer.store import models  # noqa: F401  (registers the tables)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


class Database:
    """One engine plus the sessions made from it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (an empty database gets all of it)."""
        from mailer.store.migrate import upgrade  # Alembic is loaded only when needed

        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(
    url: str, *, create: bool = False, pool_size: int = 5, max_overflow: int = 10
) -> Database:
    """Open the database at ``url``; with ``create``, also make or upgrade its schema."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            folder = Path(path).parent
            if create:
                folder.mkdir(parents=True, exist_ok=True)
            elif not Path(path).exists():
                raise ConfigError("database.url", f"no database at {path}; run `mailer init` first")
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("postgresql"):
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow
        )
    else:
        raise ConfigError(
            "database.url",
            f"unsupported database URL {url!r} (sqlite:/// or postgresql+psycopg://)",
        )
    db = Database(engine)
    if create:
        db.create_schema()
    return db

"""Statements run on the database driver directly, for the few hot paths.

The sender's per-message writes (``sending`` marks and outcome records) and
the click writer run thousands of times a second under load. Through the ORM
or Core each execution builds and processes its statement and parameters in
Python, which costs more than SQLite or PostgreSQL take to run it. These
paths instead keep their SQL text, prepared once per dialect, and pass plain
tuples to the driver. Table names come from the models, so a rename reaches
them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect

IDS = "__ids__"  # in a statement's text, where the placeholders of an IN list of ids go


@dataclass(frozen=True)
class DriverSql:
    """A dialect's placeholder and its conversions of stored times."""

    mark: str  # the driver's parameter placeholder: "?" (sqlite3) or "%s" (psycopg)
    write_time: Callable[[datetime | None], object]
    read_time: Callable[[object], datetime | None]

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> DriverSql:
        column_type = DateTime().dialect_impl(dialect)  # SQLite's keeps times as text
        to_db = column_type.bind_processor(dialect)
        from_db = column_type.result_processor(dialect, None)

        # The last time written and what it became, as one tuple (read and replaced whole,
        # so two threads writing times never mix one's time with the other's text).
        last: list[tuple[datetime | None, object]] = [(None, None)]

        def write_time(value: datetime | None) -> object:
            """An aware time as the column stores it: naive UTC (text on SQLite).

            The last one is remembered: an outcome's ``sent_at`` and ``updated_at``
            are one time."""
            if value is None:
                return None
            seen, written = last[0]
            if value is seen:
                return written
            naive = value.astimezone(UTC).replace(tzinfo=None)
            written = to_db(naive) if to_db else naive
            last[0] = (value, written)
            return written

        def read_time(value: object) -> datetime | None:
            parsed = from_db(value) if from_db else value
            if parsed is None:
                return None
            assert isinstance(parsed, datetime)
            return parsed.replace(tzinfo=UTC)

        return cls(
            mark="?" if dialect.paramstyle == "qmark" else "%s",
            write_time=write_time,
            read_time=read_time,
        )

    def marks(self, count: int) -> str:
        """``count`` placeholders separated by commas, for an ``IN (...)`` list."""
        return ", ".join([self.mark] * count)

    def with_ids(self, statement: str, count: int) -> str:
        """``statement`` with ``IDS`` replaced by ``count`` placeholders, for the ids."""
        return statement.replace(IDS, self.marks(count))

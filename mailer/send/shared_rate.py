"""Rate limits that hold for the sum of several senders: token buckets in the database.

Each limited thing (a blast's overall rate, or its rate to one recipient
domain) has one ``send_rate`` row: the tokens left and when they were last
counted. A sender asks for a *grant* of up to a quarter second's worth of
tokens; one ``UPDATE … RETURNING`` refills the row by the time passed (on the
database's own clock, so the hosts' clocks do not matter), takes what is
there up to the grant, and returns how much it got. The row lock makes
concurrent grants queue, so no two senders spend the same token.

Within a grant a sender paces itself with its in-process
:class:`~mailer.send.throttle.TokenBucket`, so the database sees about four
grant requests a second per sender and limit, not one per message.

The bucket holds at most one grant's worth, so the combined rate over any
interval ``t`` stays within ``rate * t`` plus one grant per sender already
taken.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Integer, Table, cast, delete, func, literal, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from mailer.store.models import SendRate

_RATE: Table = SendRate.__table__  # type: ignore[attr-defined]
GRANT_SECONDS = 0.25  # a grant is at most this many seconds' worth of tokens


def grant_size(rate: float) -> int:
    """Tokens asked for at a time: a quarter second's worth, at least one."""
    return max(1, math.ceil(rate * GRANT_SECONDS))


def blast_key(blast_id: int, domain: str | None = None) -> str:
    return f"blast:{blast_id}" if domain is None else f"blast:{blast_id}:{domain}"


def _now(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return (func.julianday("now") - 2440587.5) * 86400.0  # SQLite: Unix time, ms precision


def take(session: Session, key: str, *, rate: float, want: int, dialect: str) -> tuple[int, float]:
    """Take up to ``want`` tokens from bucket ``key``: (granted, seconds until one more).

    The bucket is made full on first use; it holds at most ``grant_size(rate)``.
    """
    burst = float(grant_size(rate))
    now = _now(dialect)
    least, greatest = (
        (func.least, func.greatest) if dialect == "postgresql" else (func.min, func.max)
    )
    elapsed = greatest(literal(0.0), now - _RATE.c.stamp)
    available = least(literal(burst), _RATE.c.tokens + elapsed * rate)
    whole = func.floor(available) if dialect == "postgresql" else cast(available, Integer)
    granted = least(literal(want), greatest(literal(0), whole))
    stmt = (
        update(_RATE)
        .where(_RATE.c.key == key)
        .values(tokens=available - granted, stamp=now, granted=granted)
        .returning(_RATE.c.granted, _RATE.c.tokens)
    )
    row = session.execute(stmt).first()
    if row is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(_RATE)
            .values(key=key, tokens=burst, stamp=now, granted=0)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = session.execute(stmt).one()
    got, left = int(row[0]), float(row[1])
    return got, 0.0 if got else max(0.0, (1.0 - left) / rate)


def forget(session: Session, blast_id: int) -> None:
    """Drop the buckets of a finished blast."""
    session.execute(
        delete(SendRate).where(
            or_(
                col(SendRate.key) == blast_key(blast_id),
                col(SendRate.key).startswith(blast_key(blast_id) + ":"),
            )
        )
    )


class Quota:
    """Tokens granted to this sender from one shared bucket, refilled in the background.

    ``ready`` is asked before each message: with a token left it says yes; with
    none it starts one refill (if none is running) and says no; ``on_change``
    is called when the refill is done, so a waiting scheduler looks again.
    """

    def __init__(
        self,
        grant: Callable[[int], Awaitable[tuple[int, float]]],
        size: int,
        on_change: Callable[[], None],
    ) -> None:
        self.grant = grant
        self.size = size
        self.on_change = on_change
        self.tokens = 0
        self._refill: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def ready(self) -> bool:
        if self._error is not None:
            raise self._error
        if self.tokens > 0:
            return True
        if self._refill is None:
            self._refill = asyncio.ensure_future(self._fetch())
        return False

    def take(self) -> None:
        self.tokens -= 1

    async def _fetch(self) -> None:
        try:
            while True:
                got, wait = await self.grant(self.size)
                if got:
                    self.tokens += got
                    return
                await asyncio.sleep(min(max(wait, 0.002), 1.0))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced to the scheduler at its next look
            self._error = exc
        finally:
            self._refill = None
            self.on_change()

    def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()

"""The claim's two statements, as SQL text prepared once per dialect.

A claim takes the next ``limit`` due deliveries of a blast above the last id
this sender claimed, in id order, that no sender holds: queued, or deferred
with the retry time passed. It writes this sender's name into ``worker``
(the state stays ``queued``) and reads, for each row claimed, what its
message is built from: the supporter's values, status and whether the
address is suppressed.

The due rows are one index range of ``(blast_id, state, id)`` per state,
each stopped at the limit, then merged: an ``OR`` of both states made
SQLite sort every remaining row of the blast on each claim (about a second
per claim with a million recipients left). On PostgreSQL each range skips
the rows another sender has locked (``FOR UPDATE SKIP LOCKED``).

Like the marks and outcome records (:mod:`mailer.store.driver`), the claim
runs on the database thread's own driver connection: through the ORM, the
statement building and the per-row result processing cost about three times
what the database itself spends on a batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect

from mailer.compose.alert import Recipient
from mailer.send.policy import Claimed
from mailer.store import Delivery, DeliveryState
from mailer.store.driver import IDS, DriverSql
from mailer.store.models import Supporter, SupporterStatus, Suppression

_STATUS = {status.value: status for status in SupporterStatus}


@dataclass(frozen=True)
class ClaimSql:
    """The claim's statements for one dialect, run on the driver directly."""

    driver: DriverSql
    take: str  # claims the due rows, returning their ids
    read: str  # with ``IDS``: what the claimed rows' messages are built from

    @classmethod
    def for_dialect(cls, dialect: Dialect, driver: DriverSql) -> ClaimSql:
        m = driver.mark
        lock = "" if dialect.name == "sqlite" else " FOR UPDATE SKIP LOCKED"
        d, s = Delivery.__tablename__, Supporter.__tablename__
        due = f"SELECT id FROM {d} WHERE blast_id = {m} AND id > {m} AND worker = ''"  # noqa: S608 (constants only)
        take = (
            f"UPDATE {d} SET worker = {m}, state = {m}, updated_at = {m} WHERE id IN ("  # noqa: S608 (constants only)
            f"SELECT id FROM ({due} AND state = {m} ORDER BY id LIMIT {m}{lock}) AS queued"
            f" UNION ALL SELECT id FROM ({due} AND state = {m} AND next_attempt_at <= {m}"
            f" ORDER BY id LIMIT {m}{lock}) AS retries ORDER BY id LIMIT {m}) RETURNING id"
        )
        read = (
            f"SELECT {d}.id, {d}.attempts, {d}.created_at, {s}.status,"  # noqa: S608 (constants only)
            f" EXISTS (SELECT 1 FROM {Suppression.__tablename__}"
            f" WHERE {Suppression.__tablename__}.email = {s}.email),"
            f" {s}.email, {s}.first_name, {s}.last_name, {s}.zip, {s}.region, {s}.language,"
            f" {s}.custom FROM {d} JOIN {s} ON {s}.id = {d}.supporter_id"
            f" WHERE {d}.id IN ({IDS}) ORDER BY {d}.id"
        )
        return cls(driver=driver, take=take, read=read)

    def take_params(
        self, worker: str, blast_id: int, after_id: int, limit: int, now: datetime
    ) -> tuple[object, ...]:
        at = self.driver.write_time(now)
        queued, deferred = DeliveryState.QUEUED.value, DeliveryState.DEFERRED.value
        return (
            *(worker, queued, at),
            *(blast_id, after_id, queued, limit),
            *(blast_id, after_id, deferred, at, limit),
            limit,
        )

    def claimed(self, rows: Sequence[Sequence[Any]]) -> list[Claimed]:
        """The rows of :attr:`read` as claimed deliveries."""
        read_time: Callable[[object], datetime | None] = self.driver.read_time
        out = []
        for row in rows:
            custom = row[11]
            if isinstance(custom, str | bytes):  # JSON text on SQLite; decoded by psycopg
                custom = json.loads(custom)
            out.append(
                Claimed(
                    delivery_id=row[0],
                    attempts=row[1],
                    created_at=read_time(row[2]),
                    status=_STATUS[row[3]],
                    suppressed=bool(row[4]),
                    # email, first_name, last_name, zip, region, language: never null
                    recipient=Recipient(
                        row[5], row[6], row[7], row[8], row[9], row[10], custom or {}
                    ),
                )
            )
        return out

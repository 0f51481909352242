"""Claiming deliveries: which rows a sender takes, and that a claim costs the same at any list size.

A claim takes the next due deliveries (queued, or deferred with their retry
time passed) above the last id the sender claimed, in id order. On SQLite it
once asked for both states in one ``OR``; the planner then collected every
remaining queued row of the blast through the state index and sorted them
all to return the first 200: about a second per claim with a million
recipients left, and a blast that sped up as its queue emptied.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from mailer.assemble import make_sender
from mailer.blasts import create_blast
from mailer.config import Settings
from mailer.send.hot import HotConnection
from mailer.send.ledger import Ledger
from mailer.send.policy import OutcomeRow
from mailer.store import Database, Delivery, DeliveryState
from mailer.store.engine import SQLITE_BUSY_TIMEOUT_MS
from mailer.store.models import utcnow
from tests.factories import add_people, people


def started(db: Database, settings: Settings) -> tuple[Ledger, int, list[int]]:
    """A blast of the list ``members`` started by a sender: its ledger, the blast, delivery ids."""
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    ledger = make_sender(db, settings).ledger
    ledger.start(blast.id)
    with db.session() as session:
        ids = session.exec(
            select(Delivery.id).where(Delivery.blast_id == blast.id).order_by(col(Delivery.id))
        ).all()
    return ledger, blast.id, [i for i in ids if i is not None]


def set_row(db: Database, delivery_id: int, **values: object) -> None:
    with db.session() as session:
        session.execute(sa.update(Delivery).where(col(Delivery.id) == delivery_id).values(**values))


def test_a_claim_takes_the_due_rows_above_the_last_id_in_id_order(
    db: Database, settings: Settings
) -> None:
    add_people(db, "members", people(7))
    ledger, blast_id, ids = started(db, settings)
    now = utcnow()
    set_row(db, ids[1], state=DeliveryState.DEFERRED, next_attempt_at=now - timedelta(minutes=1))
    set_row(db, ids[3], state=DeliveryState.DEFERRED, next_attempt_at=now + timedelta(hours=1))
    set_row(db, ids[4], worker="another-sender")
    set_row(db, ids[6], state=DeliveryState.SENT)

    first = [c.delivery_id for c in ledger.claim(blast_id, 0, 3)]
    assert first == [ids[0], ids[1], ids[2]]  # queued and due deferred, interleaved by id
    rest = [c.delivery_id for c in ledger.claim(blast_id, ids[2], 10)]
    assert rest == [ids[5]]  # not the retry not yet due, the held row, the sent one
    assert ledger.claim(blast_id, 0, 10) == []  # claimed rows are not claimed again
    ledger.close()


@contextmanager
def sqlite_steps(ledger: Ledger) -> Iterator[Callable[[], int]]:
    """Count SQLite virtual-machine steps (in thousands) of the ledger's claims meanwhile.

    A claim runs on the driver connection the ledger keeps for its hot statements.
    """
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0  # go on

    raw = ledger.hot_connection()
    raw.set_progress_handler(tick, 1000)
    try:
        yield lambda: steps[0]
    finally:
        raw.set_progress_handler(None, 0)


def add_many(db: Database, count: int) -> None:
    """``count`` active supporters on the list ``members``, in one statement each."""
    add_people(db, "members", people(1))
    now = utcnow().isoformat(sep=" ")
    with db.session() as session:
        session.execute(
            sa.text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
                " INSERT INTO supporter (email, first_name, last_name, zip, region, language,"
                " custom, status, created_at, updated_at)"
                " SELECT 'm' || i || '@example.org', 'M', '', '', '', 'en', '{}', 'active',"
                " :now, :now FROM n"
            ),
            {"count": count, "now": now},
        )
        session.execute(
            sa.text(
                "INSERT INTO membership (list_id, supporter_id, added_at)"
                " SELECT (SELECT id FROM mailing_list WHERE name = 'members'), id, :now"
                " FROM supporter WHERE email LIKE 'm%'"
            ),
            {"now": now},
        )


def test_a_claim_costs_the_same_with_the_whole_list_ahead_as_near_its_end(
    sqlite_db: Database, settings: Settings
) -> None:
    add_many(sqlite_db, 20_000)
    ledger, blast_id, ids = started(sqlite_db, settings)
    assert len(ids) == 20_001
    with sqlite_steps(ledger) as at_start:
        assert len(ledger.claim(blast_id, 0, 200)) == 200
    with sqlite_steps(ledger) as near_end:
        assert len(ledger.claim(blast_id, ids[-401], 200)) == 200
    ledger.close()
    # With 20,000 rows ahead the OR plan took 15 times the work of the claim near the
    # end (419,000 VM steps against 28,000); index ranges stopped at the limit take
    # the same at both places (23,000 and 25,000).
    assert near_end() > 0  # the steps were counted
    assert at_start() < 3 * near_end(), (at_start(), near_end())


def test_a_write_that_finds_the_lock_taken_by_another_process_waits_for_it(
    sqlite_db: Database, settings: Settings
) -> None:
    """The hot writes wait for SQLite's write lock in short steps of their own (not in
    SQLite's busy handler), and go through once another connection lets it go."""
    add_people(sqlite_db, "members", people(5))
    ledger, blast_id, ids = started(sqlite_db, settings)
    path = sqlite_db.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    released = threading.Event()

    def let_go() -> None:
        time.sleep(0.3)
        released.set()
        other.execute("COMMIT")

    holder = threading.Thread(target=let_go)
    holder.start()
    try:
        # Not SQLite's busy handler: the ledger's own connection does not wait in it.
        assert ledger.hot_connection().execute("PRAGMA busy_timeout").fetchone() == (0,)
        claimed = ledger.claim(blast_id, 0, 10)
        assert released.is_set()  # it waited for the lock, and did not fail
        assert [c.delivery_id for c in claimed] == ids
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.2, lambda: other.execute("COMMIT")).start()
        assert ledger.mark_sending(ids[:2]) == set(ids[:2])
    finally:
        holder.join()
        raw = ledger.hot_connection()
        ledger.close()
        other.close()
    # Closed, not back in the pool: a web request or a session must never get a
    # connection that fails at once on a busy database.
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        raw.execute("PRAGMA busy_timeout")
    with sqlite_db.engine.connect() as pooled:
        waits = pooled.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert waits == SQLITE_BUSY_TIMEOUT_MS
    with sqlite_db.session() as session:
        marked = session.exec(select(Delivery.state).where(col(Delivery.id).in_(ids[:2]))).all()
    assert set(marked) == {DeliveryState.SENDING}


def test_outcomes_go_in_the_same_commit_as_the_next_marks(db: Database, settings: Settings) -> None:
    add_people(db, "members", people(3))
    ledger, blast_id, ids = started(db, settings)
    assert len(ledger.claim(blast_id, 0, 3)) == 3
    assert ledger.mark_sending(ids[:1]) == {ids[0]}
    now = utcnow()
    sent = OutcomeRow(ids[0], DeliveryState.SENT, 1, 250, "2.0.0 Ok", "<m0@x>", None, now, now)
    assert ledger.mark_sending(ids[1:], [sent]) == set(ids[1:])
    ledger.close()
    with db.session() as session:
        rows = session.exec(select(Delivery).where(col(Delivery.id).in_(ids))).all()
    by_id = {row.id: row for row in rows}
    first = by_id[ids[0]]
    assert (first.state, first.reply_code, first.message_id, first.worker) == (
        DeliveryState.SENT,
        250,
        "<m0@x>",
        "",
    )
    assert {by_id[i].state for i in ids[1:]} == {DeliveryState.SENDING}


def test_a_failed_hot_write_raises_its_own_error_and_the_next_opens_a_new_connection(
    sqlite_db: Database,
) -> None:
    hot = HotConnection(sqlite_db)
    first = hot.driver_connection()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        hot.write(lambda cursor: cursor.execute("UPDATE no_such_table SET x = 1"))
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        first.execute("SELECT 1")  # closed, not handed back to the pool
    assert hot.write(lambda cursor: cursor.execute("SELECT 41 + 1").fetchone()) == (42,)
    assert hot.driver_connection() is not first
    hot.close()

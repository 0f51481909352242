"""A blast's lifecycle: the table of status changes is the whole truth, on both databases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from itertools import product

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from mailer import lifecycle
from mailer.errors import InvalidState
from mailer.store import Blast, BlastStatus, Database, Event

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PAIRS = list(product(BlastStatus, repeat=2))


def a_blast(db: Database, status: BlastStatus, name: str = "alert") -> int:
    with db.session() as session:
        blast = Blast(name=name, template="executive-orders", cta_url="https://example.org/")
        blast.status = status
        session.add(blast)
        session.flush()
        assert blast.id is not None
        return blast.id


def events_of(session: Session, blast_id: int) -> list[Event]:
    return list(session.exec(select(Event).where(Event.blast_id == blast_id)))


def status_of(db: Database, blast_id: int) -> BlastStatus:
    with db.session() as session:
        return BlastStatus(session.exec(select(Blast.status).where(Blast.id == blast_id)).one())


def test_the_table_names_real_statuses_and_says_why() -> None:
    assert all(a in BlastStatus and b in BlastStatus for a, b in lifecycle.TRANSITIONS)
    assert all(why.strip() for why in lifecycle.TRANSITIONS.values())
    # Nothing leaves the final states but the requeue of in-doubt deliveries of a done blast.
    assert {b for a, b in lifecycle.TRANSITIONS if a is BlastStatus.CANCELLED} == set()
    assert {b for a, b in lifecycle.TRANSITIONS if a is BlastStatus.DONE} == {BlastStatus.PAUSED}
    # Every status can be reached, and left unless it is final.
    assert {b for _, b in lifecycle.TRANSITIONS} == set(BlastStatus)
    assert {a for a, _ in lifecycle.TRANSITIONS} == set(BlastStatus) - {BlastStatus.CANCELLED}


def test_every_pair_of_statuses_is_allowed_exactly_when_listed(db: Database) -> None:
    """All (from, to) over the statuses: a listed change happens with one event, any other
    is refused naming the blast and both statuses, and leaves nothing behind."""
    ids = {pair: a_blast(db, pair[0], name=f"{pair[0]}-{pair[1]}") for pair in PAIRS}
    for (current, to), blast_id in ids.items():
        listed = (current, to) in lifecycle.TRANSITIONS
        with db.session() as session:
            blast = session.get(Blast, blast_id)
            assert blast is not None
            if listed:
                lifecycle.transition(
                    session,
                    blast,
                    to,
                    action="blast.test",
                    actor="test",
                    now=NOW,
                    detail={"from": str(current)},
                )
            else:
                with pytest.raises(InvalidState) as refused:
                    lifecycle.transition(
                        session, blast, to, action="blast.test", actor="test", now=NOW
                    )
                message = str(refused.value)
                assert blast.name in message and str(current) in message and str(to) in message
        assert status_of(db, blast_id) is (to if listed else current), (current, to)
        with db.session() as session:
            written = events_of(session, blast_id)
        if listed:
            assert [(e.action, e.actor, e.detail) for e in written] == [
                ("blast.test", "test", {"from": str(current)})
            ]
        else:
            assert written == [], (current, to)


def test_the_conditional_change_follows_the_same_table(db: Database) -> None:
    for current, to in PAIRS:
        blast_id = a_blast(db, current, name=f"{current}-{to}")
        with db.session() as session:
            if (current, to) in lifecycle.TRANSITIONS:
                event = lifecycle.transition_where(
                    session,
                    blast_id,
                    current,
                    to,
                    action="blast.test",
                    actor="test",
                    now=NOW,
                    values={"last_error": "why"},
                )
                assert event is not None and event.action == "blast.test"
            else:
                with pytest.raises(InvalidState, match=f"from {current} to {to}"):
                    lifecycle.transition_where(
                        session, blast_id, current, to, action="x", actor="test", now=NOW
                    )
        listed = (current, to) in lifecycle.TRANSITIONS
        assert status_of(db, blast_id) is (to if listed else current)
        with db.session() as session:
            assert len(events_of(session, blast_id)) == (1 if listed else 0)
            blast = session.get(Blast, blast_id)
            assert blast is not None and blast.last_error == ("why" if listed else "")


def test_a_conditional_change_from_a_status_the_blast_is_not_in_does_nothing(
    db: Database,
) -> None:
    blast_id = a_blast(db, BlastStatus.PAUSED)
    with db.session() as session:
        assert (
            lifecycle.transition_where(
                session,
                blast_id,
                BlastStatus.SCHEDULED,
                BlastStatus.SENDING,
                action="blast.due",
                actor="test",
                now=NOW,
            )
            is None
        )
    assert status_of(db, blast_id) is BlastStatus.PAUSED
    with db.session() as session:
        assert events_of(session, blast_id) == []


def test_two_sessions_racing_for_a_start_have_exactly_one_winner(db: Database) -> None:
    """Both read the blast as scheduled, then both try; one UPDATE finds it no longer so."""
    blast_id = a_blast(db, BlastStatus.SCHEDULED)
    both_read = threading.Barrier(2)
    won: list[bool] = []

    def contender(name: str) -> None:
        with db.session() as session:
            blast = session.get(Blast, blast_id)
            assert blast is not None and blast.status is BlastStatus.SCHEDULED
            both_read.wait(timeout=10)
            event = lifecycle.transition_where(
                session,
                blast_id,
                BlastStatus.SCHEDULED,
                BlastStatus.SENDING,
                action="blast.due",
                actor=name,
                now=NOW,
            )
            won.append(event is not None)

    threads = [threading.Thread(target=contender, args=(f"s{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(won) == [False, True]
    assert status_of(db, blast_id) is BlastStatus.SENDING
    with db.session() as session:
        due = session.exec(
            select(func.count()).select_from(Event).where(col(Event.action) == "blast.due")
        ).one()
    assert due == 1


def test_audit_writes_one_event_with_what_it_is_given(db: Database) -> None:
    blast_id = a_blast(db, BlastStatus.DRAFT)
    with db.session() as session:
        lifecycle.audit(
            session, "blast.noted", actor="cli", now=NOW, blast_id=blast_id, detail={"n": 1}
        )
        lifecycle.audit(session, "list.imported", actor="cli", now=NOW)
    with db.session() as session:
        rows = list(session.exec(select(Event).order_by(col(Event.id))))
    assert [(e.action, e.actor, e.blast_id, e.detail) for e in rows] == [
        ("blast.noted", "cli", blast_id, {"n": 1}),
        ("list.imported", "cli", None, {}),
    ]
    assert rows[0].at is not None and rows[0].at.replace(tzinfo=UTC) == NOW

"""Which sending processes are alive, so that what a dead one held can be recovered.

Each sender registers a row in ``sender_worker`` and renews it while it runs:
every heartbeat extends its **lease** (``lease_until`` = heartbeat +
``sending.lease_seconds``). A delivery a sender has claimed carries its name
in ``delivery.worker``. Deliveries held by dead workers are recovered when a
sender starts, by every running sender's watcher (so several senders on one
blast take over from one that died), and by a sender that runs out of work
while others still hold rows:

- claimed but never started (state still ``queued``): released to the queue;
- started (state ``sending``): set to ``unknown``, because the message may or
  may not have reached the relay. They are reported, never silently resent;
  ``mailer blast requeue-unknown`` sends them deliberately.

A worker is dead when it has no row, when its lease has run out, or when it
ran on this host and its process is gone (so a ``kill -9`` is recognized at
once, without waiting for the lease). Recovery deletes the dead worker's row;
a sender that was only stalled (stopped, cut off) finds its row gone at its
next heartbeat and stops without sending more: marking a delivery ``sending``
requires the row to name this worker and the lease to be current.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from mailer.store import Delivery, DeliveryState, SenderWorker

STALE_AFTER = timedelta(seconds=60)
IN_DOUBT_TEXT = "in flight when its sender stopped; may or may not have arrived"


def new_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_alive(worker: SenderWorker | None, now: datetime) -> bool:
    if worker is None or worker.heartbeat_at is None:
        return False
    lease_until = worker.lease_until or worker.heartbeat_at + STALE_AFTER
    if now > lease_until:
        return False
    if worker.host == socket.gethostname() and worker.pid != os.getpid():
        return _process_alive(worker.pid)
    return True


def register(
    session: Session, name: str, blast_id: int, now: datetime, lease: timedelta = STALE_AFTER
) -> None:
    existing = session.get(SenderWorker, name)
    if existing is not None:
        existing.blast_id = blast_id
        existing.heartbeat_at = now
        existing.lease_until = now + lease
        session.add(existing)
        return
    session.add(
        SenderWorker(
            name=name,
            host=socket.gethostname(),
            pid=os.getpid(),
            blast_id=blast_id,
            started_at=now,
            heartbeat_at=now,
            lease_until=now + lease,
        )
    )


def heartbeat(session: Session, name: str, now: datetime, lease: timedelta = STALE_AFTER) -> bool:
    """Renew ``name``'s lease; False when its row is gone (recovered by another sender)."""
    renewed = session.execute(
        update(SenderWorker)
        .where(col(SenderWorker.name) == name)
        .values(heartbeat_at=now, lease_until=now + lease)
    )
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


def live_on(session: Session, blast_id: int, now: datetime) -> list[str]:
    """The names of the live workers registered on ``blast_id``."""
    rows = session.exec(select(SenderWorker).where(SenderWorker.blast_id == blast_id)).all()
    return [w.name for w in rows if is_alive(w, now)]


def unregister(session: Session, name: str) -> None:
    session.execute(delete(SenderWorker).where(col(SenderWorker.name) == name))


HELD = (DeliveryState.QUEUED, DeliveryState.SENDING)  # the states a worker holds rows in


def holders(session: Session, blast_id: int, *, besides: str = "") -> list[str]:
    """The workers holding open deliveries of ``blast_id`` (other than ``besides``)."""
    names = session.exec(
        select(Delivery.worker)
        .where(
            Delivery.blast_id == blast_id,
            col(Delivery.state).in_(HELD),
            Delivery.worker != "",
            Delivery.worker != besides,
        )
        .distinct()
    ).all()
    return list(names)


def recover_dead(session: Session, blast_id: int, now: datetime) -> tuple[int, int]:
    """Recover deliveries of ``blast_id`` held by dead workers: (released, in doubt)."""
    dead = [
        n for n in holders(session, blast_id) if not is_alive(session.get(SenderWorker, n), now)
    ]
    return recover(session, blast_id, dead, now)


def recover_expired(session: Session, blast_id: int, now: datetime) -> tuple[int, int]:
    """Like :func:`recover_dead`, for the workers registered on ``blast_id`` only.

    Cheap enough for every watcher tick: it reads the few ``sender_worker``
    rows, and touches deliveries only when one of them has died.
    """
    rows = session.exec(select(SenderWorker).where(SenderWorker.blast_id == blast_id)).all()
    return recover(session, blast_id, [w.name for w in rows if not is_alive(w, now)], now)


def recover(session: Session, blast_id: int, dead: list[str], now: datetime) -> tuple[int, int]:
    """Take back what the ``dead`` workers hold of ``blast_id``: (released, in doubt)."""
    if not dead:
        return 0, 0
    in_doubt = session.execute(
        update(Delivery)
        .where(
            col(Delivery.blast_id) == blast_id,
            col(Delivery.worker).in_(dead),
            col(Delivery.state) == DeliveryState.SENDING,
        )
        .values(state=DeliveryState.UNKNOWN, worker="", updated_at=now, reply_text=IN_DOUBT_TEXT)
    )
    released = session.execute(
        update(Delivery)
        .where(col(Delivery.blast_id) == blast_id, col(Delivery.worker).in_(dead))
        .values(worker="")
    )
    session.execute(delete(SenderWorker).where(col(SenderWorker.name).in_(dead)))
    return released.rowcount or 0, in_doubt.rowcount or 0  # type: ignore[attr-defined]

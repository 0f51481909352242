"""Which sending processes are alive, so that what a dead one held can be recovered.

Each sender registers a row in ``sender_worker`` and refreshes its heartbeat
while it runs. A delivery a sender has claimed carries its name in
``delivery.worker``. When a blast (re)starts, deliveries held by dead workers
are recovered:

- claimed but never started (state still ``queued``): released to the queue;
- started (state ``sending``): set to ``unknown``, because the message may or
  may not have reached the relay. They are reported, never silently resent;
  ``mailer blast requeue-unknown`` sends them deliberately.

A worker is dead when it has no row, when its heartbeat is older than
``STALE_AFTER``, or when it ran on this host and its process is gone (so a
``kill -9`` is recognized at once, without waiting for the heartbeat to age).
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
    if now - worker.heartbeat_at > STALE_AFTER:
        return False
    if worker.host == socket.gethostname() and worker.pid != os.getpid():
        return _process_alive(worker.pid)
    return True


def register(session: Session, name: str, blast_id: int, now: datetime) -> None:
    existing = session.get(SenderWorker, name)
    if existing is not None:
        existing.blast_id = blast_id
        existing.heartbeat_at = now
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
        )
    )


def heartbeat(session: Session, name: str, now: datetime) -> None:
    session.execute(
        update(SenderWorker).where(col(SenderWorker.name) == name).values(heartbeat_at=now)
    )


def unregister(session: Session, name: str) -> None:
    session.execute(delete(SenderWorker).where(col(SenderWorker.name) == name))


def recover_dead(session: Session, blast_id: int, now: datetime) -> tuple[int, int]:
    """Recover deliveries of ``blast_id`` held by dead workers: (released, in doubt)."""
    holders = session.exec(
        select(Delivery.worker)
        .where(Delivery.blast_id == blast_id, Delivery.worker != "")
        .distinct()
    ).all()
    dead = [name for name in holders if not is_alive(session.get(SenderWorker, name), now)]
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

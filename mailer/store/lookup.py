"""Finding blasts as people name them, and what they are sent to.

Read-only look-ups shared by the CLI, the web app, the reports and the
sender; they live with the data so that none of those needs another room's
module to find a blast.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from mailer.errors import NotFound
from mailer.inputs import is_id
from mailer.store.models import Blast, BlastList, MailingList


def find_blast(session: Session, ref: str | int) -> Blast:
    """The blast with id ``ref`` (digits) or name ``ref``."""
    text = str(ref).strip()
    blast = None
    if is_id(text):
        blast = session.get(Blast, int(text))
    if blast is None:
        blast = session.exec(select(Blast).where(Blast.name == text)).first()
    if blast is None:
        raise NotFound(f"no blast {text!r} (give its id or name; `mailer blast list` shows them)")
    return blast


def blast_lists(session: Session, blast_id: int) -> list[MailingList]:
    """The mailing lists blast ``blast_id`` goes to, by name."""
    return list(
        session.exec(
            select(MailingList)
            .join(BlastList, col(BlastList.list_id) == MailingList.id)
            .where(BlastList.blast_id == blast_id)
            .order_by(MailingList.name)
        )
    )

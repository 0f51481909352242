"""The links of a blast, recorded as they are first seen while composing.

A tracking token carries a link's id; the click handler redirects only to the
URL stored under that id for the delivery's own blast. Nothing in a request
can name a redirect target (no open redirect).
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select

from mailer.store.engine import Database
from mailer.store.models import Link


class BlastLinks:
    """Link ids of one blast, cached in memory; a new URL is stored at once."""

    def __init__(self, db: Database, blast_id: int, cta_url: str) -> None:
        self.db = db
        self.blast_id = blast_id
        self.cta_url = cta_url
        self._ids: dict[str, int] = {}
        with db.session() as session:
            for link in session.exec(select(Link).where(Link.blast_id == blast_id)):
                assert link.id is not None
                self._ids[link.url] = link.id

    def link_id(self, url: str) -> int:
        found = self._ids.get(url)
        if found is not None:
            return found
        values = {"blast_id": self.blast_id, "url": url, "is_cta": url == self.cta_url}
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        stmt = (
            insert(Link).values(**values).on_conflict_do_nothing(index_elements=["blast_id", "url"])
        )
        with self.db.session() as session:
            session.execute(stmt)
            link_id = session.exec(
                select(Link.id).where(Link.blast_id == self.blast_id, Link.url == url)
            ).one()
        assert link_id is not None
        self._ids[url] = link_id
        return link_id

"""The links of a blast: those its template writes, registered before any message is built.

A tracking token carries a link's id; the click handler redirects only to the
URL stored under that id for the delivery's own blast. Nothing in a request
can name a redirect target (no open redirect). Links are registered from the
template (:meth:`BlastLinks.register`, when the blast's composer is built: at
create, check, preview, test send and start); while sending, a URL that is not
registered is left as it is, so a URL typed into a supporter's name or any
other value never becomes a tracked link, and the send path does no database
work for links.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select

from mailer.store.engine import Database
from mailer.store.models import Link


class BlastLinks:
    """Link ids of one blast, held in memory."""

    def __init__(self, db: Database, blast_id: int, cta_url: str) -> None:
        self.db = db
        self.blast_id = blast_id
        self.cta_url = cta_url
        self._ids: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        with self.db.session() as session:
            for link in session.exec(select(Link).where(Link.blast_id == self.blast_id)):
                assert link.id is not None
                self._ids[link.url] = link.id

    def register(self, urls: Iterable[str]) -> None:
        """Record ``urls`` as links of the blast (those already recorded stay as they are)."""
        new = [url for url in dict.fromkeys(urls) if url not in self._ids]
        if not new:
            return
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        with self.db.session() as session:
            for url in new:
                values = {"blast_id": self.blast_id, "url": url, "is_cta": url == self.cta_url}
                session.execute(
                    insert(Link)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=["blast_id", "url"])
                )
        self._load()

    def link_id(self, url: str) -> int | None:
        """The id of a registered link, or None: then the URL is not tracked."""
        return self._ids.get(url)

"""Importing supporters from a CSV file into a mailing list.

Reading
    The file is read as bytes and decoded as UTF-8 (a leading byte-order mark
    is allowed, as Excel writes one). Any other encoding stops the import with
    :class:`~mailer.errors.ImportFileError` naming the file, the line and the
    offending byte. Lines may end in CRLF, LF or CR. Records are parsed by the
    standard :mod:`csv` module (quoted fields may hold delimiters, quotes and
    line breaks); the delimiter (comma, semicolon or tab) is the one that
    splits the header and the most of the first records alike
    (:func:`~mailer.supporters.reading.sniff_delimiter`), and a comma when
    none does. The file is processed as a stream, one chunk of records at a time.

Header
    The first non-blank record is the header. Column titles are matched after
    :func:`~mailer.supporters.columns.normalize_header` (lowercase, trimmed,
    runs of spaces/hyphens -> ``_``) against :data:`~mailer.supporters.columns.ALIASES`:

    ============  ===========================================================
    email         email, e_mail, email_address, mail
    first_name    first_name, firstname, first, given_name
    last_name     last_name, lastname, last, surname, family_name
    zip           zip, zip_code, zipcode, postal_code, postcode
    region        region, state, province
    language      language, lang, preferred_language, locale
    ============  ===========================================================

    Every other column is kept in ``Supporter.custom`` under its normalized
    title. A file with no email column, with two columns meaning the same
    thing, or with nothing in it at all cannot be imported (ImportFileError).

Rows
    Blank lines are skipped. A record with fewer fields than the header has
    empty values for the missing ones. A row is *rejected* (reported, not
    stored, the import goes on) when:

    * it has values beyond the header's last column (empty extra cells, as
      some spreadsheets leave behind, are ignored);
    * its quoting is broken (text after a closing quote, a quote never closed);
    * the email is empty or fails ``email_validator`` (syntax only, or also
      DNS with ``check_deliverability``); the reason quotes the library;
    * a value is longer than the database column allows.

    Addresses are stored in their ASCII form, lowercased, so one person is
    one supporter however the address was typed. A row repeating an address
    already accepted from the same file is a *duplicate*: it is reported with
    the line of the first one and otherwise ignored (the addresses seen are kept
    in a temporary SQLite file, so memory does not grow with the file). Text values are trimmed,
    whitespace runs collapse to one space, and control characters (line
    breaks, tabs, NUL, U+2028/U+2029) are removed, because names go into
    email headers. Languages become a primary subtag ("es-MX", "Spanish" ->
    "es"; empty -> "en").

Storing
    A supporter that does not exist yet is created active. One that exists
    takes the file's non-empty values where they differ; empty cells never
    erase stored data, custom fields are merged, and ``updated_at`` moves only
    when something changed. The import never touches ``status``: someone who
    unsubscribed, bounced or complained stays that way (they still join the
    list; blasts only send to active supporters). The list is created if
    needed and every accepted supporter becomes a member. Existing supporters
    are looked up :data:`LOOKUP_CHUNK` addresses per query. Everything is
    written in one transaction together with a ``list.imported`` event, so
    importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import insert
from sqlmodel import Session, col, select

from mailer import csvsafe
from mailer.errors import ImportFileError
from mailer.lifecycle import audit
from mailer.store.engine import Database
from mailer.store.models import (
    MailingList,
    Membership,
    Supporter,
    SupporterStatus,
    utcnow,
)
from mailer.supporters.columns import (
    DEFAULT_LANGUAGE,
    Column,
    Row,
    RowChecker,
    map_columns,
    max_length,
)
from mailer.supporters.reading import Records, physical_lines

#: Addresses looked up per ``SELECT ... WHERE email IN (...)``.
LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class Reject:
    """A row that was not imported, and why."""

    line: int  # physical line where the record starts (the header is line 1)
    reason: str  # e.g. "email: missing", "duplicate of line 12"
    row: dict[str, str]  # the values as read, under the file's own column titles


@dataclass
class ImportSummary:
    """What one import did. ``rows`` = added + updated + unchanged + duplicates + rejected."""

    file: str
    list_name: str
    rows: int = 0  # data records read (blank lines not counted)
    added: int = 0  # supporters created
    updated: int = 0  # existing supporters whose stored fields changed
    unchanged: int = 0  # existing supporters left as they were
    duplicates: int = 0  # rows repeating an address seen earlier in the file
    rejects: list[Reject] = field(default_factory=list)  # invalid rows and duplicates
    new_members: int = 0  # supporters newly added to the list

    @property
    def rejected(self) -> int:
        """Invalid rows (duplicates not counted)."""
        return len(self.rejects) - self.duplicates


# -- storing -------------------------------------------------------------------


class _Store:
    """Writes accepted rows, :data:`LOOKUP_CHUNK` at a time, inside one session."""

    def __init__(self, session: Session, list_id: int, list_is_new: bool, stamp: datetime) -> None:
        self.session = session
        self.list_id = list_id
        self.list_is_new = list_is_new
        self.stamp = stamp

    def write(self, rows: list[Row], summary: ImportSummary) -> None:
        if not rows:
            return
        session = self.session
        found = session.exec(
            select(Supporter).where(col(Supporter.email).in_([row.email for row in rows]))
        )
        existing = {supporter.email: supporter for supporter in found}
        members: set[int] = set()
        if existing and not self.list_is_new:
            ids = [supporter.id for supporter in existing.values()]
            members = set(
                session.exec(
                    select(Membership.supporter_id).where(
                        Membership.list_id == self.list_id,
                        col(Membership.supporter_id).in_(ids),
                    )
                )
            )
        joining: list[int] = []  # ids of supporters to add to the list
        new_rows: list[Row] = []
        for row in rows:
            supporter = existing.get(row.email)
            if supporter is None:
                new_rows.append(row)
                continue
            if self._merge(supporter, row):
                summary.updated += 1
            else:
                summary.unchanged += 1
            if supporter.id is not None and supporter.id not in members:
                joining.append(supporter.id)
        session.flush()  # the updates
        if new_rows:
            # Bulk statements rather than one ORM object per row: several times faster.
            created = session.exec(
                insert(Supporter).returning(col(Supporter.id)),
                params=[self._new(row) for row in new_rows],
            )
            joining.extend(supporter_id for (supporter_id,) in created)
            summary.added += len(new_rows)
        if joining:
            session.exec(
                insert(Membership),
                params=[
                    {"list_id": self.list_id, "supporter_id": sid, "added_at": self.stamp}
                    for sid in joining
                ],
            )
            summary.new_members += len(joining)
        session.expunge_all()  # keep memory flat: this chunk is done

    def _new(self, row: Row) -> dict[str, Any]:
        """The column values of a new supporter made from ``row``."""
        return {
            "email": row.email,
            "first_name": row.fields.get("first_name", ""),
            "last_name": row.fields.get("last_name", ""),
            "zip": row.fields.get("zip", ""),
            "region": row.fields.get("region", ""),
            "language": row.fields.get("language", DEFAULT_LANGUAGE),
            "custom": dict(row.custom),
            "status": SupporterStatus.ACTIVE,
            "status_changed_at": self.stamp,
            "created_at": self.stamp,
            "updated_at": self.stamp,
        }

    def _merge(self, supporter: Supporter, row: Row) -> bool:
        """Copy the row's non-empty values into ``supporter``; True if anything changed."""
        changed = False
        for name, value in row.fields.items():
            if getattr(supporter, name) != value:
                setattr(supporter, name, value)
                changed = True
        merged: dict[str, Any] = {**supporter.custom, **row.custom}
        if merged != supporter.custom:
            supporter.custom = merged  # a new dict, so the JSON column is seen as changed
            changed = True
        if changed:
            supporter.updated_at = self.stamp
        return changed


def _mailing_list(session: Session, name: str, stamp: datetime) -> tuple[int, bool]:
    """The id of the list called ``name`` (created if missing) and whether it is new."""
    found = session.exec(select(MailingList).where(MailingList.name == name)).first()
    if found is not None and found.id is not None:
        return found.id, False
    created = MailingList(name=name, created_at=stamp)
    session.add(created)
    session.flush()
    assert created.id is not None
    return created.id, True


# -- the public functions --------------------------------------------------------


def read_header(
    handle: BinaryIO, name: str
) -> tuple[Records, Iterator[tuple[int, list[str] | None]], list[Column]]:
    """The file's records, an iterator of those after the header, and the header's
    columns; :class:`ImportFileError` naming ``name`` for an empty file, an
    unreadable header or one without an email column."""
    records = Records(physical_lines(handle, name))
    rows = iter(records)
    header = next(rows, None)
    if header is None:
        raise ImportFileError(f"{name}: the file is empty; expected a header line first")
    line, titles = header
    if titles is None:
        raise ImportFileError(f"{name}, line {line}: unreadable header ({records.error})")
    return records, rows, map_columns(titles, name, line)


class _FirstLines:
    """The addresses accepted so far from one file, each with the line it was first
    accepted on, kept in a private temporary SQLite database on disk (SQLite's own
    "" file name): memory stays flat however long the file is, where a dict of a
    million addresses and lines takes about 140 MB."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")
        self._db.execute(
            "CREATE TABLE seen (email TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
        )

    def first_line(self, email: str, line: int) -> int | None:
        """None when ``email`` is new (it is kept, with ``line``), else its first line."""
        added = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (email, line))
        if added.rowcount:
            return None
        (first,) = self._db.execute("SELECT line FROM seen WHERE email = ?", (email,)).fetchone()
        return int(first)

    def close(self) -> None:
        self._db.close()


def import_csv(
    db: Database,
    path: Path,
    list_name: str,
    *,
    check_deliverability: bool = False,
    rejects_path: Path | None = None,
    actor: str = "cli",
    now: Callable[[], datetime] | None = None,
    label: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import the supporters in the CSV file ``path`` into the list ``list_name``.

    Returns what happened. Raises :class:`ImportFileError` for a file that
    cannot be imported at all (unreadable, not UTF-8, empty, no email
    column); bad rows are rejected and reported instead. With
    ``rejects_path``, the rejected rows are also written there as CSV.
    ``label`` names the file in messages and the event instead of ``path``
    (the name an upload was sent under); ``progress`` is called with the
    number of data records read so far after each chunk is stored.
    """
    name = label or str(path)
    list_name = list_name.strip()
    if not list_name:
        raise ImportFileError(f"{name}: the list name is empty; give the list a name")
    list_limit = max_length("name", MailingList)
    if list_limit is not None and len(list_name) > list_limit:
        raise ImportFileError(f"{name}: the list name is longer than {list_limit} characters")
    stamp = (now or utcnow)()
    summary = ImportSummary(file=name, list_name=list_name)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"{name}: cannot open the file ({exc.strerror})") from exc
    with handle, db.session() as session, contextlib.closing(_FirstLines()) as accepted:
        records, rows, columns = read_header(handle, name)
        checker = RowChecker(columns, check_deliverability=check_deliverability)
        list_id, list_is_new = _mailing_list(session, list_name, stamp)
        store = _Store(session, list_id, list_is_new, stamp)
        pending: list[Row] = []
        for line, values in rows:
            summary.rows += 1
            if values is None:
                summary.rejects.append(Reject(line, f"unreadable: {records.error}", {}))
                continue
            outcome = checker.check(line, values)
            if isinstance(outcome, str):
                summary.rejects.append(Reject(line, outcome, checker.raw(values)))
            elif (first := accepted.first_line(outcome.email, line)) is not None:
                summary.duplicates += 1
                reason = f"duplicate of line {first}"
                summary.rejects.append(Reject(line, reason, checker.raw(values)))
            else:
                pending.append(outcome)
                if len(pending) >= LOOKUP_CHUNK:
                    store.write(pending, summary)
                    pending = []
                    if progress is not None:
                        progress(summary.rows)
        store.write(pending, summary)
        audit(
            session,
            "list.imported",
            actor=actor,
            now=stamp,
            detail={
                "file": name,
                "list": list_name,
                "rows": summary.rows,
                "added": summary.added,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "duplicates": summary.duplicates,
                "rejected": summary.rejected,
            },
        )
        if rejects_path is not None and summary.rejects:
            write_rejects(summary.rejects, rejects_path)
    return summary


def write_rejects(rejects: list[Reject], path: Path) -> None:
    """Write ``rejects`` as CSV: line, reason, then the file's own columns.

    The file is UTF-8 with a byte-order mark, so spreadsheet programs open
    names like "Nguyễn" correctly; a value beyond the header's last column
    appears under ``extra_1``, ``extra_2``, ...
    """
    titles: dict[str, None] = {}
    for reject in rejects:
        titles.update(dict.fromkeys(reject.row))
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csvsafe.Writer(out)
        writer.writerow(["line", "reason", *titles])
        for reject in rejects:
            writer.writerow([reject.line, reject.reason, *(reject.row.get(t, "") for t in titles)])

"""Supporter files sent through the web admin: kept on disk, described, imported in the background.

Each upload has a folder of its own under ``import.upload_dir``, named by a
random token::

    upload.csv    the file as it was sent (removed once the import has run)
    upload.json   its name, who sent it, and what :func:`inspect_file` found
    status.json   the import's state and progress, replaced atomically
    rejects.csv   the rejected rows (line, reason, values), after the import

The file goes through the same importer as ``mailer import``
(:func:`mailer.supporters.importer.import_csv`), so the same rules, dedupe and
suppression apply, and it is one transaction: an import that fails stores
nothing. Before the organizer is asked to confirm, the whole file is read
once (:func:`inspect_file`) so that a file which is not UTF-8 text, is
binary, or has no email column is refused up front, with the line at fault.
The folder on disk is what several requests (and the import's thread) share,
so any web process of the same host can show an upload's progress.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mailer.errors import ImportFileError, MailerError
from mailer.lifecycle import audit
from mailer.store.engine import Database
from mailer.supporters.importer import import_csv, read_header

log = logging.getLogger(__name__)

#: The longest line a supporter file may have (a row of a spreadsheet is far shorter).
MAX_LINE_BYTES = 1024 * 1024
#: Rows shown under the column mapping before the organizer confirms.
SAMPLE_ROWS = 5
#: Share of NUL bytes in the file's first 64 KiB above which it is called binary
#: (a stray NUL in a cell is removed by the importer, as control characters are).
NUL_SHARE = 0.01

DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
_LINE_END = re.compile(rb"\r\n|\r|\n")

# What other kinds of files start with, to say what was sent instead of a CSV.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one)"),
    (b"\xd0\xcf\x11\xe0", "an old-style Office document (.xls or .doc)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (codecs.BOM_UTF16_LE, "UTF-16 text"),
    (codecs.BOM_UTF16_BE, "UTF-16 text"),
)

SAVE_AS = 'In Excel or LibreOffice choose "CSV UTF-8" when saving, then upload that file.'


class Scanner:
    """Watches the bytes of an upload as they arrive: size, binary signs, longest line."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""  # the first 64 KiB
        self.ascii = True
        self.lines = 1
        self.line_bytes = 0  # bytes since the last line end
        self.long_line = 0  # the number of the first line over MAX_LINE_BYTES, or 0

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < 65536:
            self.head += chunk[: 65536 - len(self.head)]
        self.size += len(chunk)
        self.ascii = self.ascii and chunk.isascii()
        pieces = _LINE_END.split(chunk)  # the first continues the line, the last goes on
        if self.long_line:
            return
        self.line_bytes += len(pieces[0])
        for offset, piece in enumerate(pieces[1:]):
            if self.line_bytes > MAX_LINE_BYTES:
                self.long_line = self.lines + offset
                return
            self.line_bytes = len(piece)
        self.lines += len(pieces) - 1
        if self.line_bytes > MAX_LINE_BYTES:
            self.long_line = self.lines

    def problem(self) -> str:
        """Why these bytes are not a supporter file, or ``""`` when they may be one."""
        if self.size == 0:
            return "the file is empty; expected a header line first"
        for magic, kind in _MAGIC:
            if self.head.startswith(magic):
                return f"this is {kind}, not a CSV file. {SAVE_AS}"
        if self.head.count(b"\0") > max(NUL_SHARE * len(self.head), 8):
            return f"this is not a text file (it is full of NUL bytes). {SAVE_AS}"
        if self.long_line:
            return (
                f"line {self.long_line} is longer than {MAX_LINE_BYTES // 1024} KiB; "
                "a supporter file has one supporter per line"
            )
        return ""


@dataclass
class FileFacts:
    """What the organizer is shown before confirming an import."""

    name: str  # the file's name as sent
    size: int  # bytes
    encoding: str  # "ASCII", "UTF-8" or "UTF-8 with byte-order mark"
    delimiter: str  # "comma", "semicolon" or "tab"
    rows: int  # data records (not blank lines, not the header)
    columns: list[dict[str, Any]] = field(default_factory=list)  # title, key, custom
    sample: list[list[str]] = field(default_factory=list)  # the first rows, as read


def inspect_file(path: Path, name: str, scanner: Scanner) -> FileFacts:
    """Read the whole of an uploaded file once, or :class:`ImportFileError` saying what is wrong.

    The checks are the importer's own (UTF-8, a header with an email column),
    made before anything is stored; ``scanner`` has watched the bytes arrive.
    """
    problem = scanner.problem()
    if problem:
        raise ImportFileError(f"{name}: {problem}")
    with path.open("rb") as handle:
        encoding = "UTF-8 with byte-order mark" if handle.read(3) == codecs.BOM_UTF8 else ""
        handle.seek(0)
        try:
            records, rows, columns = read_header(handle, name)
            sample: list[list[str]] = []
            count = 0
            for _, values in rows:
                count += 1
                if len(sample) < SAMPLE_ROWS:
                    sample.append(values or [f"(unreadable: {records.error})"])
        except ImportFileError as exc:
            if "not UTF-8" in str(exc):
                raise ImportFileError(
                    f"{exc}. It may be Windows-1252 or Latin-1, which Excel writes "
                    f'for plain "CSV". {SAVE_AS}'
                ) from None
            raise
    return FileFacts(
        name=name,
        size=scanner.size,
        encoding=encoding or ("ASCII" if scanner.ascii else "UTF-8"),
        delimiter=DELIMITER_NAMES.get(records.delimiter, repr(records.delimiter)),
        rows=count,
        columns=[{"title": c.title, "key": c.key, "custom": c.custom} for c in columns],
        sample=sample,
    )


# -- the folder of one upload -------------------------------------------------------


class Upload:
    """One upload's folder (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.token = folder.name
        self.csv = folder / "upload.csv"
        self.rejects = folder / "rejects.csv"

    @classmethod
    def new(cls, root: Path) -> Upload:
        root.mkdir(parents=True, exist_ok=True)
        folder = root / secrets.token_urlsafe(16)
        folder.mkdir(mode=0o700)
        return cls(folder)

    @classmethod
    def find(cls, root: Path, token: str) -> Upload | None:
        """The upload called ``token``, or None (also for anything not shaped like a token)."""
        if not _TOKEN.fullmatch(token) or not (root / token / "upload.json").is_file():
            return None
        return cls(root / token)

    def _write(self, name: str, data: dict[str, Any]) -> None:
        temporary = self.folder / f".{name}.{threading.get_ident()}"
        temporary.write_text(json.dumps(data), "utf-8")
        os.replace(temporary, self.folder / name)

    def _read(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.folder / name).read_text("utf-8"))
        return data

    def describe(self, facts: FileFacts, owner: str) -> None:
        self._write("upload.json", {"owner": owner, "facts": asdict(facts)})
        self._write("status.json", {"state": "ready", "done_rows": 0})

    def facts(self) -> FileFacts:
        return FileFacts(**self._read("upload.json")["facts"])

    def status(self) -> dict[str, Any]:
        """``state`` (ready, running, done, failed), ``done_rows``, and ``summary`` or ``error``."""
        return self._read("status.json")

    def set_status(self, **status: Any) -> None:
        self._write("status.json", status)

    def claim(self) -> bool:
        """True for the one caller that may start the import (a second click gets False)."""
        try:
            os.close(os.open(self.folder / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def run_import(
    db: Database,
    upload: Upload,
    list_name: str,
    *,
    actor: str,
    check_deliverability: bool,
    now: Callable[[], datetime],
) -> None:
    """Import ``upload`` into ``list_name``, recording progress and the outcome in its status.

    Meant to run in a thread of its own; never raises. The importer writes the
    ``list.imported`` audit event with the summary; a failed import writes
    ``list.import_failed`` with the reason, and stores nothing else.
    """
    facts = upload.facts()

    def progress(rows: int) -> None:
        upload.set_status(state="running", done_rows=rows, list=list_name)

    try:
        summary = import_csv(
            db,
            upload.csv,
            list_name,
            check_deliverability=check_deliverability,
            rejects_path=upload.rejects,
            actor=actor,
            now=now,
            label=facts.name,
            progress=progress,
        )
    except Exception as exc:  # the thread's boundary: every failure ends in the status
        if isinstance(exc, (MailerError, OSError)):
            reason = str(exc)
        else:
            log.exception("importing %s into %s failed", facts.name, list_name)
            reason = f"the import failed ({type(exc).__name__}); nothing was stored"
        upload.set_status(state="failed", done_rows=0, list=list_name, error=reason)
        with db.session() as session:
            audit(
                session,
                "list.import_failed",
                actor=actor,
                now=now(),
                detail={"file": facts.name, "list": list_name, "error": reason[:500]},
            )
    else:
        upload.set_status(
            state="done",
            done_rows=summary.rows,
            list=list_name,
            summary={
                "rows": summary.rows,
                "added": summary.added,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "duplicates": summary.duplicates,
                "rejected": summary.rejected,
                "new_members": summary.new_members,
            },
            rejects=[{"line": r.line, "reason": r.reason} for r in summary.rejects[:SHOWN_REJECTS]],
            more_rejects=max(0, len(summary.rejects) - SHOWN_REJECTS),
        )
    finally:
        upload.csv.unlink(missing_ok=True)


#: Rejected rows listed on the summary page (all of them are in rejects.csv).
SHOWN_REJECTS = 50


def start_import(
    db: Database,
    upload: Upload,
    list_name: str,
    *,
    actor: str,
    check_deliverability: bool,
    now: Callable[[], datetime],
) -> threading.Thread:
    """Start :func:`run_import` in a thread; the caller has :meth:`Upload.claim`-ed it."""
    upload.set_status(state="running", done_rows=0, list=list_name)
    thread = threading.Thread(
        target=run_import,
        args=(db, upload, list_name),
        kwargs={"actor": actor, "check_deliverability": check_deliverability, "now": now},
        name=f"import-{upload.token[:6]}",
        daemon=True,
    )
    thread.start()
    return thread

"""From the bytes of a CSV file to records, one at a time.

The file is read as bytes, line by line, and each line is decoded as UTF-8
(a byte-order mark at the start is dropped, as ``utf-8-sig`` would). A byte
that is not UTF-8 stops everything with :class:`ImportFileError` naming the
file, the line and the byte. Lines end in CRLF, LF or a bare CR (old Mac
exports); they are handed to :mod:`csv` with their endings, exactly as a file
opened with ``newline=""`` would be, so quoted fields keep embedded line
breaks and the reader's ``line_num`` counts physical lines.

The delimiter (comma, semicolon or tab) is guessed from the first
:data:`SNIFF_CHARS` characters by parsing them with each one: the first
record is the header, so the delimiter is the one that splits the header into
more than one field and the most records into as many fields as the header;
a comma when none splits the header, and on a tie (comma, then semicolon).
Quoting is as spreadsheets write it: ``"`` around a field, doubled inside.
(:class:`csv.Sniffer` guessed wrong on exports with mostly empty cells or a
quoted cell holding another delimiter.) The reader is strict, so broken
quoting is reported for that record instead of silently merging lines.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from itertools import chain
from typing import BinaryIO

from mailer.errors import ImportFileError

#: How much of the file's beginning the sniffer looks at.
SNIFF_CHARS = 64 * 1024
DELIMITERS = ",;\t"

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

# The csv module's wording for broken quoting, said in spreadsheet terms.
_PLAIN_ERRORS = {
    "unexpected end of data": "a quote is opened and never closed",
}


def physical_lines(handle: BinaryIO, name: str) -> Iterator[str]:
    """The decoded lines of ``handle`` with their endings; ``name`` is used in errors."""
    number = 1
    for chunk in handle:  # binary iteration splits after each b"\n"
        if number == 1:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = number + chunk.count(b"\r", 0, exc.start)  # bare CRs end lines too
            raise ImportFileError(
                f"{name}, line {line}: not UTF-8 text (byte 0x{chunk[exc.start]:02x}); "
                "save the file as UTF-8"
            ) from None
        if text.count("\r") > text.endswith("\r\n"):  # a bare CR inside: split there too
            pieces = _LINE.findall(text)
            number += len(pieces)
            yield from pieces
        else:
            number += 1
            yield text


def sniff_delimiter(sample: str) -> str:
    """The delimiter of ``sample`` among :data:`DELIMITERS`, or a comma when unsure.

    ``sample`` is the beginning of a file, ending at a line end or not.
    """
    lines = _LINE.findall(sample)
    best, best_score = ",", 0
    for delimiter in DELIMITERS:
        widths = _widths(lines, delimiter)
        if not widths or widths[0] < 2:
            continue  # the header is one field: not this delimiter
        score = widths.count(widths[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _widths(lines: list[str], delimiter: str) -> list[int]:
    """The number of fields of each non-blank record of ``lines`` split on ``delimiter``."""
    widths: list[int] = []
    try:
        for fields in csv.reader(lines, delimiter=delimiter):
            if any(value.strip() for value in fields):
                widths.append(len(fields))
    except csv.Error:  # the sample ends inside a quoted field, or worse: count what came before
        pass
    return widths


class Records:
    """The non-blank records of a file as ``(line, fields)``.

    ``line`` is the physical line the record starts on. ``fields`` is None for
    a record the csv module could not parse; :attr:`error` then says why.
    """

    def __init__(self, lines: Iterator[str]) -> None:
        head: list[str] = []
        size = 0
        for line in lines:
            head.append(line)
            size += len(line)
            if size >= SNIFF_CHARS:
                break
        self.delimiter = sniff_delimiter("".join(head))
        self._reader = csv.reader(chain(head, lines), delimiter=self.delimiter, strict=True)
        self.error = ""

    def __iter__(self) -> Iterator[tuple[int, list[str] | None]]:
        while True:
            start = self._reader.line_num + 1
            try:
                values = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                problem = str(exc)
                if problem.endswith("expected after '\"'"):
                    problem = f"text after a closing quote ({problem})"
                self.error = _PLAIN_ERRORS.get(problem, problem)
                yield start, None
                continue
            if any(value.strip() for value in values):
                yield start, values

"""From the bytes of a CSV file to records, one at a time.

The file is read as bytes, line by line, and each line is decoded as UTF-8
(a byte-order mark at the start is dropped, as ``utf-8-sig`` would). A byte
that is not UTF-8 stops everything with :class:`ImportFileError` naming the
file, the line and the byte. Lines end in CRLF, LF or a bare CR (old Mac
exports); they are handed to :mod:`csv` with their endings, exactly as a file
opened with ``newline=""`` would be, so quoted fields keep embedded line
breaks and the reader's ``line_num`` counts physical lines.

The delimiter is guessed by :class:`csv.Sniffer` (comma, semicolon or tab
only) from the first :data:`SNIFF_CHARS` characters; only the delimiter is
taken from it (quote ``"`` doubled inside quotes, as spreadsheets write), and
a comma is used when the sniffer cannot tell. The reader is strict, so broken
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
    """The delimiter of ``sample`` among :data:`DELIMITERS`, or a comma when unsure."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


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

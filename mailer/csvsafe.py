"""CSV cells a spreadsheet opens as text, never as a formula.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@``
(also after a tab or line break, and in their full-width forms) as a formula:
``=HYPERLINK(...)`` in a relay's reply or ``=cmd|...@example.org`` as an
address would run on the machine of whoever opens the export. Every CSV the
mailer writes goes through :func:`cell`, which puts a ``'`` in front of such
a value (the OWASP "CSV injection" advice). Nothing else is changed, so the
text stays readable and a value can be recovered by dropping that one quote.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

_T = TypeVar("_T")

# Characters that start a formula in Excel, LibreOffice or Google Sheets (and the
# full-width equals, plus, minus and at signs, which some of them also accept).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def cell(value: _T) -> _T | str:
    """``value`` with a ``'`` in front when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and (
        value.startswith(FORMULA_START) or value.lstrip(" \t\r\n").startswith(FORMULA_START)
    ):
        return "'" + value
    return value


def row(values: Iterable[Any]) -> list[Any]:
    """Every cell of a list row made safe."""
    return [cell(v) for v in values]


def record(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every cell of a dict row (for :class:`csv.DictWriter`) made safe."""
    return {k: cell(v) for k, v in values.items()}


class Writer:
    """:func:`csv.writer` whose rows are made safe: use it wherever a CSV is written."""

    def __init__(self, out: Any, **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, values: Iterable[Any]) -> None:
        self._writer.writerow(row(values))


class DictWriter:
    """:class:`csv.DictWriter` whose rows are made safe (the header is ours, left as is)."""

    def __init__(self, out: Any, fieldnames: Iterable[str], **options: Any) -> None:
        self._writer = csv.DictWriter(out, fieldnames=list(fieldnames), **options)

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, values: Mapping[str, Any]) -> None:
        self._writer.writerow(record(values))

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for values in rows:
            self.writerow(values)

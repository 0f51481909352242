"""Reading a CSV file's bytes (``mailer.supporters.reading``): the delimiter guess, alone.

Whatever a spreadsheet writes with a comma, a semicolon or a tab, quoted or
not, with or without a byte-order mark, the delimiter it used is found; what
cannot be told apart falls back to a comma; no text makes the guess fail.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailer.errors import ImportFileError
from mailer.supporters.reading import DELIMITERS, Records, physical_lines, sniff_delimiter

Quoting = Literal[0, 1, 2, 3]  # csv.QUOTE_MINIMAL, QUOTE_ALL, QUOTE_NONNUMERIC, QUOTE_NONE
QUOTINGS: list[Quoting] = [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]


def written(rows: list[list[str]], delimiter: str, quoting: Quoting, line_end: str = "\r\n") -> str:
    """``rows`` as the csv module writes them, as a spreadsheet's export would be."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=line_end)
    writer.writerows(rows)
    return out.getvalue()


def records_of(data: bytes) -> Records:
    return Records(physical_lines(io.BytesIO(data), "people.csv"))


# Cell text as people type it: letters (any script), digits, spaces and punctuation,
# quotes, and now and then another delimiter or a line break inside a quoted cell.
cell_text = st.text(
    st.one_of(
        st.characters(categories=["L", "N"]),
        st.sampled_from(list(" .-_@'\"!?()/&+#")),
        st.sampled_from(list(DELIMITERS + "\n")),
    ),
    max_size=12,
)
plain_text = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
delimiters = st.sampled_from(list(DELIMITERS))
quotings = st.sampled_from(QUOTINGS)


@st.composite
def tables(draw: st.DrawFn, cells: st.SearchStrategy[str] = cell_text) -> list[list[str]]:
    """A header of distinct plain names, then rows of the same width (at least two columns)."""
    width = draw(st.integers(2, 6))
    header = draw(st.lists(plain_text, min_size=width, max_size=width, unique=True))
    rows = draw(st.lists(st.lists(cells, min_size=width, max_size=width), min_size=1, max_size=8))
    return [header, *rows]


@settings(max_examples=400, deadline=None)
@given(table=tables(), delimiter=delimiters, quoting=quotings)
def test_the_delimiter_a_csv_writer_used_is_found(
    table: list[list[str]], delimiter: str, quoting: Quoting
) -> None:
    text = written(table, delimiter, quoting)
    assert sniff_delimiter(text) == delimiter, text


@settings(max_examples=200, deadline=None)
@given(
    table=tables(),
    delimiter=delimiters,
    quoting=quotings,
    bom=st.booleans(),
    line_end=st.sampled_from(["\r\n", "\n", "\r"]),
)
def test_a_written_file_reads_back_as_written(
    table: list[list[str]], delimiter: str, quoting: Quoting, bom: bool, line_end: str
) -> None:
    # The csv module quotes a cell holding a line break only when the break is part of
    # its line terminator: with bare CRs a cell's LF goes unquoted, unreadable by anyone.
    assume(line_end != "\r" or not any("\n" in value for row in table for value in row))
    text = written(table, delimiter, quoting, line_end)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    records = records_of(data)
    assert records.delimiter == delimiter
    read = [fields for _, fields in records]
    expected = [row for row in table if any(value.strip() for value in row)]  # blanks skipped
    assert read == expected, text


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(plain_text, min_size=1, max_size=1), min_size=1, max_size=8))
def test_a_single_column_is_read_with_a_comma(rows: list[list[str]]) -> None:
    text = written([["email"], *rows], ",", csv.QUOTE_MINIMAL)
    assert sniff_delimiter(text) == ","
    assert [fields for _, fields in records_of(text.encode())] == [["email"], *rows]


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("email;first_name\r\nana@example.org;Ana\r\n", ";"),
        ("email\tfirst_name\nana@example.org\tAna\n", "\t"),
        ('"email","first_name"\n"ana@example.org","Ana"\n', ","),
        ('email;note\nana@example.org;"one, two, three"\nbo@example.org;"x, y"\n', ";"),
        ('email,note\nana@example.org,"a;b;c"\nbo@example.org,"d;e"\n', ","),
        ("email\nana@example.org\n", ","),
        # Two that csv.Sniffer got wrong (it was used before).
        ("zip;a;b;c\r\n" + ";;;\r\n" * 6 + ';;;";"\r\n', ";"),
        ('email;name\r;","\r', ";"),
        ("", ","),
        ("\n\n", ","),
        ('"', ","),
    ],
    ids=[
        "semicolon",
        "tab",
        "quoted comma",
        "commas inside quoted semicolon cells",
        "semicolons inside quoted comma cells",
        "one column",
        "mostly empty cells",
        "a quoted comma alone, CR line ends",
        "empty",
        "blank lines",
        "a lone quote",
    ],
)
def test_examples(text: str, delimiter: str) -> None:
    assert sniff_delimiter(text) == delimiter


@settings(max_examples=500, deadline=None)
@given(sample=st.text())
def test_any_text_gets_one_of_the_supported_delimiters(sample: str) -> None:
    assert sniff_delimiter(sample) in DELIMITERS


def _lines(data: bytes) -> Iterator[str]:
    return physical_lines(io.BytesIO(data), "people.csv")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_hostile_bytes_are_read_or_refused_with_the_file_and_line(data: bytes) -> None:
    def read() -> list[tuple[int, list[str] | None]]:
        records = Records(_lines(data))
        assert records.delimiter in DELIMITERS
        found = list(records)
        assert all(line >= 1 and (fields is not None or records.error) for line, fields in found)
        return found

    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(ImportFileError, match=r"^people\.csv, line \d+: not UTF-8 text"):
            read()
    else:
        read()

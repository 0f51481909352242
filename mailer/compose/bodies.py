"""The bodies' Content-Transfer-Encoding: of a whole text, or of a spliced one line by line.

:func:`encode_body` encodes one part of a message as :mod:`mailer.compose.fastmime`
describes: UTF-8, CRLF line ends, ``7bit`` when the text can go as it is, else
quoted-printable.

Each of its steps works line by line. CR and LF end a line wherever they stand;
``binascii.b2a_qp`` in text mode, given no CR, starts every line afresh (its
soft breaks, ``=2E`` for a lone ``.`` and escaped trailing whitespace are all
decided within the line); the 7bit test asks each line the same questions (the
boundary holds no line break, so it cannot span two); and :func:`_repair`
mends each line of the quoted-printable on its own. So the encoding of a text
is the lines' encodings joined, once the part's Content-Transfer-Encoding and
whether to repair are decided over all of them.

A spliced body (:mod:`mailer.compose.splice`) is the same for every recipient
of its variant except on the lines that hold a value. :func:`prepare_body`
encodes its other lines once, both ways (as they are and quoted-printable), in
runs of consecutive lines; :meth:`PreparedBody.encode` then fills and encodes
only the lines with a value, decides the part's encoding as
:func:`encode_body` decides it for the whole text, and joins the runs and the
lines: the same bytes, without encoding the whole body per message. A value
holding a CR or LF would change the lines; such a message is left to
:func:`encode_body`.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["EncodedBodies", "PreparedBody", "encode_body", "prepare_body"]

_QP_LINE = 76  # RFC 2045 6.7 (5)
_7BIT_LINE = 998  # RFC 2045 2.7 / RFC 5322 2.1.1: octets in a line, CRLF not counted
_PLAIN = b"\t\n" + bytes(range(0x20, 0x7F))  # what a 7bit part may hold as it is

# A text with slots: its chunks ("" where a value goes) and (index in chunks, marker).
Chunks = tuple[list[str], list[tuple[int, int]]]


def _repair(qp: bytes) -> bytes:
    """Quoted-printable text (LF line ends) with ``From `` escaped and long lines re-broken.

    A line-initial ``From `` becomes ``=46rom ``. ``b2a_qp`` lets a line grow to 77
    or 78 characters when it ends in a space or tab that it escapes after placing it
    (``=20``, ``=09``), and the ``From`` escape adds two; any line over 76 gets a
    soft break, never inside an ``=XX`` escape.
    """
    out: list[bytes] = []
    for line in qp.split(b"\n"):
        if line.startswith(b"From "):
            line = b"=46" + line[1:]
        while len(line) > _QP_LINE:
            cut = _QP_LINE - 1
            if line[cut - 1] == 0x3D:  # an "=" the cut would separate from its hex digits
                cut -= 1
            elif line[cut - 2] == 0x3D:
                cut -= 2
            out.append(line[:cut] + b"=")
            line = line[cut:]
            if line.startswith(b"From "):
                line = b"=46" + line[1:]
        out.append(line)
    return b"\n".join(out)


def _needs_repair(qp: bytes) -> bool:
    """Could :func:`_repair` change ``qp``: a ``From `` or an escaped trailing whitespace?"""
    return (
        qp.startswith(b"From ")
        or b"\nFrom " in qp
        or b"=20\n" in qp  # escaped trailing whitespace: the line may be too long
        or b"=09\n" in qp
    )


def _plain_7bit(data: bytes, avoid: bytes) -> bool:
    """Can ``data`` (LF line ends) go unencoded as ``7bit`` (RFC 2045 2.7)?

    ASCII, no control character but TAB, lines of at most 998 octets, no
    line ending in a space or TAB (a transport may strip it), no line
    starting with ``From `` (an mbox store would mangle it), and without
    ``avoid`` (the multipart boundary) anywhere in it.
    """
    return (
        not data.translate(None, _PLAIN)  # nothing but printable ASCII, TAB and LF
        and b" \n" not in data
        and b"\t\n" not in data
        and not data.startswith(b"From ")
        and b"\nFrom " not in data
        and not (avoid and avoid in data)
        and (len(data) <= _7BIT_LINE or max(map(len, data.split(b"\n"))) <= _7BIT_LINE)
    )


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def encode_body(text: str, avoid: bytes = b"") -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body with CRLF line ends ending in CRLF) for ``text``.

    ``7bit`` when the text can go as it is (see :func:`_plain_7bit`; ``avoid``
    is the boundary it must not contain), else quoted-printable.
    """
    data = text.encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    if _plain_7bit(data, avoid):
        return "7bit", data.replace(b"\n", b"\r\n")
    qp = _qp(data)
    if _needs_repair(qp):
        qp = _repair(qp)
    cte = "7bit" if qp == data else "quoted-printable"
    return cte, qp.replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class EncodedBodies:
    """A message's parts already encoded, (Content-Transfer-Encoding, body) or None,
    for a multipart whose boundary is ``avoid``."""

    avoid: bytes
    text: tuple[str, bytes] | None
    html: tuple[str, bytes] | None


class PreparedBody:
    """A text with slots, its lines without a slot encoded once (see the module notes).

    The text is ``runs[0]``, ``lines[0]``, ``runs[1]``, …, ``runs[-1]``: each run
    is the consecutive lines without a slot (possibly none) and each line holds
    at least one.
    """

    def __init__(
        self, avoid: bytes, runs: list[bytes], lines: list[Chunks], *, vanish: bool
    ) -> None:
        self.avoid = avoid
        self._lines = lines
        self._vanish = vanish  # the last line holds a slot and is dropped when it is empty
        qp = [_qp(run) for run in runs]
        repaired = [_repair(run) for run in qp]
        self._plain = all(_plain_7bit(run, avoid) for run in runs)
        self._must_repair = any(map(_needs_repair, qp))
        self._qp_same = qp == runs
        self._repaired_same = repaired == runs
        # The runs in place, b"" where the lines go: as they are, quoted-printable, repaired.
        self._as_is = self._spaced(runs)
        self._qp = self._spaced(qp)
        self._repaired = self._spaced(repaired)

    @staticmethod
    def _spaced(runs: list[bytes]) -> list[bytes]:
        out = [b""] * (2 * len(runs) - 1)
        out[::2] = [run.replace(b"\n", b"\r\n") for run in runs]
        return out

    def encode(self, fill: Mapping[int, str]) -> tuple[str, bytes] | None:
        """``encode_body`` of the text with ``fill[marker]`` in each slot, or None
        when a value would change the lines (a CR or LF) or cannot be UTF-8."""
        datas: list[bytes] = []
        for chunks, slots in self._lines:
            filled = chunks.copy()
            for at, marker in slots:
                filled[at] = fill[marker]
            line = "".join(filled)
            if "\n" in line or "\r" in line:
                return None
            try:
                datas.append(line.encode("utf-8") + b"\n")
            except UnicodeEncodeError:
                return None
        if self._vanish and datas[-1] == b"\n":
            datas[-1] = b""  # the text ends with the line break before it
        if self._plain and _plain_7bit(b"".join(datas), self.avoid):  # line by line as well
            out = self._as_is.copy()
            out[1::2] = [data.replace(b"\n", b"\r\n") for data in datas]
            return "7bit", b"".join(out)
        qps = [_qp(data) for data in datas]
        if self._must_repair or _needs_repair(b"".join(qps)):
            qps = [_repair(qp) for qp in qps]
            out, same = self._repaired.copy(), self._repaired_same
        else:
            out, same = self._qp.copy(), self._qp_same
        out[1::2] = [qp.replace(b"\n", b"\r\n") for qp in qps]
        cte = "7bit" if same and qps == datas else "quoted-printable"
        return cte, b"".join(out)


def prepare_body(
    chunks: Sequence[str], slots: Sequence[tuple[int, int]], avoid: bytes
) -> PreparedBody | None:
    """The text ``chunks`` with a value going at each (index, marker) of ``slots``,
    prepared for :meth:`PreparedBody.encode`; None when only :func:`encode_body`
    of the whole text is exact.

    That is when ``avoid`` holds a line break, when a chunk followed by another
    ends in CR (with a LF after it, or after empty values, the two would be one
    line break) and when a chunk cannot be UTF-8.
    """
    if b"\n" in avoid:
        return None
    marker_at = dict(slots)
    split: list[list[str | int]] = [[]]  # the lines: text and markers
    for index, chunk in enumerate(chunks):
        marker = marker_at.get(index)
        if marker is not None:
            split[-1].append(marker)
            continue
        if chunk.endswith("\r") and index + 1 < len(chunks):
            return None
        first, *rest = chunk.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        split[-1].append(first)
        split.extend([piece] for piece in rest)
    # After the last line break: nothing (no line), text (a line without its break) or a
    # line with a slot, which is no line when its values are empty.
    vanish = len(split) > 1 and any(isinstance(piece, int) for piece in split[-1])
    if len(split) > 1 and all(piece == "" for piece in split[-1]):
        split.pop()
    runs: list[bytes] = [b""]
    lines: list[Chunks] = []
    try:
        for pieces in split:
            texts = [piece if isinstance(piece, str) else "" for piece in pieces]
            places = [(at, piece) for at, piece in enumerate(pieces) if isinstance(piece, int)]
            if places:
                lines.append((texts, places))
                runs.append(b"")
            else:
                runs[-1] += "".join(texts).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return None
    return PreparedBody(avoid, runs, lines, vanish=vanish)

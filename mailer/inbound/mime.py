"""Reading MIME without trusting it: headers, parts, report fields, the quoted original.

Everything here uses the ``compat32`` policy of the standard ``email`` package,
which keeps odd input as text instead of raising, and cleans what it returns
(see :func:`clean`), because every value may end up in the database.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterator
from email.errors import HeaderParseError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32
from html import unescape

TEXT_LIMIT = 1000  # characters kept of any one piece of evidence
MAX_PARTS = 200
_MAX_DEPTH = 20
_ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"}
)


def clean(text: str, limit: int = TEXT_LIMIT) -> str:
    """One line of storable text: no controls, no lone surrogates, at most ``limit``."""
    text = text[: limit * 8]  # enough for ``limit`` characters after spaces are folded
    try:  # bytes the parser kept as surrogates: read them as UTF-8
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:limit]


def header(msg: Message, name: str) -> str:
    """Header ``name`` decoded (RFC 2047, or raw UTF-8) and cleaned; empty when absent."""
    value = msg.get(name)
    return "" if value is None else _decode(value)


def _decode(value: str | Header) -> str:
    try:
        pieces = decode_header(value)
        if all(charset != "unknown-8bit" for _, charset in pieces):
            return clean(str(make_header(pieces)))
        # Raw 8-bit text (RFC 6532 allows UTF-8 in headers): the parser keeps it as bytes.
        return clean(
            "".join(
                p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p, _ in pieces
            )
        )
    except (LookupError, UnicodeError, ValueError, HeaderParseError):
        return clean(str(value))


def headers(msg: Message, name: str) -> list[str]:
    """Every header ``name``, decoded and cleaned."""
    return [_decode(v) for v in msg.get_all(name) or []]


def mime_parts(msg: Message, depth: int = 0) -> Iterator[Message]:
    """The message and its MIME parts, not descending into attached messages."""
    yield msg
    if depth >= _MAX_DEPTH or msg.get_content_maintype() != "multipart":
        return
    payload = msg.get_payload()
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                yield from mime_parts(sub, depth + 1)


def body_text(part: Message) -> str:
    """A non-multipart part's body as text (transfer encoding and charset undone)."""
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _blocks(text: str) -> list[Message]:
    return [
        HeaderParser(policy=compat32).parsestr(block.strip("\r\n") + "\n")
        for block in re.split(r"\r?\n[ \t]*\r?\n", text)
        if block.strip()
    ]


def field_blocks(part: Message) -> list[Message]:
    """The header-like blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _blocks(body_text(part))
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        # The parser took the still-encoded text for header blocks; encoded text has no
        # "name:" lines, so it is all in their bodies: join those and decode.
        if encoding == "base64":
            pieces = [
                item.get_payload(decode=True) for item in payload if isinstance(item, Message)
            ]
            body = b"\n".join(p for p in pieces if isinstance(p, bytes))
        else:  # quoted-printable text mostly keeps its "name:" lines: undo it as a whole
            text = "\n".join(item.as_string() for item in payload if isinstance(item, Message))
            body = text.encode("utf-8", "surrogateescape")
        try:
            raw = base64.b64decode(body) if encoding == "base64" else quopri.decodestring(body)
        except (binascii.Error, ValueError):
            return []
        return _blocks(raw.decode("utf-8", "replace"))
    blocks: list[Message] = []
    for item in payload:
        if isinstance(item, Message):
            blocks.append(item)
            rest = item.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks.extend(_blocks(body_text(item)))  # the parser kept later blocks as a body
    return blocks


def original_of(parts: list[Message]) -> Message | None:
    """The returned original message (or just its headers), when the report includes it."""
    for part in parts:
        ctype = part.get_content_type()
        if ctype not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes) and raw.strip():
            return BytesHeaderParser(policy=compat32).parsebytes(raw.lstrip())
    return None


def parse_headers(text: str) -> Message:
    """The header block at the start of ``text`` (e.g. an original quoted in prose)."""
    return HeaderParser(policy=compat32).parsestr(text.lstrip(), headersonly=True)


_TAG = re.compile(
    r"<(?:script|style)\b.*?</(?:script|style)\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL
)
_BREAK = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)


def html_text(html: str) -> str:
    """The text of an HTML part: line breaks kept, tags dropped, entities undone."""
    text = _TAG.sub(" ", _BREAK.sub("\n", html[:200_000]))
    return unescape(text)

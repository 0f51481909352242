"""A fast MIME builder: the message of :func:`~mailer.compose.message.build_message`, as bytes.

``EmailMessage`` plus ``as_bytes()`` costs milliseconds per recipient, most of it in
the generic header parser and folder. :class:`MessageBuilder` prepares everything
that is the same for every message of a blast once (From, Reply-To, List-Id, the
MIME skeleton and its boundary) and per recipient only encodes the parts that
change: To, Subject (kept per subject text), Date, Message-ID, List-Unsubscribe,
Content-Language (kept per language) and the two bodies, which
:mod:`mailer.compose.bodies` encodes (a spliced alert brings them already
encoded, from lines encoded once per blast).

The output is::

    From / To / [Reply-To] / Subject / Date / Message-ID / List-Id /
    List-Unsubscribe / List-Unsubscribe-Post / Content-Language /
    MIME-Version: 1.0 / Content-Type: multipart/alternative; boundary="=_…"

    --=_…            text/plain; charset="utf-8"
    --=_…            text/html; charset="utf-8"
    --=_…--

Format choices:

* **Line endings** are CRLF everywhere and no line is longer than 998 octets
  (RFC 5322 2.1.1, 2.3). Header lines are folded at spaces to stay within 78
  characters (RFC 5322 2.2.3); only a token without a folding point (a long URL
  or address) can make a line longer, never beyond 998.
* **The message is pure ASCII** (7bit), so it needs neither 8BITMIME nor SMTPUTF8.
* **Header text** (display names, Subject) first passes
  :func:`~mailer.compose.message.header_text`: no control or line-break character
  survives, so supporter text can never end a header line and start another
  (header injection), and ``=?`` is split so text cannot pose as an encoded word.
  The values this module takes from the program itself (Message-ID, the
  unsubscribe URL, Content-Language, addresses) are checked and refused with
  ``ValueError`` when they contain anything that could break a line.
* **Non-ASCII header text** becomes RFC 2047 encoded words, ``=?utf-8?q?…?=``, or
  ``=?utf-8?b?…?=`` when Q would be more than a quarter longer, each at most 75
  characters (RFC 2047 2)
  and holding whole characters only (RFC 2047 5). Only the words that need it
  are encoded; consecutive such words form one run with their spaces inside the
  encoded text, because whitespace between two adjacent encoded words is not
  part of the text (RFC 2047 6.2), while whitespace between an encoded word and
  plain text is. Q encoding always uses the restricted set allowed in a phrase
  (RFC 2047 5(3)): letters, digits and ``!*+-/``; everything else is ``=XX``.
* **List-Unsubscribe** (RFC 2369 3.2) holds two URLs in angle brackets, which
  must stay literal (an encoded word there is not decoded); it is folded only at
  the space after the comma, so a long token can make its second line long.
  ``build_message`` lets the ``email`` package fold it, which with real-length
  tokens turns the mailto target into encoded words; the targets are the same.
* **Display names** (RFC 5322 3.4) are written as atoms when every word is made
  of ``atext``; as one quoted-string with ``\\`` and ``"`` escaped as quoted-pairs
  (RFC 5322 3.2.4) when they are ASCII with specials and fit on a line (a
  quoted-string is never folded); otherwise as atoms mixed with encoded words
  (an encoded word may not appear inside a quoted-string, RFC 2047 5(3)).
  Addresses that are not a plain ``dot-atom@domain`` (quoted local parts,
  non-ASCII) are rare and go through the ``email`` package, exactly as
  ``build_message`` does.
* **Bodies** are UTF-8. Line breaks (CRLF, lone CR, lone LF, as the ``email``
  package counts them) become CRLF and the text ends with one. Each part is
  quoted-printable (RFC 2045 6.7) from the C ``binascii.b2a_qp``: lines at most
  76 characters with soft breaks, ``=`` and non-ASCII escaped, trailing spaces and
  tabs escaped so transports that strip them change nothing (``b2a_qp`` can leave
  a line ending in such an escape at 77 or 78 characters; those lines are
  re-broken). A part that can go as it is goes unencoded as ``7bit`` (RFC
  2045 2.7): ASCII, no control character but TAB, lines of at most 998
  octets, no line ending in whitespace, no line starting with ``From ``, and
  not containing the boundary. That is the usual English HTML part, and it
  skips quoted-printable's cost (the largest part of building a message) and
  its ``=3D`` escapes. A line starting with ``From `` is
  written ``=46rom `` (RFC 2049 3 (8)) so an mbox store cannot mangle it into
  ``>From``; such a part is always quoted-printable. Lines starting with ``.``
  are left alone (a line holding just ``.`` is ``=2E`` by ``b2a_qp``): SMTP
  dot-stuffing (RFC 5321 4.5.2) is the transport's job.
* **The boundary** is random per builder and starts with ``=_``. Quoted-printable
  output never contains ``=_`` (an ``=`` is always followed by two hex digits or
  a line break), and a ``7bit`` part is checked not to contain the boundary
  (else it is quoted-printable), so the boundary cannot occur inside a part
  (RFC 2046 5.1.1). Since ``=``
  is a ``tspecial`` the parameter is quoted (RFC 2045 5.1).
* ``Date`` is formatted as ``email.utils.format_datetime`` does (RFC 5322 3.3),
  without its per-call overhead.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.utils import format_datetime
from urllib.parse import quote

from mailer.compose.bodies import EncodedBodies, encode_body
from mailer.compose.message import POLICY, Identity, header_text, unsubscribe_address
from mailer.compose.templates import RenderedAlert

__all__ = ["MessageBuilder", "encode_body", "format_date"]

_CRLF = "\r\n"
_FOLD = "\r\n "
_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters
_WORD = 75  # RFC 2047 2: an encoded word is at most 75 characters
_OVERHEAD = len("=?utf-8?q??=")  # 12, the same for b
_MIN_ROOM = _OVERHEAD + 12  # the longest single-character encoded word (4 bytes in Q)

# RFC 5322 3.2.3 atext.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ATOM = re.compile(f"[{_ATEXT}]+")
_ATOMS = re.compile(f"[{_ATEXT} ]+")
# The addresses the fast path writes itself: dot-atom local part and domain, ASCII.
_SIMPLE_ADDRESS = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*")
_VCHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*")  # what urllib.parse.quote leaves alone

# RFC 2047 5(3): in a phrase only these may stand for themselves in Q encoding.
_Q_LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE: tuple[str, ...] = tuple(
    chr(b) if b in _Q_LITERAL else "_" if b == 0x20 else f"={b:02X}" for b in range(256)
)

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MINUTE = timedelta(minutes=1)

# A token of a header value: (needs encoding, text). Plain tokens are written as they
# are; encoded tokens become one or more encoded words.
_Token = tuple[bool, str]


def format_date(date: datetime) -> str:
    """``date`` as RFC 5322 3.3 date-time, the same text as ``format_datetime``."""
    offset = date.utcoffset()
    if offset is None or offset % _MINUTE:
        return format_datetime(date)  # naive ("-0000") or an offset with seconds: rare
    minutes = offset // _MINUTE
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{_DAYS[date.weekday()]}, {date.day:02d} {_MONTHS[date.month - 1]} {date.year:04d} "
        f"{date.hour:02d}:{date.minute:02d}:{date.second:02d} {sign}{hours:02d}{minutes:02d}"
    )


def _encoded_words(text: str, room: int) -> list[str]:
    """``text`` as RFC 2047 encoded words: the first at most ``room`` long, the rest 75.

    Q, which stays readable for mostly-Latin text, unless it would be more than a
    quarter longer than B for the whole run; words are cut between characters,
    never inside one.
    """
    chars = [ch.encode("utf-8") for ch in text]
    q_pieces = ["".join([_Q_BYTE[b] for b in ch]) for ch in chars]
    q_len = sum(map(len, q_pieces))
    n_bytes = sum(map(len, chars))
    words: list[str] = []
    if q_len * 4 <= 5 * 4 * ((n_bytes + 2) // 3):  # Q unless it is over 25% longer
        current: list[str] = []
        size = 0
        for piece in q_pieces:
            if current and _OVERHEAD + size + len(piece) > room:
                words.append("=?utf-8?q?" + "".join(current) + "?=")
                current, size, room = [], 0, _WORD
            current.append(piece)
            size += len(piece)
        words.append("=?utf-8?q?" + "".join(current) + "?=")
    else:
        chunk = bytearray()
        for ch in chars:
            if chunk and _OVERHEAD + 4 * ((len(chunk) + len(ch) + 2) // 3) > room:
                words.append(
                    "=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False).decode() + "?="
                )
                chunk, room = bytearray(), _WORD
            chunk += ch
        words.append("=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False).decode() + "?=")
    return words


def _fold(name: str, tokens: Sequence[_Token]) -> str:
    """One header field, ``name: tokens``, folded at the spaces between tokens.

    Plain tokens are never split; the first one stays on the name's line even when
    that makes the line long (only a token without folding points, such as a URL,
    can be longer than the room there). Encoded tokens fill the line they start on.
    """
    out = [name, ":"]
    line = len(name) + 1
    first = True
    for encode, text in tokens:
        if encode:
            room = min(_WORD, _LINE - line - 1)
            if room < _MIN_ROOM:
                out.append(_FOLD)
                line, room = 1, _WORD
            else:
                out.append(" ")
                line += 1
            words = _encoded_words(text, room)
            out.append(words[0])
            line += len(words[0])
            for word in words[1:]:
                out.append(_FOLD)
                out.append(word)
                line = 1 + len(word)
        else:
            if not first and line + 1 + len(text) > _LINE:
                out.append(_FOLD)
                line = 1
            else:
                out.append(" ")
                line += 1
            out.append(text)
            line += len(text)
        first = False
    out.append(_CRLF)
    return "".join(out)


def _word_tokens(text: str, plain: re.Pattern[str] | None, limit: int) -> list[_Token]:
    """Split header text at its spaces into plain words and runs to encode.

    A word stays plain when it is ASCII (and, for a phrase, matches ``plain``) and
    no longer than ``limit``; consecutive other words form one run, spaces inside.
    """
    tokens: list[_Token] = []
    run: list[str] = []
    for word in text.split(" "):
        if (
            word.isascii()
            and len(word) <= limit
            and (plain is None or plain.fullmatch(word) is not None)
        ):
            if run:
                tokens.append((True, " ".join(run)))
                run = []
            tokens.append((False, word))
        else:
            run.append(word)
    if run:
        tokens.append((True, " ".join(run)))
    return tokens


def _phrase_tokens(display: str, limit: int) -> list[_Token]:
    """A display name (already ``header_text``) as RFC 5322 3.2.5 phrase tokens."""
    if display.isascii() and _ATOMS.fullmatch(display) is None:
        quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= limit:
            return [(False, quoted)]
    return _word_tokens(display, _ATOM, limit)


def _stdlib_header(name: str, value: object) -> str:
    """A header folded by the ``email`` package exactly as ``build_message`` gets it."""
    _, parsed = POLICY.header_store_parse(name, value)
    return POLICY.fold_binary(name, parsed).decode("ascii")


def _address_header(name: str, display_name: str, address: str) -> str:
    display = header_text(display_name)
    if len(address) > 254 or _SIMPLE_ADDRESS.fullmatch(address) is None or "=?" in address:
        return _stdlib_header(name, Address(display_name=display, addr_spec=address))
    if not display:
        return f"{name}: {address}\r\n"
    if len(name) + len(display) + len(address) + 5 <= _LINE and _ATOMS.fullmatch(display):
        return f"{name}: {display} <{address}>\r\n"  # atoms on one line: what _fold gives
    tokens = _phrase_tokens(display, _LINE - 2 - len(name))
    tokens.append((False, f"<{address}>"))
    return _fold(name, tokens)


def _checked(value: str, what: str) -> str:
    """A program-made header token: printable ASCII without spaces, or ValueError."""
    if len(value) > 900 or _VCHARS.fullmatch(value) is None:
        raise ValueError(f"{what} must be printable ASCII without spaces: {value!r}")
    return value


class MessageBuilder:
    """Prepared once per blast from its Identity; builds one recipient's message as bytes."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.boundary = "=_" + secrets.token_hex(16)
        self._boundary_bytes = self.boundary.encode("ascii")
        self._from = _address_header("From", identity.from_name, identity.from_address)
        self._reply_to = _stdlib_header("Reply-To", identity.reply_to) if identity.reply_to else ""
        self._list_id = _stdlib_header("List-Id", identity.list_id)
        mailto = _checked(identity.unsubscribe_mailto, "unsubscribe mailto address")
        self._mailto = f"<mailto:{mailto}?subject=unsubscribe%20"
        self._mailto_token = identity.verp  # the token in the address too (see unsubscribe_address)
        self._languages: dict[str, str] = {}
        self._subjects: dict[str, str] = {}  # most recipients of a language share a subject
        self._post = "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        self._mime = (
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative;\r\n boundary="{self.boundary}"\r\n'
            "\r\n"
        )
        self._delimiter = f"--{self.boundary}\r\n".encode("ascii")
        self._plain_head = 'Content-Type: text/plain; charset="utf-8"\r\n'.encode("ascii")
        self._html_head = 'Content-Type: text/html; charset="utf-8"\r\n'.encode("ascii")
        self._close = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        self._next = b"\r\n" + self._delimiter

    def _mailto_for(self, unsubscribe_token: str) -> str:
        if not self._mailto_token:
            return self._mailto
        address = _checked(
            unsubscribe_address(self.identity, unsubscribe_token), "unsubscribe mailto address"
        )
        return f"<mailto:{address}?subject=unsubscribe%20"

    def _subject(self, subject: str) -> str:
        line = self._subjects.get(subject)
        if line is None:
            text = header_text(subject)
            if text and text.isascii() and len(text) + len("Subject: ") <= _LINE:
                line = f"Subject: {text}\r\n"  # one line of plain words: what _fold gives
            elif text:
                line = _fold("Subject", _word_tokens(text, None, _LINE - 2 - len("Subject")))
            else:
                line = "Subject:\r\n"
            if len(self._subjects) < 256:
                self._subjects[subject] = line
        return line

    def _language(self, language: str) -> str:
        line = self._languages.get(language)
        if line is None:
            line = _stdlib_header("Content-Language", language)
            if len(self._languages) < 64:
                self._languages[language] = line
        return line

    def build(
        self,
        alert: RenderedAlert,
        *,
        to_name: str,
        to_address: str,
        message_id: str,
        unsubscribe_url: str,
        unsubscribe_token: str,
        date: datetime,
        bodies: EncodedBodies | None = None,
    ) -> bytes:
        """The message for ``alert``. ``bodies``, when given for this builder's boundary,
        are ``alert``'s parts already encoded as :func:`encode_body` encodes them (a
        spliced alert's, see :mod:`mailer.compose.bodies`); a part it lacks is encoded here.
        """
        token = (
            unsubscribe_token
            if _URL_SAFE.fullmatch(unsubscribe_token) is not None
            else quote(unsubscribe_token)
        )
        # Two plain tokens: folded at the space between them when both do not fit.
        first = f"List-Unsubscribe: <{_checked(unsubscribe_url, 'unsubscribe URL')}>,"
        second = f"{self._mailto_for(unsubscribe_token)}{token}>"
        fold = _FOLD if len(first) + 1 + len(second) > _LINE else " "
        unsubscribe = f"{first}{fold}{second}{_CRLF}"
        head = "".join(
            (
                self._from,
                _address_header("To", to_name, to_address),
                self._reply_to,
                self._subject(alert.subject),
                "Date: ",
                format_date(date),
                "\r\nMessage-ID: ",
                _checked(message_id, "Message-ID"),
                _CRLF,
                self._list_id,
                unsubscribe,
                self._post,
                self._language(alert.language),
                self._mime,
            )
        )
        text = html = None
        if bodies is not None and bodies.avoid == self._boundary_bytes:
            text, html = bodies.text, bodies.html
        text_cte, text_body = text or encode_body(alert.text, self._boundary_bytes)
        html_cte, html_body = html or encode_body(alert.html, self._boundary_bytes)
        return b"".join(
            (
                head.encode("ascii"),
                self._delimiter,
                self._plain_head,
                f"Content-Transfer-Encoding: {text_cte}\r\n\r\n".encode("ascii"),
                text_body,
                self._next,
                self._html_head,
                f"Content-Transfer-Encoding: {html_cte}\r\n\r\n".encode("ascii"),
                html_body,
                self._close,
            )
        )

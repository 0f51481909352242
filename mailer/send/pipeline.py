"""ESMTP PIPELINING (RFC 2920) on a connection that aiosmtplib opened.

aiosmtplib sets the session up (connect, greeting, EHLO, STARTTLS or implicit
TLS, AUTH); its protocol then reads one reply per command sent, so it cannot
have several commands in flight. :class:`Pipeline` takes the established
asyncio transport over (plain or TLS) and reads the replies itself, in order:

* every complete reply, one line or many (``250-...`` lines, then ``250 ...``),
  resolves the oldest waiting future; bytes ending mid-reply stay buffered;
* the connection lost, EOF, an unreadable or oversized reply, or a reply nobody
  asked for fail every waiting future and close the connection;
* a reply has ``timeout`` seconds to arrive, counted from the previous reply or
  from the request when nothing was outstanding. One timer per connection
  checks that lazily, instead of a timer per reply. A timed-out connection is
  in an unknown state, so it is closed.

Failures are raised as aiosmtplib's ``SMTPServerDisconnected`` and
``SMTPReadTimeoutError`` so that callers handle both paths alike. This module
also prepares what goes on the wire: envelope addresses checked against
injection exactly as aiosmtplib checks them, and message bodies with CRLF line
ends and dot-stuffing (RFC 5321 4.5.2) done without regular expressions when,
as for composed messages, the line ends are already CRLF.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from typing import NamedTuple

import aiosmtplib
from aiosmtplib.email import quote_address

MAX_LINE = 8192  # bytes in one reply line, as aiosmtplib allows
# Our own, not imported from aiosmtplib.protocol (where they appeared only in 5.1.3):
# a byte that may not be in a command (C0 controls and DEL; CR, LF and NUL would end or
# split it), and every line end that is not CRLF (a lone LF, a CR not before an LF).
_CONTROLS = re.compile(rb"[\x00-\x1f\x7f]")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
MAX_REPLY = 4 * MAX_LINE  # bytes in one reply, continuation lines included


class Reply(NamedTuple):
    code: int
    text: str  # the lines' texts joined with "\n", as aiosmtplib gives them


# A plain address (dot-atoms of letters, digits, "_", "+" and "-"), as the importer
# keeps nearly every one: aiosmtplib's parsing gives it back unchanged, at about 30 µs.
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def envelope_address(address: str) -> bytes:
    """``<address>`` for MAIL FROM or RCPT TO, as aiosmtplib's ``mail()``/``rcpt()`` send it.

    Raises ``ValueError`` for anything that could end the command or start
    another (whitespace, CR, LF, NUL, other controls, angle brackets), and
    ``UnicodeEncodeError`` (also a ``ValueError``) for a non-ASCII address:
    SMTPUTF8 is not used, the same as on the path without pipelining.
    """
    if PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    quoted = quote_address(address).encode("ascii")
    if _CONTROLS.search(quoted):
        raise ValueError(f"address {address!r} contains a control character")
    return quoted


def normalize_message_line_endings(message: bytes) -> bytes:
    """Every line end as CRLF, and a CRLF at the end, as SMTP's DATA carries a message."""
    message = _LINE_ENDS.sub(b"\r\n", message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def data_body(message: bytes, *, crlf: bool = False) -> bytes:
    """``message`` as sent after ``354``: CRLF line ends, dot-stuffed, ending ``CRLF.CRLF``.

    The same bytes as aiosmtplib's ``data()`` sends. When every CR and LF is
    already part of a CRLF (counted; or promised by ``crlf``: CRLF line ends
    throughout, and a CRLF at the end), the line ends are left as they are and
    only a missing final CRLF is added.
    """
    if not crlf:
        lf = message.count(b"\n")
        if lf != message.count(b"\r\n") or message.count(b"\r") != lf:
            message = normalize_message_line_endings(message)
        elif not message.endswith(b"\r\n"):
            message += b"\r\n"
    message = message.replace(b"\r\n.", b"\r\n..")
    if message.startswith(b"."):
        message = b"." + message
    return message + b".\r\n"


_SEPARATORS = (b"", b" ", b"-")  # after the code: last line, or more lines follow


def _disconnected(reason: str) -> aiosmtplib.SMTPServerDisconnected:
    return aiosmtplib.SMTPServerDisconnected(reason)


class Pipeline(asyncio.Protocol):
    """Reads the replies to pipelined commands on a connection taken over from aiosmtplib.

    :meth:`send` writes commands and returns one future per reply expected;
    the futures resolve in the order the replies arrive.
    """

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self.transport = transport
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # texts of the reply being read
        self._reply_size = 0
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._closed: BaseException | None = None  # why the connection is unusable

    @classmethod
    def take_over(cls, smtp: aiosmtplib.SMTP, timeout: float) -> Pipeline:
        """Take ``smtp``'s connection, leaving ``smtp`` closed without a word said."""
        transport = smtp.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            raise _disconnected("connection lost before pipelining began")
        pipeline = cls(transport, timeout)
        transport.set_protocol(pipeline)
        smtp.transport = None  # so that close() below leaves the connection open
        smtp.close()
        return pipeline

    @property
    def is_open(self) -> bool:
        return self._closed is None and not self.transport.is_closing()

    def send(self, data: bytes, replies: int) -> list[asyncio.Future[Reply]]:
        """Write ``data`` (one or more commands, or a message body) and expect ``replies``."""
        if self._closed is not None:
            raise _disconnected(f"connection unusable: {self._closed}")
        if self.transport.is_closing():
            raise _disconnected("connection lost")
        if not self._waiting:
            self._deadline = self._loop.time() + self.timeout
            if self._timer is None:
                self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        futures = [self._loop.create_future() for _ in range(replies)]
        self._waiting.extend(futures)
        self.transport.write(data)
        return futures

    def abort(self) -> None:
        """Close at once, failing whatever still waits."""
        self._fail(_disconnected("connection closed by the client"))
        self.transport.abort()

    async def quit(self, wait: float) -> None:
        """QUIT, wait at most ``wait`` seconds for the reply, then close; never raises."""
        if self.is_open:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                (reply,) = self.send(b"QUIT\r\n", 1)
                await asyncio.wait_for(reply, wait)
        self._fail(_disconnected("connection closed by the client"))
        self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if not self._line(line):
                return
        del buffer[:start]
        if len(buffer) > MAX_LINE:
            self._broken(f"reply line longer than {MAX_LINE} bytes")

    def eof_received(self) -> bool | None:
        self._fail(_disconnected("connection closed by the server"))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        failure = _disconnected("connection lost")
        if exc is not None:
            failure.__cause__ = exc
        self._fail(failure)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- replies -----------------------------------------------------------------------

    def _line(self, line: bytes) -> bool:
        """Take one reply line; False when the connection was found broken."""
        code, sep = line[:3], line[3:4]
        if sep == b" " and not self._lines and len(line) <= MAX_LINE and code.isdigit():
            # The usual reply, one line: as below, without gathering lines.
            text = line[4:].strip(b" \t").decode("utf-8", "surrogateescape")
            return self._reply(Reply(int(code), text))
        if len(line) > MAX_LINE or len(code) != 3 or not code.isdigit() or sep not in _SEPARATORS:
            self._broken(f"malformed reply line {line[:80]!r}")
            return False
        self._reply_size += len(line)
        if self._reply_size > MAX_REPLY:
            self._broken(f"reply longer than {MAX_REPLY} bytes")
            return False
        self._lines.append(line[4:].strip(b" \t"))
        if sep == b"-":
            return True
        reply = Reply(int(code), b"\n".join(self._lines).decode("utf-8", "surrogateescape"))
        self._lines = []
        self._reply_size = 0
        return self._reply(reply)

    def _reply(self, reply: Reply) -> bool:
        """Hand a whole reply to the oldest waiting future; False when nobody waits."""
        if not self._waiting:
            self._broken(f"reply nobody asked for: {reply.code} {reply.text}")
            return False
        future = self._waiting.popleft()
        if not future.done():
            future.set_result(reply)
        if self._waiting:
            self._deadline = self._loop.time() + self.timeout
        return True

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._waiting or self._closed is not None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        self._fail(aiosmtplib.SMTPReadTimeoutError(f"no reply within {self.timeout:g} s"))
        self.transport.abort()

    def _broken(self, reason: str) -> None:
        self._buffer.clear()
        self._fail(_disconnected(reason))
        self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody may await the later ones

"""The PIPELINING reply reader and body preparation (``mailer.send.pipeline``), alone.

Replies are fed to a :class:`Pipeline` by hand, cut anywhere, hostile or late;
the body is compared with what aiosmtplib would send. No server: the transport
tests (``test_transport.py``) run the same code against real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Iterator

import aiosmtplib
import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.send.pipeline import (
    MAX_LINE,
    MAX_REPLY,
    PLAIN_ADDRESS,
    Pipeline,
    Reply,
    data_body,
    envelope_address,
)


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No "Future exception was never retrieved" or other asyncio complaint."""
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


# -- envelope addresses ------------------------------------------------------------------


@given(st.from_regex(PLAIN_ADDRESS, fullmatch=True))
def test_a_plain_address_goes_as_aiosmtplib_would_send_it(address: str) -> None:
    assert envelope_address(address) == quote_address(address).encode("ascii")


@given(st.text(alphabet=st.sampled_from('ab.@+-_"<> \\\r\n\x00é()[]:,;'), max_size=20))
def test_any_other_address_is_sent_or_refused_as_aiosmtplib_would(address: str) -> None:
    try:
        expected = quote_address(address).encode("ascii")
    except ValueError:  # aiosmtplib refuses it: so does the mailer, before writing anything
        with pytest.raises(ValueError):
            envelope_address(address)
        return
    if re.search(rb"[\x00-\x1f\x7f]", expected):  # the mailer's own control check
        with pytest.raises(ValueError):
            envelope_address(address)
        return
    assert envelope_address(address) == expected


# -- the reply reader alone ---------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """Just enough transport to feed a :class:`Pipeline` bytes by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def reply_lines(code: int, texts: list[str]) -> bytes:
    lines = [f"{code}-{t}" for t in texts[:-1]] + [f"{code} {texts[-1]}"]
    return "".join(f"{line}\r\n" for line in lines).encode()


replies = st.lists(
    st.tuples(
        st.integers(200, 599),
        st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126)), min_size=1),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(replies=replies, cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_replies_are_read_whole_however_the_bytes_are_cut(
    replies: list[tuple[int, list[str]]], cuts: list[int]
) -> None:
    wire = b"".join(reply_lines(code, texts) for code, texts in replies)
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})

    async def run() -> list[Reply]:
        pipeline = Pipeline(FakeTransport(), timeout=5.0)
        futures = pipeline.send(b"NOOP\r\n", len(replies))
        for start, end in itertools.pairwise(points):
            pipeline.data_received(wire[start:end])
        assert all(f.done() for f in futures) and pipeline.is_open
        return [f.result() for f in futures]

    expected = [Reply(code, "\n".join(t.strip(" \t") for t in texts)) for code, texts in replies]
    assert asyncio.run(run()) == expected


def test_a_reply_cut_mid_line_waits_for_the_rest() -> None:
    async def run() -> None:
        pipeline = Pipeline(FakeTransport(), timeout=5.0)
        first, second = pipeline.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", 2)
        pipeline.data_received(b"250 OK\r\n250-first\r\n25")
        assert first.result() == Reply(250, "OK") and not second.done()
        pipeline.data_received(b"0 last\r\n")
        assert second.result() == Reply(250, "first\nlast")

    asyncio.run(run())


@pytest.mark.parametrize(
    "hostile",
    [
        b"2" * (MAX_LINE + 10),  # a line that never ends
        b"250-" + b"x" * 100 + b"\r\n",  # continuation lines that never end (repeated below)
        b"hello\r\n",  # not a reply
        b"25 short\r\n",
        b"250 OK\r\n250 nobody asked\r\n",  # one reply too many
    ],
)
def test_a_hostile_server_breaks_the_connection_not_the_memory(hostile: bytes) -> None:
    async def run() -> None:
        transport = FakeTransport()
        pipeline = Pipeline(transport, timeout=5.0)
        (future,) = pipeline.send(b"NOOP\r\n", 1)
        for _ in range(2 * MAX_REPLY // len(hostile) + 2):
            if transport.closed:
                break
            pipeline.data_received(hostile)
        assert transport.closed and not pipeline.is_open
        assert len(pipeline._buffer) <= MAX_LINE
        if future.exception() is not None:
            with pytest.raises(aiosmtplib.SMTPServerDisconnected):
                future.result()
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            pipeline.send(b"NOOP\r\n", 1)

    asyncio.run(run())


def test_a_lost_connection_fails_every_waiting_reply_quietly(quiet: None) -> None:
    async def run() -> None:
        pipeline = Pipeline(FakeTransport(), timeout=5.0)
        futures = pipeline.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 3)
        pipeline.data_received(b"250 OK\r\n")
        pipeline.connection_lost(ConnectionResetError())
        assert futures[0].result() == Reply(250, "OK")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await futures[1]
        # futures[2] is never awaited: no "exception was never retrieved" for it

    asyncio.run(run())


def test_no_reply_within_the_timeout_fails_and_closes(quiet: None) -> None:
    async def run() -> None:
        transport = FakeTransport()
        pipeline = Pipeline(transport, timeout=0.1)
        first, second = pipeline.send(b"NOOP\r\nNOOP\r\n", 2)
        await asyncio.sleep(0.06)
        pipeline.data_received(b"250 OK\r\n")  # the clock starts again for the second
        await asyncio.sleep(0.06)
        assert not second.done()
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
            await second
        assert first.result() == Reply(250, "OK") and transport.closed

    asyncio.run(run())


# -- the body -----------------------------------------------------------------------------


line_bits = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" "])).map(
    b"".join
)


@settings(max_examples=500)
@given(data=st.one_of(st.binary(), line_bits))
def test_the_body_is_what_aiosmtplib_would_send(data: bytes) -> None:
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    assert data_body(data) == expected


crlf_lines = st.lists(st.sampled_from([b"\r\n", b".", b"..", b"a", b" ", b".\r\n"])).map(
    lambda parts: b"".join(parts) + b"\r\n"
)


@given(crlf_lines)
def test_a_body_promised_crlf_is_sent_as_one_checked_would_be(data: bytes) -> None:
    assert data_body(data, crlf=True) == data_body(data)


def test_a_composed_body_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(message: bytes) -> bytes:
        raise AssertionError("normalized a body that already had CRLF line ends")

    monkeypatch.setattr("mailer.send.pipeline.normalize_message_line_endings", refuse)
    assert data_body(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"
    assert re.fullmatch(rb"(?s).*\r\n\.\r\n", data_body(b".x"))

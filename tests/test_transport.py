"""The SMTP transport against real servers: plain, STARTTLS, implicit TLS, AUTH, PIPELINING.

With PIPELINING (RFC 2920) the transport reads the replies itself
(``mailer.send.pipeline``); its reply reader and body preparation are tested
alone, against arbitrary input, in ``test_pipeline.py``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from mailer.blasts import create_blast, send_now
from mailer.compose.alert import OutgoingMessage
from mailer.errors import TransportError
from mailer.send.outcome import Outcome, Verdict
from mailer.send.pipeline import Pipeline, Reply
from mailer.send.transport import SmtpTransport
from mailer.store import BlastStatus, Database
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import (
    S450_MAILBOX_BUSY,
    S550_NO_SUCH_USER,
    PipeliningHandler,
    RecordingHandler,
    SmtpTestServer,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def running(server: SmtpTestServer) -> Iterator[SmtpTestServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pipelined_all(handler: RecordingHandler) -> bool:
    """Whether every MAIL came with its RCPT and DATA (False: the server does not offer it)."""
    return isinstance(handler, PipeliningHandler) and bool(handler.pipelined)


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def starttls_server(
    server_context: ssl.SSLContext, request: pytest.FixtureRequest
) -> Iterator[SmtpTestServer]:
    yield from running(
        SmtpTestServer(
            tls="starttls",
            context=server_context,
            users={"org": "pw-123"},
            pipelining=request.param,
        )
    )


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def tls_server(
    server_context: ssl.SSLContext, request: pytest.FixtureRequest
) -> Iterator[SmtpTestServer]:
    yield from running(
        SmtpTestServer(
            tls="tls", context=server_context, users={"org": "pw-123"}, pipelining=request.param
        )
    )


def blast(db: Database, **smtp: object) -> int:
    settings = make_settings(smtp=smtp)
    add_people(db, "members", people(2))
    created = create_blast(
        db, settings, name="b", template="executive-orders", list_names=["members"]
    )
    assert created.id is not None
    return created.id


def send(db: Database, blast_id: int, **smtp: object) -> tuple[BlastStatus, str, dict[str, int]]:
    result = send_now(db, make_settings(smtp=smtp), blast_id)
    return result.status, result.error, result.counts


def test_starttls_with_auth(
    sqlite_db: Database, starttls_server: SmtpTestServer, ca_file: str
) -> None:
    smtp = {
        "port": starttls_server.port,
        "tls": "starttls",
        "ca_file": ca_file,
        "username": "org",
        "password": "pw-123",
    }
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert (status, error, counts["sent"]) == (BlastStatus.DONE, "", 2)
    assert all(r.tls and r.authenticated_as == "org" for r in starttls_server.handler.received)
    assert pipelined_all(starttls_server.handler) == isinstance(
        starttls_server.handler, PipeliningHandler
    )


def test_implicit_tls_with_auth(
    sqlite_db: Database, tls_server: SmtpTestServer, ca_file: str
) -> None:
    smtp = {
        "port": tls_server.port,
        "tls": "tls",
        "ca_file": ca_file,
        "username": "org",
        "password": "pw-123",
    }
    status, _, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert (status, counts["sent"]) == (BlastStatus.DONE, 2)
    assert all(r.tls and r.authenticated_as == "org" for r in tls_server.handler.received)
    assert pipelined_all(tls_server.handler) == isinstance(tls_server.handler, PipeliningHandler)


def test_wrong_password_pauses_the_blast_with_the_reason(
    sqlite_db: Database, starttls_server: SmtpTestServer, ca_file: str
) -> None:
    smtp = {
        "port": starttls_server.port,
        "tls": "starttls",
        "ca_file": ca_file,
        "username": "org",
        "password": "wrong",
    }
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert status is BlastStatus.PAUSED
    assert "refused the login" in error and "535" in error
    assert counts["queued"] == 2 and starttls_server.handler.received == []


def test_untrusted_certificate_is_refused(
    sqlite_db: Database, starttls_server: SmtpTestServer
) -> None:
    smtp = {
        "port": starttls_server.port,
        "tls": "starttls",
        "username": "org",
        "password": "pw-123",
    }
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert status is BlastStatus.PAUSED
    assert "certificate" in error.lower()
    assert counts["sent"] == 0 and starttls_server.handler.received == []


def test_plain_connection_to_a_server_that_requires_starttls_gets_no_mail_through(
    sqlite_db: Database, starttls_server: SmtpTestServer
) -> None:
    smtp = {"port": starttls_server.port, "tls": "none"}
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert status is BlastStatus.PAUSED  # not: every recipient marked failed
    assert "refused the sender" in error and "530" in error
    assert counts["queued"] == 2 and counts["failed"] == 0
    assert starttls_server.handler.received == []


# -- PIPELINING: the transport alone against aiosmtpd -----------------------------------


@pytest.fixture
def pipelining_server() -> Iterator[SmtpTestServer]:
    yield from running(SmtpTestServer(pipelining=True))


def handler_of(server: SmtpTestServer) -> PipeliningHandler:
    assert isinstance(server.handler, PipeliningHandler)
    return server.handler


def message(recipient: str, data: bytes | None = None, delivery_id: int = 1) -> OutgoingMessage:
    body = data if data is not None else f"Subject: hi\r\nTo: {recipient}\r\n\r\nHello\r\n".encode()
    return OutgoingMessage(delivery_id, "alerts@example.org", recipient, f"<{delivery_id}@x>", body)


Result = Outcome | BaseException


def deliver(
    server: SmtpTestServer, messages: list[OutgoingMessage], *, pipelining: bool, **smtp: object
) -> list[Result]:
    """Each message through one SmtpTransport, in turn; what deliver returned or raised."""
    settings = make_settings(smtp_port=server.port, smtp={"pipelining": pipelining, **smtp})

    async def run() -> list[Result]:
        transport = SmtpTransport(settings.smtp, connect_attempts=1, retry_delay=0.01)
        results: list[Result] = []
        try:
            for item in messages:
                try:
                    results.append(await transport.deliver(item))
                except (TransportError, ValueError) as exc:
                    results.append(exc)
        finally:
            await transport.close()
        return results

    return asyncio.run(run())


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No "Future exception was never retrieved" or other asyncio complaint while sending."""
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def verdicts(results: list[Result]) -> list[object]:
    return [r.verdict if isinstance(r, Outcome) else type(r) for r in results]


both_clients = pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])


@both_clients
def test_the_client_pipelines_only_when_asked(
    pipelining_server: SmtpTestServer, pipelining: bool, quiet: None
) -> None:
    """Fails if the client waits for each reply: then RCPT and DATA arrive only after MAIL."""
    results = deliver(
        pipelining_server, [message(f"p{i}@example.org") for i in range(3)], pipelining=pipelining
    )
    assert verdicts(results) == [Verdict.SENT] * 3
    handler = handler_of(pipelining_server)
    assert handler.pipelined == [pipelining] * 3
    assert len(handler.peers) == 1  # one connection carried them all
    assert handler.quits == 1  # close() said goodbye


def test_a_server_without_pipelining_gets_one_command_at_a_time(
    smtp_server: SmtpTestServer, quiet: None
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)
    assert settings.smtp.pipelining  # on by default, and yet:

    async def run() -> bool:
        transport = SmtpTransport(settings.smtp)
        outcome = await transport.deliver(message("p0@example.org"))
        assert outcome.verdict is Verdict.SENT
        used = transport._pipeline is not None
        await transport.close()
        return used

    assert asyncio.run(run()) is False


TRICKY_BODIES = [
    b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n",
    b".first line\r\n\r\nbody\r\n",
    b"Subject: bare LF\n\nline\n.dot after LF\nlast",
    b"Subject: bare CR\r\rline\r.x\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
]


def test_both_paths_hand_over_identical_bytes(pipelining_server: SmtpTestServer) -> None:
    messages = [message(f"p{i}@example.org", body, i) for i, body in enumerate(TRICKY_BODIES)]
    deliver(pipelining_server, messages, pipelining=False)
    plain = [r.data for r in pipelining_server.handler.received]
    pipelining_server.handler.received.clear()
    deliver(pipelining_server, messages, pipelining=True)
    piped = [r.data for r in pipelining_server.handler.received]
    assert handler_of(pipelining_server).pipelined == [False] * 5 + [True] * 5
    assert piped == plain and len(plain) == 5
    assert plain[0] == TRICKY_BODIES[0]  # a line starting with "." arrives as it was


@both_clients
def test_a_refused_recipient_fails_alone_on_the_same_connection(
    pipelining_server: SmtpTestServer, pipelining: bool, quiet: None
) -> None:
    pipelining_server.handler.refuse["p0@example.org"] = S550_NO_SUCH_USER
    pipelining_server.handler.refuse["p1@example.org"] = S450_MAILBOX_BUSY
    results = deliver(
        pipelining_server,
        [message(f"p{i}@example.org") for i in range(3)],
        pipelining=pipelining,
    )
    assert results[:2] == [
        Outcome(Verdict.FAILED, 550, "5.1.1 No such user here", "5.1.1"),
        Outcome(Verdict.RETRY, 450, "4.2.1 Mailbox busy, try again later", "4.2.1"),
    ]
    assert verdicts(results[2:]) == [Verdict.SENT]
    assert [r.rcpt_tos for r in pipelining_server.handler.received] == [["p2@example.org"]]
    assert len(pipelining_server.handler.peers) == 1  # RSET, not a new connection


@both_clients
def test_a_refused_sender_stops_the_blast(
    pipelining_server: SmtpTestServer, pipelining: bool, quiet: None
) -> None:
    handler_of(pipelining_server).refuse_mail = "553 5.7.1 Sender not allowed"
    (result,) = deliver(pipelining_server, [message("p0@example.org")], pipelining=pipelining)
    assert isinstance(result, TransportError)
    assert "refused the sender alerts@example.org: 553 5.7.1 Sender not allowed" in str(result)
    assert pipelining_server.handler.data_attempts == {}


@both_clients
def test_a_connection_dropped_during_data_is_lost_and_the_next_message_reconnects(
    pipelining_server: SmtpTestServer, pipelining: bool, quiet: None
) -> None:
    pipelining_server.handler.drop_in_data["p0@example.org"] = 1
    results = deliver(
        pipelining_server,
        [message("p0@example.org"), message("p1@example.org")],
        pipelining=pipelining,
    )
    lost, sent = results
    assert isinstance(lost, Outcome) and lost.verdict is Verdict.RETRY and lost.code is None
    assert "connection lost during DATA" in lost.text
    assert isinstance(sent, Outcome) and sent.verdict is Verdict.SENT
    assert len(pipelining_server.handler.peers) == 2


@both_clients
def test_a_stalled_reply_times_out_and_the_connection_is_dropped(
    pipelining_server: SmtpTestServer, pipelining: bool, quiet: None
) -> None:
    pipelining_server.handler.stall_in_data["p0@example.org"] = (2.0, 1)
    results = deliver(
        pipelining_server,
        [message("p0@example.org"), message("p1@example.org")],
        pipelining=pipelining,
        timeout=0.3,
    )
    stalled, sent = results
    assert isinstance(stalled, Outcome) and stalled.verdict is Verdict.RETRY
    assert stalled.code is None and "during DATA" in stalled.text
    assert isinstance(sent, Outcome) and sent.verdict is Verdict.SENT
    assert len(pipelining_server.handler.peers) == 2  # not the connection in an unknown state


def test_data_accepted_after_a_refused_recipient_gets_no_body(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    """A broken server answers 354 to the pipelined DATA although it refused the RCPT.

    No body, not even an empty one, is sent: the connection is dropped (the
    server abandons the transaction) and the next message takes a new one.
    """
    handler = handler_of(pipelining_server)
    handler.refuse["p0@example.org"] = S550_NO_SUCH_USER
    handler.data_after_refused_rcpt.add("p0@example.org")
    results = deliver(
        pipelining_server, [message("p0@example.org"), message("p1@example.org")], pipelining=True
    )
    assert verdicts(results) == [Verdict.FAILED, Verdict.SENT]
    assert handler.data_attempts == {"p1@example.org": 1}  # nothing ended p0's DATA
    assert [r.rcpt_tos for r in handler.received] == [["p1@example.org"]]
    assert len(handler.peers) == 2 and handler.quits == 1  # p0's connection ended without QUIT


def test_replies_that_arrive_apart_are_read_in_order(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    pipelining_server.handler.rcpt_delay = 0.05  # MAIL's reply goes out alone
    pipelining_server.handler.refuse["p1@example.org"] = S550_NO_SUCH_USER
    results = deliver(
        pipelining_server, [message(f"p{i}@example.org") for i in range(3)], pipelining=True
    )
    assert verdicts(results) == [Verdict.SENT, Verdict.FAILED, Verdict.SENT]
    assert all(handler_of(pipelining_server).pipelined)


@both_clients
@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("zoë@example.org", Verdict.FAILED),  # no SMTPUTF8: failed alone, nothing sent
        ("p0@example.org\x00", Verdict.FAILED),
        # aiosmtplib's address parsing keeps the first address and drops the rest
        ("p0@example.org>\r\nRCPT TO:<evil@example.net", "p0@example.org"),
        ("p0@example.org\r\nRSET", "p0@example.org"),
    ],
)
def test_supporter_data_never_breaks_out_of_the_envelope(
    pipelining_server: SmtpTestServer, pipelining: bool, recipient: str, expected: object
) -> None:
    """Invariant 7, for MAIL FROM and RCPT TO; both paths treat an address alike."""
    results = deliver(
        pipelining_server, [message(recipient), message("p1@example.org")], pipelining=pipelining
    )
    handler = pipelining_server.handler
    if not isinstance(expected, Verdict):  # the address aiosmtplib's parsing keeps
        assert verdicts(results) == [Verdict.SENT, Verdict.SENT]
        assert [r.rcpt_tos for r in handler.received] == [[expected], ["p1@example.org"]]
    else:
        # Checked before anything is written: this one fails alone and the
        # session stays usable for the next message, on both paths.
        assert verdicts(results) == [expected, Verdict.SENT]
        first = results[0]
        assert isinstance(first, Outcome) and first.code is None and first.enhanced == "5.1.3"
        assert recipient not in handler.rcpt_attempts
        assert [r.rcpt_tos for r in handler.received] == [["p1@example.org"]]
    assert set(handler.rcpt_attempts) <= {"p0@example.org", "p1@example.org"}


@both_clients
def test_data_refused_is_followed_by_rset_and_the_next_message_goes(
    pipelining_server: SmtpTestServer, pipelining: bool
) -> None:
    pipelining_server.handler.refuse_data["p0@example.org"] = "451 4.3.0 Try DATA later"
    results = deliver(
        pipelining_server,
        [message("p0@example.org"), message("p1@example.org")],
        pipelining=pipelining,
    )
    assert verdicts(results) == [Verdict.RETRY, Verdict.SENT]  # not a "nested MAIL" refusal
    assert [r.rcpt_tos for r in pipelining_server.handler.received] == [["p1@example.org"]]
    assert len(pipelining_server.handler.peers) == 1  # on the same connection


@both_clients
def test_an_envelope_sender_smtp_cannot_carry_stops_the_blast(
    pipelining_server: SmtpTestServer, pipelining: bool
) -> None:
    bad = OutgoingMessage(
        delivery_id=1,
        envelope_sender="bounces\x00@example.org",
        recipient="p0@example.org",
        message_id="<1@example.org>",
        data=b"Subject: x\r\n\r\nbody\r\n",
    )
    (result,) = deliver(pipelining_server, [bad], pipelining=pipelining)
    assert isinstance(result, TransportError) and "envelope sender" in str(result)
    assert pipelining_server.handler.received == []


# -- the next envelope with this body ------------------------------------------------------


def send_ahead(
    server: SmtpTestServer,
    steps: list[tuple[OutgoingMessage, OutgoingMessage | None]],
    writes: list[bytes] | None = None,
) -> list[Result]:
    """``deliver(message, following=lambda: upcoming)`` for each step, on one transport;
    with ``writes``, what each write on the pipelined connection carried."""
    settings = make_settings(smtp_port=server.port)

    async def run() -> list[Result]:
        transport = SmtpTransport(settings.smtp, connect_attempts=1, retry_delay=0.01)
        results: list[Result] = []
        try:
            for item, upcoming in steps:
                try:
                    results.append(await transport.deliver(item, shown(upcoming)))
                except TransportError as exc:
                    results.append(exc)
        finally:
            await transport.close()
        return results

    if writes is None:
        return asyncio.run(run())
    real_send = Pipeline.send

    def spy(self: Pipeline, data: bytes, replies: int) -> list[asyncio.Future[Reply]]:
        writes.append(data)
        return real_send(self, data, replies)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Pipeline, "send", spy)
        return asyncio.run(run())


def shown(upcoming: OutgoingMessage | None) -> Callable[[], OutgoingMessage | None]:
    return lambda: upcoming


def chain(messages: list[OutgoingMessage]) -> list[tuple[OutgoingMessage, OutgoingMessage | None]]:
    return list(zip(messages, [*messages[1:], None], strict=True))


def test_the_next_envelope_goes_in_the_same_write_as_this_body(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    messages = [message(f"p{i}@example.org", delivery_id=i + 1) for i in range(3)]
    writes: list[bytes] = []
    results = send_ahead(pipelining_server, chain(messages), writes)
    assert verdicts(results) == [Verdict.SENT] * 3
    handler = handler_of(pipelining_server)
    assert [r.rcpt_tos for r in handler.received] == [[m.recipient] for m in messages]
    assert len(handler.peers) == 1
    # MAIL+RCPT+DATA, then body 1 + the next envelope (twice), then the last body, QUIT.
    assert len(writes) == 5
    assert writes[1].startswith(b"Subject: hi") and writes[1].endswith(
        b"\r\n.\r\nMAIL FROM:<alerts@example.org>\r\nRCPT TO:<p1@example.org>\r\nDATA\r\n"
    )
    assert writes[3].endswith(b"\r\n.\r\n") and writes[4] == b"QUIT\r\n"


def test_an_envelope_sent_ahead_for_a_message_that_does_not_follow_delivers_nothing(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    """The caller sends another message next (the one shown was taken back before its
    mark): the connection with the waiting envelope is dropped, without a body."""
    first, shown, other = (message(f"p{i}@example.org", delivery_id=i + 1) for i in range(3))
    results = send_ahead(pipelining_server, [(first, shown), (other, None)])
    assert verdicts(results) == [Verdict.SENT, Verdict.SENT]
    handler = handler_of(pipelining_server)
    assert [r.rcpt_tos for r in handler.received] == [[first.recipient], [other.recipient]]
    assert handler.data_attempts.get(shown.recipient, 0) == 0
    assert len(handler.peers) == 2  # a new connection for the other message


def test_closing_with_an_envelope_sent_ahead_delivers_nothing_more(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    first, shown = (message(f"p{i}@example.org", delivery_id=i + 1) for i in range(2))
    results = send_ahead(pipelining_server, [(first, shown)])  # then close(): a stop
    assert verdicts(results) == [Verdict.SENT]
    handler = handler_of(pipelining_server)
    assert [r.rcpt_tos for r in handler.received] == [[first.recipient]]
    assert handler.data_attempts.get(shown.recipient, 0) == 0


def test_a_recipient_refused_ahead_fails_alone_and_the_connection_goes_on(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    pipelining_server.handler.refuse["p1@example.org"] = S550_NO_SUCH_USER
    messages = [message(f"p{i}@example.org", delivery_id=i + 1) for i in range(3)]
    results = send_ahead(pipelining_server, chain(messages))
    assert verdicts(results) == [Verdict.SENT, Verdict.FAILED, Verdict.SENT]
    handler = handler_of(pipelining_server)
    assert [r.rcpt_tos for r in handler.received] == [["p0@example.org"], ["p2@example.org"]]
    assert len(handler.peers) == 1


def test_a_connection_lost_after_an_envelope_went_ahead_sends_that_message_again_once(
    pipelining_server: SmtpTestServer, quiet: None
) -> None:
    """Lost during the first DATA: the first is in doubt (retried later), the second
    was never handed over, so it goes at once on a new connection, exactly once."""
    pipelining_server.handler.drop_in_data["p0@example.org"] = 1
    messages = [message(f"p{i}@example.org", delivery_id=i + 1) for i in range(2)]
    lost, sent = send_ahead(pipelining_server, chain(messages))
    assert isinstance(lost, Outcome) and lost.verdict is Verdict.RETRY
    assert "connection lost during DATA" in lost.text
    assert isinstance(sent, Outcome) and sent.verdict is Verdict.SENT
    handler = handler_of(pipelining_server)
    assert [r.rcpt_tos for r in handler.received] == [["p1@example.org"]]
    assert len(handler.peers) == 2

"""A real SMTP server for tests (aiosmtpd, in-process), with chosen failures.

``RecordingHandler`` keeps what it accepts. A test chooses failures by
recipient address: ``refuse`` answers RCPT with a canned reply (``550 5.1.1
...`` for a bad address, ``450 4.2.1 ...`` for a temporary problem).
``SmtpTestServer`` can also speak STARTTLS or implicit TLS with a test CA's
certificate, require AUTH, and offer PIPELINING (RFC 2920), which aiosmtpd
handles (it reads commands one line at a time) but does not advertise;
``PipeliningHandler`` adds it to the EHLO reply and notes, at each MAIL,
whether the commands after it had already arrived.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailer.devsmtp import free_port

S550_NO_SUCH_USER = "550 5.1.1 No such user here"
S450_MAILBOX_BUSY = "450 4.2.1 Mailbox busy, try again later"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated_as: str = ""
    tls: bool = False
    at: float = field(default_factory=time.monotonic)  # when the server accepted it

    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    # address -> (reply, times): refuse that many times, then accept.
    refuse_first: dict[str, tuple[str, int]] = field(default_factory=dict)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    # address -> times: drop the connection during DATA (no reply) that many times.
    drop_in_data: dict[str, int] = field(default_factory=dict)
    # address -> (seconds, times): wait that long before answering DATA, that many times.
    stall_in_data: dict[str, tuple[float, int]] = field(default_factory=dict)
    delay: float = 0.0  # seconds every DATA takes (a slow server)
    data_attempts: dict[str, int] = field(default_factory=dict)
    in_data: dict[str, int] = field(default_factory=dict)  # domain -> messages in DATA now
    max_in_data: dict[str, int] = field(default_factory=dict)  # domain -> most at once
    peers: set[object] = field(default_factory=set)  # client (address, port) of each session
    # addresses refused at RCPT but then taken all the same, so that DATA gets 354 (broken)
    data_after_refused_rcpt: set[str] = field(default_factory=set)
    # address -> reply: refuse DATA itself (no 354) for a message to that address.
    refuse_data: dict[str, str] = field(default_factory=dict)
    rcpt_delay: float = 0.0  # seconds every RCPT takes (its reply comes apart from MAIL's)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_attempts[address] = self.rcpt_attempts.get(address, 0) + 1
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if address in self.refuse:
            if address in self.data_after_refused_rcpt:
                envelope.rcpt_tos.append(address)
            return self.refuse[address]
        if address in self.refuse_first:
            reply, times = self.refuse_first[address]
            if self.rcpt_attempts[address] <= times:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.peers.add(session.peer)
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        domain = rcpt.rpartition("@")[2]
        self.data_attempts[rcpt] = self.data_attempts.get(rcpt, 0) + 1
        self.in_data[domain] = self.in_data.get(domain, 0) + 1
        self.max_in_data[domain] = max(self.max_in_data.get(domain, 0), self.in_data[domain])
        try:
            if self.drop_in_data.get(rcpt, 0) > 0:
                self.drop_in_data[rcpt] -= 1
                assert isinstance(server.transport, asyncio.WriteTransport)
                server.transport.abort()  # gone without a reply: the client cannot know
                return "421 4.4.2 dropped"
            stall = self.stall_in_data.get(rcpt)
            if stall and stall[1] > 0:
                self.stall_in_data[rcpt] = (stall[0], stall[1] - 1)
                await asyncio.sleep(stall[0])
                return "451 4.4.2 too late"
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._accept(session, envelope, server)
        finally:
            self.in_data[domain] -= 1

    def _accept(self, session: Session, envelope: Envelope, server: SMTP) -> str:
        login = session.auth_data if isinstance(session.auth_data, str) else ""
        transport = server.transport
        implicit_tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                authenticated_as=login,
                tls=session.ssl is not None or implicit_tls,
            )
        )
        return "250 2.0.0 Queued"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]


@dataclass
class PipeliningHandler(RecordingHandler):
    """A :class:`RecordingHandler` whose server offers PIPELINING.

    Its own class, because aiosmtpd changes how it answers EHLO (and MAIL) as
    soon as a handler has these hooks; servers without the option keep its
    defaults.
    """

    # one entry per MAIL: were RCPT and DATA already waiting to be read?
    pipelined: list[bool] = field(default_factory=list)
    refuse_mail: str = ""  # a reply to every MAIL, instead of accepting the sender
    quits: int = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves it to this hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.peers.add(session.peer)  # also the sessions that never reach DATA
        waiting = bytes(server._reader._buffer)  # type: ignore[attr-defined]
        self.pipelined.append(b"RCPT TO:" in waiting and b"DATA\r\n" in waiting)
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


class _Smtp(SMTP):
    """aiosmtpd's server, which can also refuse ``DATA`` itself for chosen recipients."""

    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        rcpts = self.envelope.rcpt_tos if self.envelope is not None else []
        if isinstance(handler, RecordingHandler) and rcpts and rcpts[0] in handler.refuse_data:
            await self.push(handler.refuse_data[rcpts[0]])  # MAIL and RCPT still stand
            return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)


class SmtpTestServer:
    def __init__(
        self,
        *,
        tls: Literal["none", "starttls", "tls"] = "none",
        context: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        pipelining: bool = False,
    ) -> None:
        self.handler = PipeliningHandler() if pipelining else RecordingHandler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.users = users or {}
        server_kwargs: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if tls == "starttls":
            server_kwargs.update(tls_context=context, require_starttls=True)
        elif tls == "tls":
            # The whole session is TLS, which aiosmtpd cannot tell: allow AUTH anyway.
            kwargs.update(ssl_context=context, auth_require_tls=False)
        if users:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self.controller = _Controller(
            self.handler, hostname=self.host, port=self.port, **server_kwargs, **kwargs
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if self.users.get(login) == auth_data.password.decode():
                return AuthResult(success=True, auth_data=login)
        # handled=False: aiosmtpd answers "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

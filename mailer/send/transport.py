"""Handing messages to an SMTP relay over one persistent connection.

The engine sees only the :class:`Transport` protocol: ``deliver`` one message,
get an :class:`~mailer.send.outcome.Outcome` back, ``close`` at the end.
aiosmtplib's exceptions are translated here and nowhere else.

aiosmtplib opens the session: connect, greeting, EHLO, STARTTLS or implicit
TLS, AUTH. When the relay offers PIPELINING (RFC 2920) and ``[smtp]
pipelining`` is on, the connection is then handed to
:class:`~mailer.send.pipeline.Pipeline` and each message takes two round
trips instead of four: ``MAIL FROM``, ``RCPT TO`` and ``DATA`` go out in one
write and their three replies are read in order; after ``354`` the prepared
body goes out in a second write and the final reply is read. When the caller
already knows the connection's next message (``deliver``'s ``following``),
that message's envelope goes in the same write as this body (RFC 2920 3.1
allows message content first in a group), so a blast takes one write a
message: only the envelope goes early, never a body, and an envelope whose
message then does not follow is left without a body by dropping the
connection, which delivers nothing. Every reply is
checked: a ``354`` after a refused ``MAIL`` or ``RCPT`` (a server that should
have refused ``DATA``) gets no body at all; the connection is dropped instead.
Only the final dot confirms a transaction (RFC 5321 3.3), so the server has
nothing to deliver, where sending the lone dot RFC 2920 suggests could let a
broken server deliver an empty message. Otherwise the replies mean what they
mean on the aiosmtplib path, which is used unchanged when the relay does not
offer PIPELINING.

Connection handling: the connection is opened on first use and reused for
every following message. A connection found dead before the message was
handed over (at MAIL or RCPT) is reopened and the message tried again at once,
because nothing was accepted yet. A connection lost during DATA is reported as
a temporary failure of that one delivery. When the relay cannot be reached
after ``connect_attempts`` tries, :class:`~mailer.errors.RelayUnavailable` is
raised so the caller can pause the blast instead of failing every recipient.
A reply that does not come within ``[smtp] timeout`` leaves the connection in
an unknown state: it is closed, and the message is treated as on a lost
connection (tried again at once if its body was not sent yet).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

import aiosmtplib

from mailer.compose.alert import OutgoingMessage
from mailer.config import SmtpSettings
from mailer.errors import ConfigError, RelayUnavailable, TransportError
from mailer.send.outcome import Outcome, Verdict, classify, connection_lost
from mailer.send.pipeline import Pipeline, Reply, data_body, envelope_address

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)
_QUIT_WAIT = 5.0  # seconds close() waits for the reply to QUIT at most


class Transport(Protocol):
    """Delivers one message at a time; the contract of every transport.

    ``deliver`` returns the outcome for that message's single recipient and
    raises only :class:`~mailer.errors.TransportError` (the relay cannot be used
    at all). ``close`` ends the session politely and never raises.
    """

    async def deliver(
        self,
        message: OutgoingMessage,
        following: Callable[[], OutgoingMessage | None] | None = None,
    ) -> Outcome: ...

    async def close(self) -> None: ...


def relays(settings: SmtpSettings) -> list[tuple[str, int]]:
    """The relay and its failovers, in the order they are tried."""
    found = [(settings.host, settings.port)]
    for entry in settings.failover:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError("smtp.failover", f'entries must be "host:port", got {entry!r}')
        found.append((host.strip("[]"), int(port)))
    return found


class SmtpTransport:
    def __init__(
        self, settings: SmtpSettings, *, connect_attempts: int = 3, retry_delay: float = 1.0
    ) -> None:
        self.settings = settings
        self.connect_attempts = connect_attempts
        self.retry_delay = retry_delay
        self.relays = relays(settings)
        self._smtp: aiosmtplib.SMTP | None = None
        self._pipeline: Pipeline | None = None
        self._where = ""
        self._sender = ("", b"")  # the last envelope sender and its encoding
        # The next message's envelope, sent with the previous body, and its three replies.
        self._early: tuple[OutgoingMessage, list[asyncio.Future[Reply]]] | None = None

    def _client(self, host: str, port: int) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=host,
            port=port,
            username=s.username or None,
            password=s.password or None,
            local_hostname=s.helo_name or None,
            timeout=s.timeout,
            use_tls=s.tls == "tls",
            start_tls=s.tls == "starttls",
            cert_bundle=s.ca_file or None,
        )

    async def _connected(self) -> aiosmtplib.SMTP | Pipeline:
        if self._pipeline is not None:
            if self._pipeline.is_open:
                return self._pipeline
            self._drop()
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        last = ""
        for attempt in range(1, self.connect_attempts + 1):
            for host, port in self.relays:
                where = f"{host}:{port}"
                smtp = self._client(host, port)
                try:
                    await smtp.connect()
                    pipeline = await self._pipeline_for(smtp)
                except aiosmtplib.SMTPAuthenticationError as exc:
                    raise TransportError(
                        f"SMTP relay {where} refused the login: {exc.code} {exc.message}"
                    ) from exc
                except ssl.SSLError as exc:
                    raise TransportError(f"TLS with SMTP relay {where} failed: {exc}") from exc
                except aiosmtplib.SMTPResponseException as exc:
                    last = f"{where}: {exc.code} {exc.message}"
                except (aiosmtplib.SMTPException, OSError) as exc:
                    last = f"{where}: {str(exc) or type(exc).__name__}"
                else:
                    self._where = where
                    if pipeline is not None:
                        self._pipeline = pipeline
                        return pipeline
                    self._smtp = smtp
                    return smtp
                smtp.close()
                log.info("SMTP relay connection attempt %d failed: %s", attempt, last)
            if attempt < self.connect_attempts:
                await asyncio.sleep(self.retry_delay * attempt)
        names = ", ".join(f"{h}:{p}" for h, p in self.relays)
        raise RelayUnavailable(
            f"SMTP relay unreachable ({names}) after {self.connect_attempts} attempts; last: {last}"
        )

    async def _pipeline_for(self, smtp: aiosmtplib.SMTP) -> Pipeline | None:
        """``smtp``'s session taken over for pipelining, when that is on and the relay offers it."""
        if not self.settings.pipelining:
            return None
        if smtp.is_ehlo_or_helo_needed:  # aiosmtplib greets early only for STARTTLS or AUTH
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not smtp.is_connected:
                    raise
                await smtp.helo()  # an old relay: no extensions, so no pipelining
        if not smtp.supports_extension("pipelining"):
            return None
        return Pipeline.take_over(smtp, self.settings.timeout)

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        self._early = None  # its replies fail with the connection
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None
        if self._pipeline is not None:
            self._pipeline.abort()
        self._pipeline = None

    def _envelope(self, message: OutgoingMessage) -> bytes:
        """MAIL, RCPT and DATA for ``message``; ValueError for a recipient SMTP cannot take.

        Both addresses are checked before a command is sent, so a bad one never
        leaves a half-open transaction behind on the connection.
        """
        sender = self._sender_address(message.envelope_sender)
        recipient = envelope_address(message.recipient)
        return b"".join((b"MAIL FROM:", sender, b"\r\nRCPT TO:", recipient, b"\r\nDATA\r\n"))

    async def deliver(
        self,
        message: OutgoingMessage,
        following: Callable[[], OutgoingMessage | None] | None = None,
    ) -> Outcome:
        """Deliver ``message``. ``following``, when given, tells which message this
        connection carries next, once it is composed (else None): with pipelining its
        envelope goes out with this body; the next call is for it, or the connection
        is dropped (an envelope without a body delivers nothing). Only ``deliver``
        sends a body, so the caller marks a message before handing it over."""
        early, self._early = self._early, None
        try:
            envelope = self._envelope(message)
        except (ValueError, TransportError) as exc:
            if early is not None:
                self._drop()  # an envelope sent ahead waits for a body: never finished
            if isinstance(exc, TransportError):
                raise
            return Outcome(
                Verdict.FAILED,
                None,
                f"not sent: the address cannot go into SMTP's RCPT TO ({exc})",
                "5.1.3",  # RFC 3463: bad destination mailbox address syntax
            )
        for attempt in (1, 2):
            if early is not None and early[0] is not message:
                self._drop()  # sent ahead for a message that is not this one: never finished
            smtp = await self._connected()
            if isinstance(smtp, Pipeline):
                sent = early[1] if early is not None and early[0] is message else None
                early = None
                outcome = await self._pipelined(
                    smtp, message, envelope, sent, following, last_try=attempt == 2
                )
                if outcome is None:
                    continue  # the connection was lost before anything was handed over
                return outcome
            try:
                await smtp.mail(message.envelope_sender)
                await smtp.rcpt(message.recipient)
            except aiosmtplib.SMTPSenderRefused as exc:
                # MAIL FROM refused: a matter of this session or sender (STARTTLS or AUTH
                # required, sender not allowed), the same for every recipient. Failing
                # each recipient would burn through the list; stop instead.
                await self._reset(smtp)
                raise TransportError(
                    f"SMTP relay {self._where} refused the sender "
                    f"{message.envelope_sender}: {exc.code} {exc.message}"
                ) from exc
            except aiosmtplib.SMTPRecipientRefused as exc:
                await self._reset(smtp)
                return classify(exc.code, exc.message)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(smtp)
                return classify(exc.code, exc.message)
            except _CONNECTION_ERRORS as exc:
                # Nothing was handed over yet: reconnect and try this message once more.
                self._drop()
                if attempt == 2:
                    return connection_lost(
                        f"connection lost before DATA: {exc or type(exc).__name__}"
                    )
                continue
            try:
                response = await smtp.data(message.data)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(smtp)  # DATA refused: MAIL and RCPT still stand
                return classify(exc.code, exc.message)
            except _CONNECTION_ERRORS as exc:
                self._drop()
                return connection_lost(f"connection lost during DATA: {exc or type(exc).__name__}")
            return classify(response.code, response.message)
        raise AssertionError("unreachable")  # pragma: no cover

    def _sender_address(self, address: str) -> bytes:
        """The envelope sender as sent; TransportError when it cannot be (a setting's fault)."""
        sender, encoded = self._sender
        if sender != address:  # without VERP it is the same for every message
            try:
                encoded = envelope_address(address)
            except ValueError as exc:
                raise TransportError(
                    f"the envelope sender {address!r} cannot go into SMTP's MAIL FROM: {exc}"
                ) from exc
            self._sender = (address, encoded)
        return encoded

    async def _pipelined(
        self,
        pipeline: Pipeline,
        message: OutgoingMessage,
        envelope: bytes,
        sent: list[asyncio.Future[Reply]] | None,
        following: Callable[[], OutgoingMessage | None] | None,
        *,
        last_try: bool,
    ) -> Outcome | None:
        """One transaction with pipelining; None means: reconnect and try again.

        ``sent`` holds the replies of this envelope when it went out with the
        previous body; ``following`` may add the next envelope to this body.
        """
        try:
            mail_reply, rcpt_reply, data_reply = sent or pipeline.send(envelope, 3)
            mail, rcpt, data = await mail_reply, await rcpt_reply, await data_reply
        except _CONNECTION_ERRORS as exc:
            return self._lost_before_data(exc, last_try)
        refused = mail.code != 250 or rcpt.code not in (250, 251)
        if refused and data.code == 354:
            # DATA should have been refused. Send no body, not even the lone dot
            # RFC 2920 suggests: without the final dot (RFC 5321 3.3) there is no
            # transaction to deliver, where a dot could give an empty message.
            log.warning(
                "SMTP relay %s accepted DATA after refusing MAIL or RCPT; reconnecting",
                self._where,
            )
            self._drop()
        elif refused or data.code != 354:
            await self._pipelined_reset(pipeline)
        if mail.code != 250:
            # As without pipelining: a refused sender stops the blast.
            raise TransportError(
                f"SMTP relay {self._where} refused the sender "
                f"{message.envelope_sender}: {mail.code} {mail.text}"
            )
        if rcpt.code not in (250, 251):
            return classify(rcpt.code, rcpt.text)
        if data.code != 354:
            return classify(data.code, data.text)
        body = data_body(message.data, crlf=message.crlf)
        after = following() if following is not None else None
        ahead = b""
        if after is not None:
            try:
                ahead = self._envelope(after)
            except (ValueError, TransportError):
                after = None  # its own deliver() reports it
        try:
            if after is not None:
                final_reply, *replies = pipeline.send(body + ahead, 4)
                self._early = (after, replies)
            else:
                (final_reply,) = pipeline.send(body, 1)
        except _CONNECTION_ERRORS as exc:  # found closed: nothing was written
            return self._lost_before_data(exc, last_try)
        try:
            final = await final_reply
        except _CONNECTION_ERRORS as exc:
            self._drop()
            return connection_lost(f"connection lost during DATA: {exc or type(exc).__name__}")
        return classify(final.code, final.text)

    def _lost_before_data(self, exc: Exception, last_try: bool) -> Outcome | None:
        """Nothing was handed over yet: None to reconnect and try once more."""
        self._drop()
        if last_try:
            return connection_lost(f"connection lost before DATA: {exc or type(exc).__name__}")
        return None

    async def _pipelined_reset(self, pipeline: Pipeline) -> None:
        try:
            (reply,) = pipeline.send(b"RSET\r\n", 1)
            if (await reply).code != 250:
                self._drop()
        except _CONNECTION_ERRORS:
            self._drop()

    async def close(self) -> None:
        if self._early is not None:
            # An envelope sent ahead for a message that will not follow: the server may
            # be waiting for its body. Closing without the final dot delivers nothing.
            self._drop()
            return
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            await pipeline.quit(min(self.settings.timeout, _QUIT_WAIT))
            return
        if self._smtp is None:
            return
        try:
            if self._smtp.is_connected:
                await self._smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()

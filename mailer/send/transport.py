"""Handing messages to an SMTP relay over one persistent connection (aiosmtplib).

The engine sees only the :class:`Transport` protocol: ``deliver`` one message,
get an :class:`~mailer.send.outcome.Outcome` back, ``close`` at the end.
aiosmtplib's exceptions are translated here and nowhere else.

Connection handling: the connection is opened on first use and reused for
every following message. A connection found dead before the message was
handed over (at MAIL or RCPT) is reopened and the message tried again at once,
because nothing was accepted yet. A connection lost during DATA is reported as
a temporary failure of that one delivery. When the relay cannot be reached
after ``connect_attempts`` tries, :class:`~mailer.errors.RelayUnavailable` is
raised so the caller can pause the blast instead of failing every recipient.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Protocol

import aiosmtplib

from mailer.compose.alert import OutgoingMessage
from mailer.config import SmtpSettings
from mailer.errors import ConfigError, RelayUnavailable, TransportError
from mailer.send.outcome import Outcome, classify, connection_lost

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)


class Transport(Protocol):
    """Delivers one message at a time; the contract of every transport.

    ``deliver`` returns the outcome for that message's single recipient and
    raises only :class:`~mailer.errors.TransportError` (the relay cannot be used
    at all). ``close`` ends the session politely and never raises.
    """

    async def deliver(self, message: OutgoingMessage) -> Outcome: ...

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
        self._where = ""

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

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        last = ""
        for attempt in range(1, self.connect_attempts + 1):
            for host, port in self.relays:
                where = f"{host}:{port}"
                smtp = self._client(host, port)
                try:
                    await smtp.connect()
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
                    self._smtp = smtp
                    self._where = where
                    return smtp
                log.info("SMTP relay connection attempt %d failed: %s", attempt, last)
            if attempt < self.connect_attempts:
                await asyncio.sleep(self.retry_delay * attempt)
        names = ", ".join(f"{h}:{p}" for h, p in self.relays)
        raise RelayUnavailable(
            f"SMTP relay unreachable ({names}) after {self.connect_attempts} attempts; last: {last}"
        )

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        self._smtp = None

    async def deliver(self, message: OutgoingMessage) -> Outcome:
        for attempt in (1, 2):
            smtp = await self._connected()
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
                return classify(exc.code, exc.message)
            except _CONNECTION_ERRORS as exc:
                self._drop()
                return connection_lost(f"connection lost during DATA: {exc or type(exc).__name__}")
            return classify(response.code, response.message)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        if self._smtp is None:
            return
        try:
            if self._smtp.is_connected:
                await self._smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()

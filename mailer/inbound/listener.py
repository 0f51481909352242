"""`mailer inbound`: an SMTP listener for bounces, complaints and mailto unsubscribes.

Point the MX (or a transport map of the MTA in front) for the return-path and
unsubscribe addresses at it. It accepts mail for any recipient, because the
VERP token is in the recipient (``bounces+TOKEN@domain``), and relays
nothing: every message is parsed and classified once
(:func:`mailer.inbound.parse.classify`), then applied
(:func:`mailer.inbound.apply.apply`) once per distinct envelope recipient,
each with the VERP token of its own address, and the ``250`` reply is given
only after the decisions are committed. If the database cannot be written the
reply is ``451``, so the sending MTA keeps the message and tries again
(applying is idempotent, so a retry after a partial success counts nothing
twice). A report about a delivery that is still ``sending`` (a relay can
bounce within milliseconds, before the sender has recorded "sent") is also
answered ``451``: the relay retries minutes later, when the delivery is
settled, so the sender's write never overwrites the bounce. Messages over
10 MB are refused (``552``), and so is a recipient after the 10th
(``452``, RFC 5321 lets the client send the rest in another transaction);
a bounce, a complaint or an unsubscribe request never needs more.

Database work runs on one thread of its own, one message after another, so
the SMTP sessions never wait on each other's parsing and two reports about
one supporter are never decided at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.inbound.apply import Decision, ReportTooEarly, apply
from mailer.inbound.parse import classify, for_recipient
from mailer.store import Database
from mailer.store.models import utcnow

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_RECIPIENTS = 10


class InboundHandler:
    """aiosmtpd handler: classify and apply each message per recipient, then answer."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        actor: str = "inbound:smtp",
    ) -> None:
        self.db = db
        self.signer = TokenSigner(settings.security.secret_key)
        self.settings = settings.inbound
        self.clock = clock
        self.actor = actor
        self.outcomes: Counter[str] = Counter()  # decisions so far, by outcome
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbound-db")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in (r.lower() for r in envelope.rcpt_tos):
            return "250 2.1.5 OK"  # the same recipient twice counts once
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode("utf-8", "replace")
        recipients = list(envelope.rcpt_tos)
        loop = asyncio.get_running_loop()
        try:
            decisions = await loop.run_in_executor(self._executor, self.process, data, recipients)
        except ReportTooEarly as early:
            log.info(
                "report about delivery %d arrived while it is still sending; asked to retry",
                early.delivery_id,
                extra={"event": "inbound.too_early", "delivery": early.delivery_id},
            )
            return "451 4.3.0 The delivery this report is about is still in progress; retry later"
        except Exception:
            log.exception(
                "inbound message from %s not recorded; asked the sender to retry",
                envelope.mail_from or "<>",
                extra={"event": "inbound.error"},
            )
            return "451 4.3.0 Could not record the message now; try again later"
        return "250 2.0.0 Recorded: " + ", ".join(str(d.outcome) for d in decisions)

    def process(self, data: bytes, recipients: list[str]) -> list[Decision]:
        """Classify ``data`` once, apply it once per distinct recipient (synchronous).

        Raises :class:`~mailer.inbound.apply.ReportTooEarly` when a report is
        about a delivery still being sent (decisions before it are committed,
        and are recognized as duplicates when the relay retries).
        """
        decisions = []
        finding = classify(data)
        # One decision per distinct recipient. Addresses compare without case, but
        # each is passed on as written: its VERP token is case-sensitive base64url.
        distinct: dict[str, str] = {}
        for address in recipients:
            distinct.setdefault(address.lower(), address)
        for recipient in list(distinct.values()) or [""]:
            decision = apply(
                self.db,
                for_recipient(finding, recipient),
                signer=self.signer,
                settings=self.settings,
                now=self.clock(),
                actor=self.actor,
            )
            self.outcomes[str(decision.outcome)] += 1
            decisions.append(decision)
        return decisions

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class InboundServer:
    """The listener in a background thread; use as a context manager.

    ``host`` and ``port`` default to ``[inbound]`` in the settings; port 0
    picks a free one (``server.port`` tells which).
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        data_size_limit: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host or settings.inbound.host
        chosen = settings.inbound.port if port is None else port
        self.port = chosen or free_port(self.host)
        self.handler = InboundHandler(db, settings, clock=clock)
        self._controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            ident="mailer inbound",
        )

    def start(self) -> InboundServer:
        self._controller.start()
        log.info(
            "inbound listener on %s:%d",
            self.host,
            self.port,
            extra={"event": "inbound.started", "host": self.host, "port": self.port},
        )
        return self

    def stop(self) -> None:
        self._controller.stop()
        self.handler.close()

    def __enter__(self) -> InboundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

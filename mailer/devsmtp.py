"""A local SMTP server that keeps every message it receives in a Maildir.

For trying the mailer without a real relay (``mailer devsmtp``, ``mailer demo``).
It accepts everything, relays nothing, and listens on 127.0.0.1 only by default.
Each message is stored byte for byte as received, with ``Return-Path`` and
``Delivered-To`` lines in front, as a local delivery agent would write them.
"""

from __future__ import annotations

import mailbox
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MaildirHandler:
    """aiosmtpd handler: one Maildir file per recipient of each message."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        sender = envelope.mail_from or ""
        for rcpt in envelope.rcpt_tos:
            head = f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n".encode("ascii", "replace")
            self.maildir.add(head + content)
            self.count += 1
        return "250 2.0.0 Message stored"


class DevSmtpServer:
    """The server in a background thread; use as a context manager."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = MaildirHandler(maildir)
        self.host = host
        self.port = port or free_port(host)
        self._controller = Controller(
            self.handler, hostname=host, port=self.port, data_size_limit=0
        )

    def start(self) -> DevSmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> DevSmtpServer:
        return self.start()

    def __exit__(
        self,
        *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None] | Any,
    ) -> None:
        self.stop()

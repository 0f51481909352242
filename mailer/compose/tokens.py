"""Signed tokens for tracking and unsubscribe links.

A token names a delivery (and, for a click, one of the blast's recorded links)
by number, never by address, and carries an HMAC-SHA256 tag (RFC 2104, the
standard library's ``hmac``) truncated to 128 bits, as RFC 2104 section 5
allows. The purpose is part of the signed bytes, so a click token can never
be replayed as an unsubscribe token, and the key is derived per purpose from
the configured secret.

Layout before base64url (no padding)::

    version:1  purpose:1  delivery_id:8  [link_id:4 for clicks | petition_id:4 for actions]  tag:16

That is 26 or 30 bytes: 35 or 40 characters in a URL. An action token names
the petition as well as the delivery, so the page checks both against the
delivery's blast.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from mailer.errors import TokenError

VERSION = 1
TAG_BYTES = 16


class Purpose(IntEnum):
    CLICK = 1  # /c/<token>: record a click on one link, then redirect to it
    UNSUBSCRIBE = 2  # /u/<token>: unsubscribe the delivery's supporter
    BOUNCE = 3  # <local>+<token>@domain: the envelope sender, so a bounce names its delivery
    OPEN = 4  # /o/<token>: the open-tracking pixel
    ACTION = 5  # /a/<token>: the delivery's supporter's page of the blast's petition
    CONFIRM = 6  # /confirm/<token>: a pending supporter confirms a public opt-in


_BODY = {
    Purpose.CLICK: struct.Struct(">BBQI"),
    Purpose.UNSUBSCRIBE: struct.Struct(">BBQ"),
    Purpose.BOUNCE: struct.Struct(">BBQ"),
    Purpose.OPEN: struct.Struct(">BBQ"),
    Purpose.ACTION: struct.Struct(">BBQI"),
    Purpose.CONFIRM: struct.Struct(">BBQI"),
}


@dataclass(frozen=True)
class ClickToken:
    delivery_id: int
    link_id: int


@dataclass(frozen=True)
class ActionToken:
    delivery_id: int
    petition_id: int


@dataclass(frozen=True)
class UnsubscribeToken:
    delivery_id: int


class TokenSigner:
    """Makes and checks tokens with one secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an empty secret cannot sign tokens")
        root = secret.encode("utf-8")
        # A key per purpose, keyed once: each tag starts from a copy (the key's padded
        # blocks are already hashed).
        self._keyed = {
            p: hmac.new(
                hmac.new(root, b"mailer token key " + p.name.encode(), hashlib.sha256).digest(),
                digestmod=hashlib.sha256,
            )
            for p in Purpose
        }

    def _tag(self, purpose: Purpose, body: bytes) -> bytes:
        mac = self._keyed[purpose].copy()
        mac.update(body)
        return mac.digest()[:TAG_BYTES]

    def _seal(self, purpose: Purpose, body: bytes) -> str:
        tag = self._tag(purpose, body)
        return base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode("ascii")

    def click(self, delivery_id: int, link_id: int) -> str:
        return self._seal(
            Purpose.CLICK, _BODY[Purpose.CLICK].pack(VERSION, Purpose.CLICK, delivery_id, link_id)
        )

    def unsubscribe(self, delivery_id: int) -> str:
        return self._seal(
            Purpose.UNSUBSCRIBE,
            _BODY[Purpose.UNSUBSCRIBE].pack(VERSION, Purpose.UNSUBSCRIBE, delivery_id),
        )

    def bounce(self, delivery_id: int) -> str:
        return self._seal(
            Purpose.BOUNCE, _BODY[Purpose.BOUNCE].pack(VERSION, Purpose.BOUNCE, delivery_id)
        )

    def open(self, delivery_id: int) -> str:
        return self._seal(
            Purpose.OPEN, _BODY[Purpose.OPEN].pack(VERSION, Purpose.OPEN, delivery_id)
        )

    def action(self, delivery_id: int, petition_id: int) -> str:
        return self._seal(
            Purpose.ACTION,
            _BODY[Purpose.ACTION].pack(VERSION, Purpose.ACTION, delivery_id, petition_id),
        )

    def confirm(self, supporter_id: int, petition_id: int) -> str:
        return self._seal(
            Purpose.CONFIRM,
            _BODY[Purpose.CONFIRM].pack(VERSION, Purpose.CONFIRM, supporter_id, petition_id),
        )

    def read_confirm(self, token: str) -> tuple[int, int]:
        """(supporter id, petition id) of a confirmation token."""
        supporter_id, petition_id = self._open(token, Purpose.CONFIRM)
        return supporter_id, petition_id

    def read_action(self, token: str) -> ActionToken:
        delivery_id, petition_id = self._open(token, Purpose.ACTION)
        return ActionToken(delivery_id, petition_id)

    def read_open(self, token: str) -> int:
        (delivery_id,) = self._open(token, Purpose.OPEN)
        return int(delivery_id)

    def read_bounce(self, token: str) -> int:
        (delivery_id,) = self._open(token, Purpose.BOUNCE)
        return int(delivery_id)

    def _open(self, token: str, purpose: Purpose) -> tuple[int, ...]:
        layout = _BODY[purpose]
        if len(token) > 64 or not token.isascii():
            raise TokenError("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        if len(raw) != layout.size + TAG_BYTES:
            raise TokenError("malformed token")
        body, tag = raw[: layout.size], raw[layout.size :]
        if not hmac.compare_digest(tag, self._tag(purpose, body)):
            raise TokenError("token signature does not match")
        # Re-encoding must give the same text: rejects non-canonical base64 spellings.
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != token.encode("ascii"):
            raise TokenError("malformed token")
        version, got_purpose, *ids = layout.unpack(body)
        if version != VERSION or got_purpose != purpose:
            raise TokenError("token of another kind")
        return tuple(ids)

    def read_click(self, token: str) -> ClickToken:
        delivery_id, link_id = self._open(token, Purpose.CLICK)
        return ClickToken(delivery_id, link_id)

    def read_unsubscribe(self, token: str) -> UnsubscribeToken:
        (delivery_id,) = self._open(token, Purpose.UNSUBSCRIBE)
        return UnsubscribeToken(delivery_id)

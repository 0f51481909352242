"""Message headers and identity, and the reference MIME builder.

:func:`build_message` builds a message with the standard library's ``email``
package. It is slow (milliseconds per message), so messages are sent with
:class:`mailer.compose.fastmime.MessageBuilder`; this one is the reference
the fast builder is checked against in the tests (one known difference: the
``email`` package folds a long List-Unsubscribe into RFC 2047 encoded words,
which mail clients do not decode there; the fast builder does not).

``multipart/alternative`` with a text and an HTML part, and the headers every
bulk message must carry: From, To, Subject (RFC 2047 when not ASCII), Date,
Message-ID, List-Id (RFC 2919), List-Unsubscribe with an https and a mailto
target, and List-Unsubscribe-Post (RFC 8058) for one-click unsubscribe.

Header injection: every piece of text that reaches a header passes through
:func:`header_text`, which removes control and line-break characters, and the
``email`` package refuses header values that still contain CR or LF. Supporter
data therefore never starts a header of its own.
"""

from __future__ import annotations

import email.policy
import random
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from mailer.compose.templates import RenderedAlert

POLICY = email.policy.SMTP
# Controls, format characters, surrogates, private-use and unassigned code points, and
# every kind of separator (line, paragraph, and spaces other than U+0020).
_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


def header_text(value: str) -> str:
    """``value`` as one line of header-safe text.

    No control or line-break characters survive, runs of whitespace become one
    space, and ``=?`` is split so that text can never pass for an RFC 2047
    encoded word that a mail client would decode into something else.
    """
    if value.isprintable():
        # The usual case, in any script: str.isprintable() is False exactly for the
        # categories C* and Z* (but the ASCII space), which are _UNSAFE: nothing to
        # replace, no per-character look-up.
        cleaned = value
    else:
        cleaned = "".join(" " if unicodedata.category(ch) in _UNSAFE else ch for ch in value)
    return " ".join(cleaned.replace("=?", "= ?").split())


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def slug(text: str) -> str:
    value = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "list"


@dataclass(frozen=True)
class Identity:
    """Who an alert comes from; the same for every message of a blast."""

    from_name: str
    from_address: str
    reply_to: str
    return_path: str  # envelope sender; bounces go here
    list_id: str  # e.g. "Action Alerts <supporters.alerts.example.org>"
    unsubscribe_mailto: str  # bare address, e.g. unsubscribe@example.org
    verp: bool = False  # per-recipient envelope sender, see verp_address

    @property
    def domain(self) -> str:
        return domain_of(self.from_address)

    def envelope_sender(self, bounce_token: str = "") -> str:
        base = self.return_path or self.from_address
        return verp_address(base, bounce_token) if self.verp and bounce_token else base


def verp_address(base: str, token: str) -> str:
    """``bounces@example.org`` + token -> ``bounces+<token>@example.org`` (VERP).

    A bounce comes back to that address, and the token (signed, naming the
    delivery) tells which message bounced, whatever the bounce's format.
    """
    local, _, domain = base.rpartition("@")
    return f"{local}+{token}@{domain}"


def unsubscribe_address(identity: Identity, token: str) -> str:
    """The mailto address of ``List-Unsubscribe`` for one recipient.

    With VERP on, the address carries the signed unsubscribe token as well as the
    subject does (``unsubscribe+<token>@example.org``): some mail clients (Apple
    Mail's one-tap unsubscribe) write their own subject, a bare "unsubscribe", and
    the address is then the only place the token survives. A token that is not
    plain base64url stays out of the address (it could not be a local part).
    """
    base = identity.unsubscribe_mailto
    if identity.verp and token and _PLAIN_TOKEN.fullmatch(token):
        return verp_address(base, token)
    return base


_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def list_id_header(list_name: str, org_name: str, domain: str) -> str:
    label = header_text(org_name or list_name).replace("\\", "").replace('"', "")
    return f'"{label}" <{slug(list_name)}.{domain}>'


# Seeded from the operating system's randomness once per process: the random part of a
# Message-ID need not be secret, only unlikely to repeat, and a system call per message
# (secrets) cost more than the rest of the header.
_IDS = random.Random(secrets.randbits(128))


def new_message_id(blast_id: int, delivery_id: int, domain: str) -> str:
    return f"<{blast_id}.{delivery_id}.{_IDS.getrandbits(48):012x}@{domain}>"


def build_message(
    alert: RenderedAlert,
    *,
    identity: Identity,
    to_name: str,
    to_address: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_token: str,
    date: datetime,
) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(
        display_name=header_text(identity.from_name), addr_spec=identity.from_address
    )
    msg["To"] = Address(display_name=header_text(to_name), addr_spec=to_address)
    if identity.reply_to:
        msg["Reply-To"] = identity.reply_to
    msg["Subject"] = header_text(alert.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["List-Id"] = identity.list_id
    mailto = (
        f"mailto:{unsubscribe_address(identity, unsubscribe_token)}"
        f"?subject={quote('unsubscribe ' + unsubscribe_token)}"
    )
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(alert.text, subtype="plain", charset="utf-8")
    msg.add_alternative(alert.html, subtype="html", charset="utf-8")
    msg["Content-Language"] = alert.language  # after set_content, which clears Content-* headers
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=POLICY)

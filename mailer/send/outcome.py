"""What an SMTP reply means for a delivery: one pure function.

RFC 5321 section 4.2.1: the first digit of a reply code says whether the
command succeeded (2yz), failed for now (4yz, "transient negative completion":
the same command may succeed later) or failed for good (5yz, "permanent
negative completion": do not repeat it unchanged). RFC 3463 enhanced status
codes (``5.1.1``), when the server gives one, refine the reason; a full mailbox
(``X.2.2``) is treated as temporary even under a 5yz code, because the
mailbox exists and may empty (RFC 3463 section 3.3 calls it "a persistent
transient failure").

A dropped connection or a timeout tells nothing about the recipient: it is a
temporary failure of the path, retried like a 4yz reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from mailer.store.models import DeliveryState


class Verdict(StrEnum):
    SENT = "sent"  # accepted by the relay
    RETRY = "retry"  # temporary: try again later
    FAILED = "failed"  # permanent: do not try again


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    code: int | None  # the SMTP reply code; None when the connection failed
    text: str  # the server's reply text, or what went wrong on the connection
    enhanced: str = ""  # RFC 3463 status such as "5.1.1", when given

    @property
    def state(self) -> DeliveryState:
        return _STATE[self.verdict]


_STATE = {
    Verdict.SENT: DeliveryState.SENT,
    Verdict.RETRY: DeliveryState.DEFERRED,
    Verdict.FAILED: DeliveryState.FAILED,
}

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_status(text: str) -> str:
    m = _ENHANCED.match(text)
    return ".".join(m.groups()) if m else ""


def classify(code: int, text: str) -> Outcome:
    """The outcome of a reply ``code`` with ``text`` to the last command of a transaction."""
    enhanced = enhanced_status(text)
    if 200 <= code < 300:
        return Outcome(Verdict.SENT, code, text, enhanced)
    if 400 <= code < 500:
        return Outcome(Verdict.RETRY, code, text, enhanced)
    if 500 <= code < 600:
        # X.2.2: mailbox full. Permanent in form, transient in fact (RFC 3463 3.3).
        if enhanced.endswith(".2.2"):
            return Outcome(Verdict.RETRY, code, text, enhanced)
        return Outcome(Verdict.FAILED, code, text, enhanced)
    # Anything else is a protocol violation by the server: treat the path as broken.
    return Outcome(Verdict.RETRY, code, f"unexpected reply: {text}", enhanced)


def connection_lost(reason: str) -> Outcome:
    """The connection dropped or timed out mid-transaction."""
    return Outcome(Verdict.RETRY, None, reason)

"""What one inbound message says: the :class:`Finding` that classifying it produces.

Shared by the parser (:mod:`mailer.inbound.parse`) and the readers of
particular formats (:mod:`mailer.inbound.ses`) without either importing the
other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailer.inbound.status import Kind

EVIDENCE = (
    *("kind", "rule", "shape", "note", "status", "action", "diagnostic", "reply_code"),
    *("reporter",),
    *("remote_mta", "feedback_type", "original_recipient", "original_message_id"),
    *("message_id", "subject", "sender"),
)


@dataclass(frozen=True)
class Finding:
    """What one inbound message says, and what it names. Nothing here is verified."""

    kind: Kind
    shape: str = ""  # "arf", "rfc3464", "qmail", "exim", "sendmail", "text", "mailto", ...
    note: str = ""  # why it was read this way (or ignored)
    rule: str = ""  # the rule that decided the kind (see mailer.inbound.verdict)
    status: str = ""  # RFC 3463 enhanced status, e.g. "5.1.1"
    action: str = ""  # DSN Action: "failed" or "delayed"
    diagnostic: str = ""  # the remote server's words, e.g. "550 5.1.1 <x@y>: user unknown"
    reply_code: int | None = None
    reporter: str = ""  # DSN Reporting-MTA, or the ARF User-Agent
    remote_mta: str = ""
    feedback_type: str = ""  # ARF Feedback-Type
    original_recipient: str = ""
    original_message_id: str = ""
    verp_tokens: tuple[str, ...] = ()
    unsubscribe_tokens: tuple[str, ...] = ()
    message_id: str = ""  # the inbound message's own Message-ID
    subject: str = ""
    sender: str = ""  # the inbound message's From
    fingerprint: str = ""  # names this inbound message across deliveries and re-imports

    def evidence(self) -> dict[str, Any]:
        """The non-empty facts, for an audit event's detail (tokens left out)."""
        facts = {name: getattr(self, name) for name in EVIDENCE}
        facts["kind"] = str(self.kind)
        return {k: v for k, v in facts.items() if v not in ("", None)}

"""Amazon SES notifications delivered by mail (SNS email subscriptions): JSON in the body.

``notificationType`` ``Bounce`` with ``bounceType`` ``Permanent`` (and a
sub-type other than ``General``/``Suppressed`` that is about the message)
or ``Transient``, each ``bouncedRecipients`` entry with its ``status`` and
``diagnosticCode``; ``Complaint`` with ``complainedRecipients``. The
verdict goes through the same :func:`~mailer.inbound.verdict.judge` as a
DSN, so the server's words decide the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailer.inbound.address import recipient_address
from mailer.inbound.finding import Finding
from mailer.inbound.status import Kind, reply_code, status_field
from mailer.inbound.verdict import judge

_MAX_JSON = 200_000


def _notification(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0 or "notificationType" not in text[:_MAX_JSON]:
        return None
    body = text[start:_MAX_JSON]
    value: Any = None
    # Some relays wrap long lines (with a "!" where they cut): try the text as it came,
    # then unwrapped.
    for candidate in (body, re.sub(r"!?\r?\n", "", body)):
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)
            break
        except ValueError:
            continue
    if isinstance(value, dict) and isinstance(value.get("Message"), str):  # SNS envelope
        return _notification(value["Message"])
    return value if isinstance(value, dict) else None


def read_ses_notification(text: str) -> Finding | None:
    """The finding of an SES notification in ``text``, if it is one."""
    data = _notification(text)
    if data is None:
        return None
    kind = str(data.get("notificationType", "")).lower()
    if kind == "complaint":
        complaint = data.get("complaint") or {}
        recipients = complaint.get("complainedRecipients") or [{}]
        return Finding(
            Kind.COMPLAINT,
            rule="ses:complaint",
            shape="ses",
            feedback_type=str(complaint.get("complaintFeedbackType", "")),
            reporter="Amazon SES",
            original_recipient=recipient_address(str(recipients[0].get("emailAddress", ""))),
        )
    if kind != "bounce":
        return Finding(Kind.UNKNOWN, shape="ses", note=f"SES {kind or 'notification'}")
    bounce = data.get("bounce") or {}
    recipients = bounce.get("bouncedRecipients") or [{}]
    first = recipients[0] if isinstance(recipients[0], dict) else {}
    diagnostic = str(first.get("diagnosticCode", ""))
    status = status_field(str(first.get("status", "")))
    transient = str(bounce.get("bounceType", "")).lower() == "transient"
    words = f"{diagnostic} {bounce.get('bounceSubType', '')}"
    verdict = judge("failed", status, words, code=reply_code(diagnostic))
    if verdict is None:
        return None
    found = verdict.kind
    if transient and found is Kind.HARD_BOUNCE:
        found = Kind.SOFT_BOUNCE
    return Finding(
        found,
        rule=verdict.rule,
        shape="ses",
        status=verdict.status,
        action="failed",
        diagnostic=diagnostic,
        reply_code=reply_code(diagnostic),
        reporter="Amazon SES",
        original_recipient=recipient_address(str(first.get("emailAddress", ""))),
    )

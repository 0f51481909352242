"""What a reported status is: the kinds of finding, and status codes found in text.

The decision of which kind a failed recipient is (hard, soft, blocked) is
:func:`mailer.inbound.verdict.judge`, from all the evidence; this module
reads the codes it uses: the RFC 3464 ``Status`` field, the basic reply code
and the RFC 3463 enhanced code that a ``Diagnostic-Code`` or a prose bounce
quotes.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Kind(StrEnum):
    HARD_BOUNCE = "hard_bounce"  # the address does not work: mark delivery and supporter
    SOFT_BOUNCE = "soft_bounce"  # a temporary failure: counted, marks after a limit
    BLOCKED = "blocked"  # the message or the sender was refused: counted, never marks
    COMPLAINT = "complaint"  # the supporter reported an alert as spam (ARF)
    UNSUBSCRIBE = "unsubscribe"  # a mailto: unsubscribe request
    AUTO_REPLY = "auto_reply"  # out-of-office and other automatic answers: ignored
    UNKNOWN = "unknown"  # anything else: ignored (but logged)


SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})

# A DSN Status field: class.subject.detail (RFC 3464 section 2.3.4, RFC 3463).
_STATUS_FIELD = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
# An enhanced code in prose. The subject digit is 0-7 (RFC 3463 defines no others), and
# no digit or dot may touch either end, so IP addresses and version numbers rarely match.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.([0-7])\.(\d{1,3})(?![\d.])")
# "550 5.1.1" or "550-5.1.1": a basic reply code followed by its enhanced code.
_PAIR = re.compile(r"(?<![\d.])([245]\d\d)[ -]([245]\.[0-7]\.\d{1,3})(?![\d.])")
# At the start of a line, also as a transcript quotes the server ("<<< 550 ...").
_CODE_AT_START = re.compile(r"^\s*(?:<<<\s*)?([245]\d\d)(?=[\s-]|$)")
_CODE_AFTER_WORD = re.compile(
    r"(?:said|reply|response|error|answered)\s*:?\s*([245]\d\d)(?=[\s-]|$)", re.IGNORECASE
)


def status_field(value: str) -> str:
    """The status in a DSN ``Status`` field (``"5.1.1 (user unknown)"`` -> ``"5.1.1"``)."""
    m = _STATUS_FIELD.match(value)
    return ".".join(m.groups()) if m else ""


def reply_code(text: str) -> int | None:
    """The SMTP reply code a diagnostic text quotes, if any."""
    m = _PAIR.search(text) or _CODE_AT_START.search(text) or _CODE_AFTER_WORD.search(text)
    return int(m.group(1)) if m else None


def scan(text: str) -> tuple[str, int | None, str]:
    """(enhanced status, reply code, the line that holds them) found in ``text``.

    A ``550 5.1.1`` pair wins over a lone enhanced code, which wins over a lone
    reply code quoted after "said:", "error:" and the like.
    """
    for pattern in (_PAIR, _ENHANCED, _CODE_AFTER_WORD, _CODE_AT_START):
        for line in text.splitlines():
            m = pattern.search(line)
            if m is None:
                continue
            if pattern is _PAIR:
                return m.group(2), int(m.group(1)), line.strip()
            if pattern is _ENHANCED:
                return ".".join(m.groups()), reply_code(line), line.strip()
            return "", int(m.group(1)), line.strip()
    return "", None, ""

"""Bounces written as prose: the non-standard shapes older MTAs still send.

Recognized when the message comes from a mail system (``From:`` local part
``MAILER-DAEMON``, ``postmaster``, ``double-bounce`` ..., or a display name
like "Mail Delivery System") or carries a bounce subject ("failure notice",
"Undelivered Mail Returned to Sender", "Mail delivery failed", "Delivery Status
Notification", "Warning: message ... delayed" ...). Shapes this has been
written against:

- qmail (``qmail-send``): "Hi. This is the qmail-send program at ...",
  ``<user@example.org>:`` then "Remote host said: 550 5.1.1 ...", the copy
  after "--- Below this line is a copy of the message.";
- Exim (before it sent RFC 3464 reports): "This message was created
  automatically by mail delivery software", the address indented on its own
  line, "SMTP error from remote mail server ...: 550 5.1.1 ...", the copy after
  "------ This is a copy of the message, including all the headers. ------";
  and its delay warnings ("has not yet been delivered ... Delivery attempts
  will continue");
- Sendmail-style transcripts (``<user@example.org>... User unknown``,
  "----- Original message follows -----") and similar prose.

The status is the first ``550 5.1.1`` pair, else a lone enhanced code, else a
reply code quoted after "said:"/"error:", found in the explanation (the text
before the copy of the original, so the alert's own text is never read as a
status). Without any code the wording decides: mailbox full or over quota and
delay notices are soft, "permanent error", "user unknown", "does not exist"
and the like are hard. With neither, the message is not read as a bounce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.inbound.status import Kind, scan
from mailer.inbound.verdict import BLOCKED_WORDS, HARD_WORDS, SOFT_WORDS, judge, unfold, words

_DAEMON_LOCALS = frozenset(
    {
        *("mailer-daemon", "mailerdaemon", "mail-daemon", "maildaemon", "postmaster"),
        *("double-bounce", "mdaemon", "mailadmin", "mail-admin", "mailerdaemon-noreply"),
        *("mail.delivery.system", "bounce", "bounces", "nobody", "post_master"),
    }
)
_DAEMON_NAME = re.compile(
    r"mail delivery (?:sub)?system|mailer[- ]daemon|mail administrator|post ?master"
    r"|mail ?system|delivery status notification|microsoftexchange|mail delivery service",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"failure notice|undeliver|returned mail|returned to sender|non[- ]?delivery"
    r"|delivery (?:status notification|failure|failed|problem|delayed|has failed|report)"
    r"|mail delivery failed|could not be delivered|not delivered|delayed mail"
    r"|warning: message \S+ delayed",
    re.IGNORECASE,
)
# A line that opens the copy of the original message (compared after stripping
# dashes, spaces and similar decoration, lowercased).
_ORIGINAL_OPENERS = (
    "below this line is a copy of the message",
    "this is a copy of the message",
    "original message",
    "returned message",
    "unsent message",
    "undelivered message",
    "message headers follow",
    "the header of the original message",
    "headers of the original message",
)
_DELAYED = re.compile(
    r"not yet been delivered|delivery attempts will continue|will (?:continue|keep) trying"
    r"|will be retried|still trying|(?:is|been|delivery) delayed|warning: message \S+ delayed",
    re.IGNORECASE,
)
_RECIPIENT_LINES = (
    re.compile(r"^<([^<>\s]+@[^<>\s]+)>:?\s*$", re.MULTILINE),  # qmail
    re.compile(
        r"^\s*(?:final-)?recipient:\s*(?:rfc822;)?\s*<?([^<>\s]+@[^<>\s]+?)>?\s*$",
        re.MULTILINE | re.IGNORECASE,
    ),
    re.compile(r"^(?:\d{3}[ -])?<?([^<>\s]+@[^<>\s]+?)>?\.\.\.", re.MULTILINE),  # sendmail
    re.compile(r"^[ \t]+<?([^<>\s@]+@[^<>\s@]+?)>?\s*$", re.MULTILINE),  # exim, indented
    re.compile(  # "Could not be delivered to: <x>", "Invalid final delivery userid: x"
        r"(?:delivered to|userid|recipient|addressee)\s*:\s*<?([^<>\s@]+@[^<>\s@]+?)>?[\s.,;]*$",
        re.MULTILINE | re.IGNORECASE,
    ),
)


@dataclass(frozen=True)
class TextBounce:
    kind: Kind
    rule: str  # the rule that decided (see mailer.inbound.verdict)
    shape: str  # "qmail", "exim", "sendmail" or "text"
    action: str  # "failed" or "delayed"
    status: str
    reply_code: int | None
    diagnostic: str  # the line the status (or the deciding wording) was found on
    recipient: str


def from_mail_system(from_header: str) -> bool:
    """Whether ``From:`` names a mail system rather than a person."""
    address = from_header.rpartition("<")[2].rstrip("> ").strip()
    local = address.rpartition("@")[0] if "@" in address else address
    return local.lower() in _DAEMON_LOCALS or bool(_DAEMON_NAME.search(from_header))


def bounce_subject(subject: str) -> bool:
    return bool(_BOUNCE_SUBJECT.search(subject))


def split_original(text: str) -> tuple[str, str]:
    """(explanation, copy of the original) of a prose bounce; the copy may be empty."""
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        key = line.strip(" \t\r\n-=*_#").lower()
        if key.startswith(_ORIGINAL_OPENERS):
            return "".join(lines[:number]), "".join(lines[number + 1 :])
    return text, ""


def _shape(text: str) -> str:
    lowered = text.lower()
    if "qmail-send" in lowered or "below this line is a copy of the message" in lowered:
        return "qmail"
    if "mail delivery software" in lowered:
        return "exim"
    if "transcript of session" in lowered or re.search(r"^\S+@\S+\.\.\.", text, re.MULTILINE):
        return "sendmail"
    return "text"


def _recipient(text: str) -> str:
    for pattern in _RECIPIENT_LINES:
        m = pattern.search(text)
        if m:
            return m.group(1)
    return ""


def read_text_bounce(explanation: str, subject: str = "") -> TextBounce | None:
    """The bounce that ``explanation`` (prose before the copied original) reports, if any.

    Read as a bounce only with a status code, or wording that
    :mod:`.verdict` knows; the verdict is :func:`~.verdict.judge`'s.
    """
    explanation = explanation[:20_000]  # the explanation; more is a quoted message
    status, code, line = scan(explanation)
    line = _with_continuation(explanation, line)
    text = unfold(explanation[:20_000])
    delayed = bool(_DELAYED.search(text) or _DELAYED.search(subject))
    action = "delayed" if delayed else "failed"
    known = any(words(table, text) for table in (BLOCKED_WORDS, SOFT_WORDS, HARD_WORDS))
    if not (status or code is not None or known or delayed):
        return None
    verdict = judge(action, status, line, code=code, prose=explanation)
    if verdict is None:
        return None
    if not line:
        line = _deciding_line(explanation)
    return TextBounce(
        kind=verdict.kind,
        rule=verdict.rule,
        shape=_shape(explanation),
        action=action,
        status=verdict.status,
        reply_code=code,
        diagnostic=line,
        recipient=_recipient(explanation),
    )


def _with_continuation(explanation: str, line: str) -> str:
    """``line`` and the indented lines that continue it (Exim wraps the server's words)."""
    if not line:
        return line
    lines = explanation.splitlines()
    for number, text in enumerate(lines):
        if text.strip() == line:
            more = []
            for follow in lines[number + 1 : number + 4]:
                if not follow[:1].isspace() or not follow.strip():
                    break
                more.append(follow.strip())
            return " ".join([line, *more])
    return line


def _deciding_line(explanation: str) -> str:
    for line in explanation.splitlines():
        text = unfold(line)
        if any(words(table, text) for table in (BLOCKED_WORDS, SOFT_WORDS, HARD_WORDS)):
            return line.strip()
    return ""

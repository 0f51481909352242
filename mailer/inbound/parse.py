"""What an inbound message is: :func:`classify`, a pure function that never raises.

Shapes recognized, tried in this order:

1. **ARF complaint** (RFC 5965): a ``message/feedback-report`` part, normally in
   ``multipart/report; report-type=feedback-report``. Feedback-Type ``abuse``,
   ``fraud``, ``virus`` and ``other`` are complaints; ``not-spam`` and
   ``auth-failure`` (RFC 6591) say nothing against the supporter: unknown.
2. **Delivery status notification** (RFC 3464): a ``message/delivery-status``
   (or RFC 6533 ``message/global-delivery-status``) part, normally in
   ``multipart/report; report-type=delivery-status``, also when an MTA wraps
   it in ``multipart/mixed`` or encodes it (base64, quoted-printable). Each
   per-recipient block is judged by ``Action``, ``Status`` and
   ``Diagnostic-Code`` (see :mod:`.status`); the most severe recipient counts
   (hard, then a failed soft, then a delay).
   A report of success only (``delivered``/``relayed``/``expanded``) is unknown.
3. **mailto: unsubscribe**: a Subject ``unsubscribe <token>``, as the mailto
   target of every alert's ``List-Unsubscribe`` header writes it; or a bare
   ``unsubscribe`` subject or ``X-Apple-Unsubscribe: true`` (Apple Mail writes its
   own subject), whose token can only be in the address it was sent to
   (``unsubscribe+<token>@``, with ``sender.verp`` on).
4. **Prose bounces** from qmail, older Exim, Sendmail and the like (see
   :mod:`.textbounce`), when the sender or the subject is a mail system's.
5. **Auto-replies** (ignored): ``Auto-Submitted`` other than ``no``
   (RFC 3834), ``X-Autoreply``/``X-Autorespond``, ``Precedence:
   auto_reply|bulk|junk|list``, or an out-of-office subject.
6. Anything else is **unknown** (ignored).

Identifiers are collected whatever the shape: VERP tokens (``local+TOKEN@``)
from the envelope recipient, the ``Delivered-To``/``X-Original-To``/
``Envelope-To``/``To`` headers, an ARF ``Original-Mail-From`` and the original
message's ``Return-Path``; the original ``Message-ID``; unsubscribe tokens from
the subject or the plus-address of a mailto request, or the original's
``List-Unsubscribe``. None of them is
trusted here: :mod:`mailer.inbound.apply` verifies them.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from dataclasses import replace
from email.message import Message
from email.policy import compat32

from mailer.inbound.address import recipient_address
from mailer.inbound.finding import Finding
from mailer.inbound.mime import (
    MAX_PARTS,
    body_text,
    clean,
    field_blocks,
    header,
    headers,
    html_text,
    mime_parts,
    original_of,
    parse_headers,
)
from mailer.inbound.ses import read_ses_notification
from mailer.inbound.status import SUCCESS_ACTIONS, Kind, reply_code, status_field
from mailer.inbound.textbounce import (
    bounce_subject,
    from_mail_system,
    read_text_bounce,
    split_original,
)
from mailer.inbound.verdict import judge

log = logging.getLogger(__name__)

_SIGNED = r"[A-Za-z0-9_-]{20,64}"  # a base64url token, checked later
_END = r"(?![A-Za-z0-9_-])"
_VERP = re.compile(rf"\+({_SIGNED}){_END}@")
_SUBJECT_UNSUBSCRIBE = re.compile(rf"\bunsubscribe\s+({_SIGNED}){_END}", re.IGNORECASE)
_BARE_UNSUBSCRIBE = re.compile(r"\s*unsubscribe\s*", re.IGNORECASE)
_LIST_UNSUBSCRIBE = re.compile(rf"(?:subject=unsubscribe(?:%20|\+)|/u/)({_SIGNED}){_END}")
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_HEADER_LINE = re.compile(
    r"^[\s>]*(?:message-id|references|in-reply-to|received|return-path|from|sender|reply-to"
    r"|cc|date|subject|x-[\w-]+)\s*:|^\s+(?:by|for|from|with|id)\s",
    re.IGNORECASE,
)
_ANY_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]{1,64}@[A-Za-z0-9][A-Za-z0-9.-]{0,252}[A-Za-z0-9]")
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)"
    r"|autoreply|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|fuera de la oficina|away from (?:the )?office|on vacation|vacation reply)",
    re.IGNORECASE,
)
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other", "opt-out"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_SEVERITY = {"hard_bounce": 4, "blocked": 3, "soft_bounce": 2}


def classify(data: bytes, *, envelope_to: str = "") -> Finding:
    """What the message ``data`` is; ``envelope_to`` is its SMTP recipient when known."""
    try:
        return _classify(data, envelope_to)
    except Exception as exc:  # the email package on hostile input; never lose the listener
        log.warning("inbound message could not be parsed: %r", exc, exc_info=True)
        return Finding(
            Kind.UNKNOWN,
            note=f"unparseable: {type(exc).__name__}",
            fingerprint=hashlib.sha256(data).hexdigest()[:32],
        )


def _typed(value: str) -> str:
    """``"smtp; 550 5.1.1 ..."`` -> ``"550 5.1.1 ..."`` (RFC 3464 typed fields)."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _message_id(value: str) -> str:
    m = _MESSAGE_ID.search(value)
    return m.group(0) if m else ""


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _fingerprint(msg: Message, data: bytes) -> str:
    own_id = _message_id(header(msg, "Message-ID"))
    if own_id:
        basis = b"id:" + own_id.lower().encode("utf-8", "replace")
    else:
        # Without a Message-ID: the body and the sender's own headers, not the trace
        # headers a delivery agent puts in front (so a Maildir copy matches the SMTP one).
        body = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[-1]
        own = "|".join(header(msg, name) for name in ("Date", "From", "Subject"))
        basis = b"body:" + own.encode("utf-8", "replace") + b"|" + body
    return hashlib.sha256(basis).hexdigest()[:32]


def _auto_reply(msg: Message, subject: str) -> str:
    auto = header(msg, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse"):
        if msg.get(name) is not None:
            return f"{name} header"
    precedence = header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    if _AUTO_SUBJECT.search(subject):
        return "out-of-office subject"
    return ""


def _arf(report: Message, original: Message | None) -> Finding:
    blocks = field_blocks(report)
    fields = blocks[0] if blocks else Message()
    feedback_type = header(fields, "Feedback-Type").lower()
    complaint = feedback_type in _COMPLAINT_TYPES
    return Finding(
        Kind.COMPLAINT if complaint else Kind.UNKNOWN,
        shape="arf",
        note="" if complaint else f"feedback report of type {feedback_type or '(none)'}",
        feedback_type=feedback_type,
        reporter=header(fields, "User-Agent"),
        rule=f"arf:{feedback_type or 'none'}",
        original_recipient=recipient_address(header(fields, "Original-Rcpt-To")),
        verp_tokens=tuple(_VERP.findall(header(fields, "Original-Mail-From"))),
        original_message_id=(
            _message_id(header(original, "Message-ID")) if original is not None else ""
        ),
    )


def _dsn(report: Message, original: Message | None, prose: str) -> Finding:
    blocks = field_blocks(report)
    per_message = blocks[0] if blocks else Message()
    recipients = blocks[1:]
    if header(per_message, "Action") or header(per_message, "Final-Recipient"):
        recipients = blocks  # no per-message block at all
    best: Finding | None = None
    seen: list[str] = []
    for fields in recipients:
        action = header(fields, "Action").lower()
        diagnostic = _typed(header(fields, "Diagnostic-Code"))
        status_value = header(fields, "Status")
        status = status_field(status_value)
        comment = status_value[len(status) :].strip(" ()") if status else status_value
        code = reply_code(diagnostic)
        seen.append(action or "?")
        if not (action or status or diagnostic):
            continue  # not a per-recipient block
        verdict = judge(action, status, f"{diagnostic} {comment}", code=code, prose=prose)
        if verdict is None:
            continue
        found = Finding(
            verdict.kind,
            rule=verdict.rule,
            shape="rfc3464",
            status=verdict.status,
            action=action or "failed",
            diagnostic=diagnostic or comment,
            reply_code=code,
            remote_mta=_typed(header(fields, "Remote-MTA")),
            original_recipient=recipient_address(
                header(fields, "Final-Recipient"), header(fields, "Original-Recipient")
            ),
        )
        if best is None or _rank(found) > _rank(best):
            best = found
    if best is None and not any(a in SUCCESS_ACTIONS for a in seen):
        return Finding(Kind.UNKNOWN, shape="rfc3464", note="no per-recipient fields")
    if best is None:
        best = Finding(
            Kind.UNKNOWN,
            shape="rfc3464",
            note=f"no failed or delayed recipient (Action: {', '.join(seen) or 'none'})",
        )
    return replace(
        best,
        reporter=_typed(header(per_message, "Reporting-MTA")),
        original_message_id=(
            _message_id(header(original, "Message-ID")) if original is not None else ""
        ),
    )


def _rank(finding: Finding) -> int:
    if finding.action == "delayed":
        return 1
    return _SEVERITY.get(str(finding.kind), 0)


def _explanation(parts: list[Message]) -> tuple[str, Message]:
    """The prose of a message without report parts, and the original it quotes
    (an attached one, else the copy below the prose; empty when there is none).

    Plain-text parts are read; HTML parts only when there is no plain text
    (their tags dropped), so an HTML-only bounce is read too.
    """
    texts = [body_text(p) for p in parts if p.get_content_type() == "text/plain"]
    if not any(t.strip() for t in texts):
        texts = [html_text(body_text(p)) for p in parts if p.get_content_type() == "text/html"]
    if not any(t.strip() for t in texts):
        # A multipart whose boundary does not match: the parser kept its body as text.
        texts = [
            str(p.get_payload())
            for p in parts
            if p.get_content_maintype() == "multipart" and isinstance(p.get_payload(), str)
        ]
    explanation, copied = split_original("\n".join(texts))
    original = original_of(parts)
    if original is None:
        original = parse_headers(copied)
    return explanation, original


def _prose(explanation: str, original: Message, subject: str) -> Finding | None:
    """A prose bounce (see :mod:`.textbounce`)."""
    bounce = read_text_bounce(explanation, subject)
    if bounce is None:
        return None
    return Finding(
        bounce.kind,
        rule=bounce.rule,
        shape=bounce.shape,
        status=bounce.status,
        action=bounce.action,
        diagnostic=bounce.diagnostic,
        reply_code=bounce.reply_code,
        original_recipient=recipient_address(bounce.recipient),
        original_message_id=_message_id(header(original, "Message-ID")),
    )


def _jmrp(msg: Message, original: Message | None) -> Finding | None:
    """Microsoft's JMRP complaint (Outlook.com, Hotmail): not ARF, but an attached
    original that carries ``X-HmXmrOriginalRecipient``."""
    if original is None:
        return None
    recipient = header(original, "X-HmXmrOriginalRecipient") or header(
        msg, "X-HmXmrOriginalRecipient"
    )
    if not recipient:
        return None
    return Finding(
        Kind.COMPLAINT,
        rule="jmrp",
        shape="jmrp",
        feedback_type="abuse",
        reporter=header(msg, "From"),
        original_recipient=recipient_address(recipient),
        original_message_id=_message_id(header(original, "Message-ID")),
    )


def _apple_unsubscribe(msg: Message) -> bool:
    """Apple Mail's one-tap unsubscribe: a mail to the mailto target of List-Unsubscribe,
    with a subject of its own and ``X-Apple-Unsubscribe: true``."""
    return header(msg, "X-Apple-Unsubscribe").strip().lower() == "true"


def _not_ours(address: str, ours: set[str]) -> str:
    """``address``, unless it is ours (sender, return path, the report's own ends)."""
    lowered = address.lower()
    if not address or lowered in ours or _VERP.search(address):
        return ""
    return address


def _bounced_address(
    finding: Finding,
    original: Message | None,
    explanation: str,
    ours: set[str],
    failed_recipients: str,
) -> str:
    """The supporter's address the report is about, in order of trust: what the
    report's fields or prose name, an ``X-Failed-Recipients`` header (Exim, Google),
    the returned original's single ``To``, then the first address in the
    explanation that is none of ours."""
    if address := _not_ours(finding.original_recipient, ours):
        return address
    if finding.kind in (Kind.AUTO_REPLY, Kind.UNSUBSCRIBE) or not finding.shape:
        return ""  # not a report about a recipient at all
    if address := _not_ours(recipient_address(failed_recipients), ours):
        return address
    if original is not None:
        to = [recipient_address(v) for v in headers(original, "To")]
        to = [a for a in to if a] if len(to) == 1 and "," not in header(original, "To") else []
        if to and (address := _not_ours(to[0], ours)):
            return address
    for line in explanation[:20_000].splitlines():
        if "@" not in line or _HEADER_LINE.match(line):
            continue  # no address, or a quoted header: ids, the sender, the original's trace
        line = line[:1000]
        for m in _ANY_ADDRESS.finditer(line):
            if address := _not_ours(recipient_address(m.group(0)), ours):
                return address
    return ""


def _classify(data: bytes, envelope_to: str) -> Finding:
    msg = email.message_from_bytes(data, policy=compat32)
    parts = list(mime_parts(msg))[:MAX_PARTS]
    subject = header(msg, "Subject")
    by_type = {p.get_content_type(): p for p in reversed(parts)}
    explanation, original = _explanation(parts)
    attached = original_of(parts)
    finding: Finding | None = None
    from_system = from_mail_system(header(msg, "From"))
    if "message/feedback-report" in by_type:
        finding = _arf(by_type["message/feedback-report"], attached)
    elif report := next((by_type[t] for t in _DSN_TYPES if t in by_type), None):
        finding = _dsn(report, attached, explanation)
        if finding.kind is Kind.UNKNOWN and finding.note == "no per-recipient fields":
            finding = _prose(explanation, original, subject) or finding
    elif jmrp := _jmrp(msg, attached):
        finding = jmrp
    elif ses := read_ses_notification(explanation):
        finding = ses
    elif m := _SUBJECT_UNSUBSCRIBE.search(subject):
        finding = Finding(Kind.UNSUBSCRIBE, shape="mailto", unsubscribe_tokens=(m.group(1),))
    elif _BARE_UNSUBSCRIBE.fullmatch(subject) or _apple_unsubscribe(msg):
        finding = Finding(
            Kind.UNSUBSCRIBE, shape="mailto", note="no token in the subject; only in the address"
        )
    else:
        looks_like_bounce = bounce_subject(subject) and not _AUTO_SUBJECT.search(subject)
        if from_system or looks_like_bounce:
            finding = _prose(explanation, original, subject)
            if finding is None:
                # Not an auto-reply for all its Precedence: bulk; just not understood.
                finding = Finding(
                    Kind.UNKNOWN,
                    shape="text",
                    note=(
                        "from a mail system, but no status found"
                        if from_system
                        else "a bounce subject, but no status found"
                    ),
                )
        if finding is None and (reason := _auto_reply(msg, subject)):
            finding = Finding(Kind.AUTO_REPLY, shape="auto-reply", note=reason)
    if finding is None:
        finding = Finding(Kind.UNKNOWN, note="not a bounce, complaint or unsubscribe")
    if original is None:
        original = attached
    verp = [*_VERP.findall(envelope_to), *finding.verp_tokens]
    for name in _ENVELOPE_HEADERS:
        for value in headers(msg, name):
            verp.extend(_VERP.findall(value))
    unsubscribe = list(finding.unsubscribe_tokens)
    if finding.kind is Kind.UNSUBSCRIBE:
        # unsubscribe+<token>@: the token of the mailto address (see
        # mailer.compose.message.unsubscribe_address), not a bounce token.
        unsubscribe.extend(verp)
        verp = []
    ours: set[str] = set()
    if original is not None:
        verp.extend(_VERP.findall(header(original, "Return-Path")))
        unsubscribe.extend(_LIST_UNSUBSCRIBE.findall(header(original, "List-Unsubscribe")))
        for name in ("From", "Return-Path", "Sender", "Reply-To"):
            ours.add(recipient_address(header(original, name)).lower())
    for name in ("From", "To"):  # the report's own ends: the MTA and us
        ours.add(recipient_address(header(msg, name)).lower())
    ours.discard("")
    if finding.kind is Kind.UNSUBSCRIBE:  # who asked: evidence only, never what decides
        recipient = recipient_address(header(msg, "From"))
    else:
        recipient = _bounced_address(
            finding, original, explanation, ours, header(msg, "X-Failed-Recipients")
        )
    return replace(
        finding,
        original_recipient=recipient,
        verp_tokens=_unique(verp),
        unsubscribe_tokens=_unique(unsubscribe),
        diagnostic=clean(finding.diagnostic),
        message_id=_message_id(header(msg, "Message-ID")),
        subject=clean(subject, 200),
        sender=clean(header(msg, "From"), 200),
        fingerprint=_fingerprint(msg, data),
    )


def for_recipient(finding: Finding, envelope_to: str) -> Finding:
    """``finding`` as seen by one SMTP recipient: that recipient's VERP token first.

    The message is parsed once (:func:`classify`); each ``RCPT TO`` only adds
    the token in its own address, so a message to many recipients costs one
    parse, not one per recipient.
    """
    own = _VERP.findall(envelope_to)
    if not own:
        return finding
    if finding.kind is Kind.UNSUBSCRIBE:
        return replace(finding, unsubscribe_tokens=_unique([*own, *finding.unsubscribe_tokens]))
    return replace(finding, verp_tokens=_unique([*own, *finding.verp_tokens]))

"""Inbound mail: bounces, complaints and mailto unsubscribes.

The path of one inbound message::

    SMTP (listener.py, `mailer inbound`)  ─┐
    Maildir / mbox (mailbox.py)           ─┴─▶ parse.classify(bytes) -> Finding   (once)
                                                     │ (kind, rule, evidence, identifiers)
                                                     ▼
                                  apply.apply(db, finding, ...) -> Decision
                                  (per recipient: attribute to a delivery, change
                                  states, record events; ReportTooEarly while the
                                  delivery is still sending)

``parse`` is pure (bytes in, a :class:`Finding` out, never raises), with
``mime`` (reading untrusted MIME), ``status`` (status codes in text),
``verdict`` (hard, soft or blocked, from all the evidence, naming the rule),
``textbounce`` (prose bounces), ``address`` (the bounced address, cleaned)
and ``ses`` (Amazon SES notifications) under it; ``apply`` and ``review``
(who was stopped by bounces, and undo) are the parts that write to the
database. docs/bounces.md describes the rules.
"""

from mailer.inbound.apply import Decision, Outcome, ReportTooEarly, apply
from mailer.inbound.finding import Finding
from mailer.inbound.listener import InboundHandler, InboundServer
from mailer.inbound.mailbox import ImportResult, import_mailbox
from mailer.inbound.parse import classify
from mailer.inbound.status import Kind

__all__ = [
    "Decision",
    "Finding",
    "ImportResult",
    "InboundHandler",
    "InboundServer",
    "Kind",
    "Outcome",
    "ReportTooEarly",
    "apply",
    "classify",
    "import_mailbox",
]

"""Inbound mail: bounces, complaints and mailto unsubscribes.

The path of one inbound message::

    SMTP (listener.py, `mailer inbound`)  ─┐
    Maildir / mbox (mailbox.py)           ─┴─▶ parse.classify(bytes) -> Finding
                                                     │ (kind, evidence, identifiers)
                                                     ▼
                                  apply.apply(db, finding, ...) -> Decision
                                  (attribute to a delivery, change states, record events)

``parse`` is pure (bytes in, a :class:`Finding` out, never raises), with
``mime`` (reading untrusted MIME), ``status`` (what a status code means) and
``textbounce`` (prose bounces) under it; ``apply`` is the only part that
writes to the database.
"""

from mailer.inbound.apply import Decision, Outcome, apply
from mailer.inbound.listener import InboundHandler, InboundServer
from mailer.inbound.mailbox import ImportResult, import_mailbox
from mailer.inbound.parse import Finding, classify
from mailer.inbound.status import Kind

__all__ = [
    "Decision",
    "Finding",
    "ImportResult",
    "InboundHandler",
    "InboundServer",
    "Kind",
    "Outcome",
    "apply",
    "classify",
    "import_mailbox",
]

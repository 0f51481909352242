"""`mailer bounces import PATH`: bounces and complaints collected in a mailbox.

For a return-path mailbox that some other MTA delivers into. ``PATH`` is a
Maildir folder (it has ``cur/`` and ``new/``) or an mbox file (it starts with
a ``From `` line; an empty file is an empty mbox). Every message goes through
the same :func:`~mailer.inbound.parse.classify` and
:func:`~mailer.inbound.apply.apply` as the SMTP listener, one transaction
each; the VERP token is found in the ``Delivered-To``/``X-Original-To``
headers the delivery agent wrote. The mailbox is only read, never changed:
importing it again is safe, because a report already recorded is recognized
and counted once (see :mod:`mailer.inbound.apply`). A report about a delivery
that is still ``sending`` is left unrecorded (``too_early`` in the result), so
the next import applies it once the delivery is settled.
"""

from __future__ import annotations

import mailbox
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.errors import ImportFileError
from mailer.inbound.apply import ReportTooEarly, apply
from mailer.inbound.parse import classify
from mailer.store import Database
from mailer.store.models import utcnow


@dataclass
class ImportResult:
    path: Path
    format: str  # "maildir" or "mbox"
    messages: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # by finding: hard_bounce, ...
    outcomes: Counter[str] = field(default_factory=Counter)  # by decision: bounced, ...
    too_early: int = 0  # about deliveries still sending: left for the next import


def mailbox_format(path: Path) -> str:
    """``"maildir"`` or ``"mbox"``; ImportFileError naming ``path`` when it is neither."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            return "maildir"
        raise ImportFileError(f"{path}: a folder, but not a Maildir (no cur/ and new/ in it)")
    if path.is_file():
        with path.open("rb") as handle:
            start = handle.read(5)
        if start in (b"", b"From "):
            return "mbox"
        raise ImportFileError(f"{path}: not an mbox file (it does not start with a 'From ' line)")
    raise ImportFileError(f"{path}: no such Maildir folder or mbox file")


def messages(path: Path) -> Iterator[bytes]:
    """The messages in the Maildir or mbox at ``path``, one at a time, as bytes."""
    box: mailbox.Mailbox[mailbox.Message]
    if mailbox_format(path) == "maildir":
        box = mailbox.Maildir(path, create=False)
    else:
        box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            try:
                yield box.get_bytes(key)
            except KeyError:  # removed by someone else while we were reading
                continue
    finally:
        box.close()


def import_mailbox(
    db: Database,
    settings: Settings,
    path: Path,
    *,
    clock: Callable[[], datetime] = utcnow,
    actor: str = "inbound:import",
) -> ImportResult:
    """Classify and apply every message in the Maildir or mbox at ``path``."""
    result = ImportResult(path=path, format=mailbox_format(path))
    signer = TokenSigner(settings.security.secret_key)
    for data in messages(path):
        finding = classify(data)
        result.messages += 1
        result.kinds[str(finding.kind)] += 1
        try:
            decision = apply(
                db, finding, signer=signer, settings=settings.inbound, now=clock(), actor=actor
            )
        except ReportTooEarly:
            result.too_early += 1
            continue
        result.outcomes[str(decision.outcome)] += 1
    return result

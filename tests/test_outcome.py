"""What a relay's reply means (outcome.classify), alone."""

from __future__ import annotations

import pytest

from mailer.send.outcome import Verdict, classify


@pytest.mark.parametrize(
    ("code", "text", "verdict"),
    [
        (250, "2.0.0 OK", Verdict.SENT),
        (421, "4.7.0 Too many connections", Verdict.RETRY),
        (450, "4.2.1 Mailbox busy", Verdict.RETRY),
        (452, "4.3.1 Insufficient storage", Verdict.RETRY),
        (550, "5.1.1 No such user", Verdict.FAILED),
        (552, "5.2.2 Mailbox full", Verdict.RETRY),
        (554, "5.7.1 Rejected as spam", Verdict.FAILED),
        (553, "Bad address syntax", Verdict.FAILED),
        (999, "strange", Verdict.RETRY),
    ],
)
def test_reply_classification(code: int, text: str, verdict: Verdict) -> None:
    assert classify(code, text).verdict is verdict

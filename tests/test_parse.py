"""What an inbound message is, read alone: ``classify`` on reports of every shape,
and on damaged or arbitrary bytes (no database, no server)."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailer.inbound import Kind, classify
from mailer.inbound.parse import for_recipient
from tests.test_inbound import (
    FRAGMENTS,
    ORIGINAL_HEAD,
    SAMPLES,
    TOKEN,
    VERP,
    arf,
    dsn,
    exim_delay,
    exim_failure,
    mailto_unsubscribe,
)


def test_parse_an_rfc3464_report() -> None:
    found = classify(dsn(to=VERP, recipient="p1@example.org", original_head=ORIGINAL_HEAD))
    assert found.kind is Kind.HARD_BOUNCE and found.shape == "rfc3464"
    assert (found.status, found.action, found.reply_code) == ("5.1.1", "failed", 550)
    assert found.verp_tokens == (TOKEN,)
    assert found.original_message_id == "<7.42.a1b2c3d4e5f6@example.org>"
    assert found.original_recipient == "p1@example.org"
    assert found.message_id == "<20250120120000.4A1B2C3D@mx.example.net>"


@pytest.mark.parametrize(
    ("status", "action", "diagnostic", "kind"),
    [
        ("5.1.1", "failed", "smtp; 550 5.1.1 no such user", Kind.HARD_BOUNCE),
        ("5.7.1", "failed", "smtp; 554 5.7.1 rejected by policy", Kind.BLOCKED),
        ("5.2.2", "failed", "smtp; 552 5.2.2 mailbox full", Kind.SOFT_BOUNCE),
        ("4.2.2", "failed", "smtp; 452 4.2.2 over quota", Kind.SOFT_BOUNCE),
        ("5.1.1", "delayed", "smtp; 550 5.1.1 odd, but a delay", Kind.SOFT_BOUNCE),
        ("", "failed", "smtp; 550 User unknown", Kind.HARD_BOUNCE),
        ("", "failed", "X-Postfix; host mx[192.0.2.1] said: 450 try later", Kind.SOFT_BOUNCE),
        ("", "failed", "", Kind.SOFT_BOUNCE),
        ("2.0.0", "delivered", "smtp; 250 2.0.0 Ok", Kind.UNKNOWN),
        ("2.0.0", "relayed", "", Kind.UNKNOWN),
    ],
)
def test_dsn_status_decides_hard_or_soft(
    status: str, action: str, diagnostic: str, kind: Kind
) -> None:
    report = dsn(
        to=VERP, recipient="p1@example.org", status=status, action=action, diagnostic=diagnostic
    )
    assert classify(report).kind is kind


def test_parse_a_dsn_without_a_per_message_block_inside_multipart_mixed() -> None:
    report = f"""\
From: postmaster@old.example.net
To: {VERP}
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="X"

--X
Content-Type: text/plain

Delivery failed.
--X
Content-Type: message/delivery-status

Final-Recipient: rfc822;p1@example.org
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound

--X
Content-Type: message/rfc822

{ORIGINAL_HEAD}

Dear supporter,
--X--
""".encode()
    found = classify(report)
    assert (found.kind, found.status, found.reply_code) == (Kind.HARD_BOUNCE, "5.1.10", 550)
    assert found.original_message_id == "<7.42.a1b2c3d4e5f6@example.org>"
    assert found.verp_tokens == (TOKEN,)


def test_parse_an_encoded_and_an_internationalized_dsn() -> None:
    fields = b"Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; a@example.org\n"
    fields += b"Action: failed\nStatus: 4.2.2\n"
    encoded = (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        b"--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(fields)
        + b"--B--\n"
    )
    found = classify(encoded)
    assert (found.kind, found.status, found.original_recipient) == (
        Kind.SOFT_BOUNCE,
        "4.2.2",
        "a@example.org",
    )
    international = (
        b'Content-Type: multipart/report; report-type=global-delivery-status; boundary="B"\n\n'
        b"--B\nContent-Type: message/global-delivery-status\n\n"
        b"Reporting-MTA: dns; mx.example.net\n\n"
        b"Final-Recipient: utf-8; jos\xc3\xa9@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        b"--B--\n"
    )
    found = classify(international)
    assert (found.kind, found.original_recipient) == (Kind.HARD_BOUNCE, "josé@example.org")


def test_parse_prose_bounces() -> None:
    delay = classify(exim_delay(to=VERP, recipient="p3@example.org"))
    assert (delay.kind, delay.action, delay.status, delay.reply_code) == (
        Kind.SOFT_BOUNCE,
        "delayed",
        "4.7.1",
        451,
    )
    assert (delay.shape, delay.original_recipient) == ("exim", "p3@example.org")
    assert delay.verp_tokens == (TOKEN,)
    failed = classify(
        exim_failure(to=VERP, recipient="p4@example.org", original_head=ORIGINAL_HEAD)
    )
    assert (failed.kind, failed.status, failed.shape) == (Kind.HARD_BOUNCE, "5.1.1", "exim")
    assert failed.original_message_id == "<7.42.a1b2c3d4e5f6@example.org>"
    assert failed.original_recipient == "p4@example.org"
    sendmail = classify(
        b"From: Mail Delivery Subsystem <MAILER-DAEMON@old.example.net>\n"
        b"Subject: Returned mail: see transcript for details\n\n"
        b"   ----- The following addresses had permanent fatal errors -----\n"
        b"<p5@example.org>\n\n"
        b"   ----- Transcript of session follows -----\n"
        b"... while talking to mail.example.com.:\n"
        b">>> RCPT To:<p5@example.org>\n"
        b"<<< 550 No such user here\n"
        b"p5@example.org... User unknown\n"
    )
    assert (sendmail.kind, sendmail.reply_code) == (Kind.HARD_BOUNCE, 550)
    assert sendmail.original_recipient == "p5@example.org"
    quota = classify(
        b"From: MAILER-DAEMON@host.example.net\nSubject: failure notice\n\n"
        b"Sorry, the mailbox of p1@example.org is full.\n"
    )
    assert quota.kind is Kind.SOFT_BOUNCE
    vague = classify(b"From: MAILER-DAEMON@host.example.net\nSubject: hello\n\nSomething.\n")
    assert vague.kind is Kind.UNKNOWN and vague.note == "from a mail system, but no status found"


def test_the_alert_copied_below_a_bounce_is_not_read_as_its_status() -> None:
    report = (
        b"From: MAILER-DAEMON@mail.example.net\nSubject: failure notice\n\n"
        b"Hi. This is the qmail-send program at mail.example.net.\n"
        b"I'm not going to try again; this message has been in the queue too long.\n\n"
        b"--- Below this line is a copy of the message.\n\n"
        b"Subject: Our 550 5.1.1 supporters\n\nWe have 550 5.1.1 reasons to act.\n"
    )
    found = classify(report)
    assert (found.kind, found.status, found.shape) == (Kind.SOFT_BOUNCE, "", "qmail")


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [
        ("abuse", Kind.COMPLAINT),
        ("fraud", Kind.COMPLAINT),
        ("not-spam", Kind.UNKNOWN),
        ("auth-failure", Kind.UNKNOWN),
    ],
)
def test_arf_feedback_types(feedback_type: str, kind: Kind) -> None:
    original = (ORIGINAL_HEAD + f"\nReturn-Path: <{VERP}>\n\nDear supporter,\n").encode()
    found = classify(arf(original=original, feedback_type=feedback_type))
    assert (found.kind, found.shape, found.feedback_type) == (kind, "arf", feedback_type)
    assert found.original_message_id == "<7.42.a1b2c3d4e5f6@example.org>"


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: auto-replied\nSubject: Re: your message",
        "X-Autoreply: yes\nSubject: Thanks",
        "Precedence: auto_reply\nSubject: Thanks",
        "Subject: Out of Office: Tell the White House",
        "Subject: Respuesta automática: Dile a la Casa Blanca",
    ],
)
def test_auto_replies(headers: str) -> None:
    found = classify(f"From: Ana <ana@example.org>\n{headers}\n\nAway until Monday.\n".encode())
    assert found.kind is Kind.AUTO_REPLY


def test_people_writing_back_are_unknown() -> None:
    found = classify(b"From: Ana <ana@example.org>\nSubject: Re: Tell the White House\n\nDone!\n")
    assert found.kind is Kind.UNKNOWN


def test_a_mailto_unsubscribe_needs_the_token_in_the_subject() -> None:
    found = classify(mailto_unsubscribe(sender="ana@example.org", token=TOKEN))
    assert (found.kind, found.unsubscribe_tokens) == (Kind.UNSUBSCRIBE, (TOKEN,))


def test_a_bare_unsubscribe_is_a_request_whose_token_can_only_be_in_its_address() -> None:
    bare = classify(b"From: ana@example.org\nSubject: unsubscribe\n\nplease\n")
    assert (bare.kind, bare.unsubscribe_tokens, bare.verp_tokens) == (Kind.UNSUBSCRIBE, (), ())
    assert bare.original_recipient == "ana@example.org"  # who asked; evidence only
    apple = b"From: ana@example.org\nSubject: Please stop\nX-Apple-Unsubscribe: true\n\nx\n"
    to = f"unsubscribe+{TOKEN}@example.org"
    found = for_recipient(classify(apple, envelope_to=to), to)
    assert (found.kind, found.unsubscribe_tokens, found.verp_tokens) == (
        Kind.UNSUBSCRIBE,
        (TOKEN,),
        (),
    )
    # Only the bare word: people writing back about unsubscribing are not asking.
    for subject in (b"Re: unsubscribe", b"How do I unsubscribe my mother?"):
        assert classify(b"Subject: " + subject + b"\n\nhi\n").kind is not Kind.UNSUBSCRIBE


def test_the_fingerprint_ignores_trace_headers() -> None:
    report = dsn(to=VERP, recipient="p1@example.org")
    without_id = re.sub(rb"Message-ID: .*\n", b"", report)
    for message in (report, without_id):
        traced = b"Return-Path: <>\nDelivered-To: " + VERP.encode() + b"\n" + message
        assert classify(traced).fingerprint == classify(message).fingerprint
    assert classify(report).fingerprint != classify(without_id).fingerprint


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_the_parser_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    found = classify(data)
    assert found.kind is Kind.UNKNOWN
    assert not found.note.startswith("unparseable")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SAMPLES),
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=200),
    st.binary(max_size=200),
)
def test_the_parser_never_crashes_on_damaged_reports(
    sample: bytes, at: int, cut: int, insert: bytes
) -> None:
    at = at % (len(sample) + 1)
    found = classify(sample[:at] + insert + sample[at + cut :])
    assert isinstance(found.kind, Kind)
    assert not found.note.startswith("unparseable")
    assert found.fingerprint


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=40), max_size=40))
@example(  # once crashed: re-serializing an encoded status part with a bogus charset
    [
        b"Content-Type: message/delivery-status",
        b"Content-Transfer-Encoding: base64",
        b"",
        b"Content-Type: text/plain; charset=bogus",
        b"\x80",
    ]
)
def test_the_parser_never_crashes_on_report_fragments(lines: list[bytes]) -> None:
    found = classify(b"\n".join(lines))
    assert not found.note.startswith("unparseable")

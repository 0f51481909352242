"""The fast MIME builder against ``build_message``: same headers, same decoded content."""

from __future__ import annotations

import email
import email.policy
import quopri
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TypedDict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailer.compose import bodies
from mailer.compose.bodies import EncodedBodies, prepare_body
from mailer.compose.fastmime import MessageBuilder, encode_body, format_date
from mailer.compose.message import (
    Identity,
    build_message,
    header_text,
    list_id_header,
    to_bytes,
)
from mailer.compose.templates import AlertTemplate, RenderedAlert, sample_context
from tests.conftest import REPO

DATE = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TOKEN = "AQAAAAEAAAAHc2lnbmF0dXJlLWJ5dGVzLTAxMjM0NQ"
URL = f"https://act.example.org/u/{TOKEN}"
MESSAGE_ID = "<7.42.0a1b2c3d4e5f@example.org>"
UNSUBSCRIBE = f"<{URL}>, <mailto:unsubscribe@example.org?subject=unsubscribe%20{TOKEN}>"
COMPARED = (
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe-Post",
    "Content-Language",
    "Reply-To",
)


class Args(TypedDict):
    to_name: str
    to_address: str
    message_id: str
    unsubscribe_url: str
    unsubscribe_token: str
    date: datetime


def args(
    to_name: str = "A",
    to_address: str = "p@example.org",
    *,
    message_id: str = MESSAGE_ID,
    unsubscribe_url: str = URL,
    unsubscribe_token: str = TOKEN,
) -> Args:
    return Args(
        to_name=to_name,
        to_address=to_address,
        message_id=message_id,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_token=unsubscribe_token,
        date=DATE,
    )


def identity(from_name: str = "Rapid Response", reply_to: str = "") -> Identity:
    return Identity(
        from_name=from_name,
        from_address="alerts@example.org",
        reply_to=reply_to,
        return_path="",
        list_id=list_id_header("supporters", "Rights Network", "example.org"),
        unsubscribe_mailto="unsubscribe@example.org",
    )


def alert(
    subject: str = "Tell the White House", text: str = "Hello\n", html: str = "<p>Hello</p>\n"
) -> RenderedAlert:
    return RenderedAlert(language="en", subject=subject, preheader="", html=html, text=text)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body(preferencelist=(kind,))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n")


def both(
    rendered: RenderedAlert,
    ident: Identity,
    *,
    to_name: str,
    to_address: str = "p@example.org",
    builder: MessageBuilder | None = None,
) -> tuple[bytes, bytes]:
    """(fast bytes, build_message bytes) for the same input."""
    kwargs = args(to_name, to_address)
    fast = (builder or MessageBuilder(ident)).build(rendered, **kwargs)
    slow = to_bytes(build_message(rendered, identity=ident, **kwargs))
    return fast, slow


def squeeze(value: str) -> str:
    return value.replace(" ", "")


def check_wire_format(data: bytes) -> None:
    """Pure ASCII, CRLF only, short lines, no line-initial "From "."""
    assert data.isascii()
    assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    assert data.endswith(b"\r\n")
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep
    lines = data.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert not any(line.startswith(b"From ") for line in lines)
    # Parts: quoted-printable lines are at most 76 characters (RFC 2045 6.7);
    # 7bit ones at most 998 (checked above for every line).
    for part in rest.split(b"Content-Transfer-Encoding: ")[1:]:
        if part.startswith(b"quoted-printable"):
            assert all(len(line) <= 76 for line in part.split(b"\r\n")[1:-2])
    # Header fields the builder folds itself stay within 78 (the addresses here are short).
    fields = head.decode("ascii").replace("\r\n ", "\0 ").split("\r\n")
    for field in fields:
        if field.startswith(("From:", "To:", "Subject:")):
            assert all(len(line) <= 78 for line in field.split("\0")), field


def reference_address(message: EmailMessage, name: str) -> Address | None:
    """The one address of ``message``'s header ``name`` as the email package reads it back.

    None when it cannot: for some display names (a long run of digits ending in ``:``,
    say) the package folds its own header into something its parser takes for a group
    and fails or misreads. That is the reference's limitation, not the fast builder's;
    ``test_no_name_can_add_or_break_a_header`` checks our header for every name.
    """
    try:
        header = message[name]
        addresses = header.addresses
    except (HeaderParseError, TypeError, ValueError, IndexError):
        return None
    if header.defects or len(addresses) != 1 or "@" not in addresses[0].addr_spec:
        return None
    found: Address = addresses[0]
    return found


def assert_equivalent(fast_data: bytes, slow_data: bytes, rendered: RenderedAlert) -> None:
    check_wire_format(fast_data)
    fast, slow = parse(fast_data), parse(slow_data)
    assert sorted(fast.keys()) == sorted(slow.keys())
    assert not fast.defects
    for name in ("From", "To"):
        (got,) = fast[name].addresses
        want = reference_address(slow, name)
        if want is None:
            # The email package cannot read back what it wrote itself (see below); ours
            # must still name the same mailbox.
            assert f"<{got.addr_spec}>".encode() in slow_data
            continue
        assert got.addr_spec == want.addr_spec
        # Python keeps the folding space between two adjacent encoded words of a display
        # name (RFC 2047 6.2 says to drop it), for its own output as for ours.
        assert squeeze(got.display_name) == squeeze(want.display_name)
    # Unstructured text is decoded exactly: the subject survives character for character.
    assert str(fast["Subject"]) == header_text(rendered.subject)
    assert squeeze(str(fast["Subject"])) == squeeze(str(slow["Subject"]))
    for name in COMPARED:
        assert str(fast[name]) == str(slow[name]), name
    # build_message lets the email package fold List-Unsubscribe, which turns a long mailto
    # target into RFC 2047 encoded words (that no client decodes inside <...>) and leaves
    # extra spaces; the targets themselves are the same.
    assert str(fast["List-Unsubscribe"]) == UNSUBSCRIBE
    assert squeeze(str(fast["List-Unsubscribe"])) == squeeze(str(slow["List-Unsubscribe"]))
    assert fast.get_content_type() == "multipart/alternative"
    parts = list(fast.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert not part.defects
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable")
    for kind in ("plain", "html"):
        assert body(fast, kind) == body(slow, kind)


# --- generated input -------------------------------------------------------------------

TRICKY = st.sampled_from(
    [
        "\r\n",
        "\n",
        "\r",
        '"',
        "\\",
        ",",
        "(",
        ")",
        "<",
        ">",
        "@",
        ":",
        ";",
        ".",
        "[",
        "]",
        " ",
        "  ",
        "\t",
        "=?",
        "?=",
        "=?utf-8?q?Eve=0D=0ABcc=3A_x=40example=2Ecom?=",
        "=?utf-8?b?RXZl?=",
        "_",
        "=",
        "é",
        "ñ",
        "Ω",
        "中文",
        "😀",
        "\u2028",
        "\x00",
        "Bcc: x@example.com",
        "From ",
    ]
)
HEADER_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(TRICKY, st.text(max_size=8)), max_size=30).map("".join),
    st.text(min_size=80, max_size=400),
    st.text(alphabet="abcdefghij ", min_size=60, max_size=300),
    st.text(alphabet="abcdefghijé😀", min_size=60, max_size=200),
)
LINE = st.one_of(
    st.text(max_size=40),
    st.text(min_size=70, max_size=300),
    st.tuples(
        st.sampled_from(["", ".", "..", "From ", "From", "-- ", "--=_", " ", "\t"]),
        st.text(max_size=100),
        st.sampled_from(["", " ", "\t", "  \t", "=", "."]),
    ).map("".join),
    st.text(alphabet="xé😀=. \t", max_size=200),
)
BODY = st.tuples(
    st.lists(LINE, max_size=12),
    st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=12, max_size=12),
    st.booleans(),
).map(
    lambda t: "".join(line + sep for line, sep in zip(t[0], t[1], strict=False))[
        : None if t[2] else -1
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_name=HEADER_TEXT, to_name=HEADER_TEXT, subject=HEADER_TEXT, text=BODY, html=BODY)
def test_fast_builder_matches_build_message(
    from_name: str, to_name: str, subject: str, text: str, html: str
) -> None:
    rendered = alert(subject=subject, text=text, html=html)
    fast, slow = both(rendered, identity(from_name), to_name=to_name)
    assert_equivalent(fast, slow, rendered)


@settings(max_examples=200, deadline=None)
@given(HEADER_TEXT)
def test_no_name_can_add_or_break_a_header(name: str) -> None:
    rendered = alert(subject=name)
    fast, slow = both(rendered, identity(name), to_name=name)
    msg = parse(fast)
    assert sorted(msg.keys()) == sorted(parse(slow).keys())
    assert msg["To"].addresses[0].addr_spec == "p@example.org"
    assert msg["From"].addresses[0].addr_spec == "alerts@example.org"
    for value in (str(msg["To"]), str(msg["From"]), str(msg["Subject"])):
        assert "\r" not in value and "\n" not in value


@given(BODY)
def test_body_encoding_round_trips(text: str) -> None:
    cte, encoded = encode_body(text, b"=_boundary")
    assert encoded.isascii() and encoded.endswith(b"\r\n")
    assert b"=_boundary" not in encoded  # the boundary never occurs inside a part
    lines = encoded.split(b"\r\n")
    if cte == "7bit":
        assert all(len(line) <= 998 for line in lines)
        assert not any(line.endswith((b" ", b"\t")) or line.startswith(b"From ") for line in lines)
    else:
        assert all(len(line) <= 76 for line in lines)
        assert b"=_" not in encoded  # quoted-printable never has "=_"
    decoded = (encoded if cte == "7bit" else quopri.decodestring(encoded)).decode("utf-8")
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    if not expected.endswith("\n"):
        expected += "\n"
    assert decoded.replace("\r\n", "\n") == expected


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        timezones=st.one_of(
            st.none(),
            st.builds(
                timezone,
                st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)),
            ),
            st.builds(
                timezone,
                st.integers(min_value=-23 * 60, max_value=23 * 60).map(
                    lambda m: timedelta(minutes=m)
                ),
            ),
        ),
    )
)
def test_date_is_formatted_like_the_email_package(value: datetime) -> None:
    assert format_date(value) == format_datetime(value)


# --- examples --------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("to_name", ["Alex Sample", "José Núñez", ""])
def test_the_real_alert_round_trips(language: str, to_name: str) -> None:
    template = AlertTemplate(REPO / "templates", "executive-orders")
    rendered = template.render(sample_context(), language)
    ident = identity(reply_to="Replies <replies@example.org>")
    fast, slow = both(rendered, ident, to_name=to_name, to_address="alex@example.org")
    assert_equivalent(fast, slow, rendered)
    msg = parse(fast)
    assert msg["From"] == "Rapid Response <alerts@example.org>"
    assert msg["To"].addresses[0].display_name == to_name
    assert msg["Subject"] == rendered.subject
    assert msg["Content-Language"] == language
    assert msg["List-Unsubscribe"] == UNSUBSCRIBE
    assert "Dear Alex," in body(msg, "plain") or "Hola, Alex:" in body(msg, "plain")


def test_message_layout() -> None:
    builder = MessageBuilder(identity())
    data = builder.build(
        alert(subject="Alex, dile a la Casa Blanca que aquí no sobra nadie"),
        to_name="Ana Ng",
        to_address="ana@example.org",
        message_id=MESSAGE_ID,
        unsubscribe_url=URL,
        unsubscribe_token=TOKEN,
        date=DATE,
    )
    head, _, rest = data.partition(b"\r\n\r\n")
    assert builder.boundary.startswith("=_")
    assert head.split(b"\r\n")[:4] == [
        b"From: Rapid Response <alerts@example.org>",
        b"To: Ana Ng <ana@example.org>",
        b"Subject: Alex, dile a la Casa Blanca que =?utf-8?q?aqu=C3=AD?= no sobra nadie",
        b"Date: Sat, 28 Nov 2026 09:00:00 +0000",
    ]
    assert f'boundary="{builder.boundary}"'.encode() in head
    delimiter = f"--{builder.boundary}".encode()
    assert rest.startswith(delimiter + b"\r\n")
    assert rest.count(delimiter) == 3 and rest.endswith(delimiter + b"--\r\n")
    # Short pure-ASCII parts need no encoding at all.
    assert rest.count(b"Content-Transfer-Encoding: 7bit") == 2


INJECTIONS = [
    "Eve\r\nBcc: x@example.com",
    "Eve\nSubject: owned",
    "Eve\rX-Injected: 1",
    "Eve\u2028Bcc: x@example.com",
    "Eve\x00\x0bBcc: x@example.com",
    "=?utf-8?q?Eve=0D=0ABcc=3A_x=40example=2Ecom?=",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_a_name_cannot_add_a_header(name: str) -> None:
    fast, _ = both(alert(subject=name), identity(), to_name=name)
    msg = parse(fast)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert len(msg.get_all("Subject") or []) == 1
    assert msg["To"].addresses[0].addr_spec == "p@example.org"
    assert b"\r\nBcc:" not in fast and b"\r\nX-Injected:" not in fast
    assert squeeze(msg["To"].addresses[0].display_name) == squeeze(header_text(name))


def test_display_name_with_specials_is_a_quoted_string() -> None:
    name = 'Ana "Nena" O\'Brien, (volunteer) <x@y> \\o/'
    fast, slow = both(alert(), identity(), to_name=name)
    assert (
        b'\r\nTo: "Ana \\"Nena\\" O\'Brien, (volunteer) <x@y> \\\\o/" <p@example.org>\r\n' in fast
    )
    assert parse(fast)["To"].addresses[0].display_name == name
    assert_equivalent(fast, slow, alert())


def test_long_and_non_ascii_names_are_encoded_words_of_at_most_75() -> None:
    name = "María Fernanda de los Ángeles Rodríguez Hernández " * 4
    fast, slow = both(alert(subject=name), identity(), to_name=name)
    assert_equivalent(fast, slow, alert(subject=name))
    head = fast.partition(b"\r\n\r\n")[0].decode("ascii")
    words = [w for w in head.split() if w.startswith("=?")]
    assert words and all(len(w) <= 75 for w in words)
    # Runs of plain words stay readable.
    assert "Fernanda de los" in head


@pytest.mark.parametrize(
    ("text", "cte"),
    [
        ('<a href="https://example.org/?a=1&amp;b=2">Act now</a>\n', "7bit"),  # "=" is fine
        ("<p>" + "x" * 991 + "</p>\n", "7bit"),  # a line of 998 octets, the most allowed
        ("<p>" + "x" * 992 + "</p>\n", "quoted-printable"),  # 999
        ("<p>Se\u00f1ora</p>\n", "quoted-printable"),  # not ASCII
        ("<p>trailing space </p> \n", "quoted-printable"),  # a transport might strip it
        ("<p>tab</p>\t\n", "quoted-printable"),
        ("From the network\n", "quoted-printable"),  # an mbox would mangle it
        ("a\x0cb\n", "quoted-printable"),  # a control character
        ("inside =_boundary here\n", "quoted-printable"),  # the boundary
    ],
)
def test_a_part_goes_as_7bit_only_when_it_can_go_as_it_is(text: str, cte: str) -> None:
    got, encoded = encode_body(text, b"=_boundary")
    assert got == cte
    if got == "7bit":
        assert encoded == text.encode("ascii").replace(b"\n", b"\r\n")


def test_lines_starting_with_from_or_dot() -> None:
    text = "From here on\n.\n.hidden\nFrom " + "x" * 71 + "\nFrom" + "\n"
    cte, encoded = encode_body(text)
    assert cte == "quoted-printable"
    assert encoded.startswith(b"=46rom here on\r\n=2E\r\n.hidden\r\n=46rom ")
    fast, slow = both(alert(text=text, html=text), identity(), to_name="A")
    assert_equivalent(fast, slow, alert(text=text, html=text))


def test_an_unusual_address_goes_through_the_email_package() -> None:
    fast, slow = both(alert(), identity(), to_name="Odd", to_address='"odd person"@example.org')
    assert_equivalent(fast, slow, alert())
    assert parse(fast)["To"].addresses[0].addr_spec == '"odd person"@example.org'


@pytest.mark.parametrize(
    ("message_id", "url"),
    [
        ("<1@example.org>\r\nBcc: x@example.com", URL),
        ("<1 2@example.org>", URL),
        (MESSAGE_ID, "https://act.example.org/u/x\nBcc: x@example.com"),
    ],
)
def test_program_values_that_could_break_a_line_are_refused(message_id: str, url: str) -> None:
    kwargs = args(message_id=message_id, unsubscribe_url=url)
    with pytest.raises(ValueError, match="printable ASCII"):
        MessageBuilder(identity()).build(alert(), **kwargs)


def test_token_needing_quotes_is_quoted_like_build_message() -> None:
    kwargs = args(unsubscribe_token="a b&c/é")
    fast = MessageBuilder(identity()).build(alert(), **kwargs)
    slow = to_bytes(build_message(alert(), identity=identity(), **kwargs))
    got = str(parse(fast)["List-Unsubscribe"])
    assert (
        got == f"<{URL}>, <mailto:unsubscribe@example.org?subject=unsubscribe%20a%20b%26c/%C3%A9>"
    )
    assert squeeze(got) == squeeze(str(parse(slow)["List-Unsubscribe"]))


@pytest.mark.parametrize("token", [TOKEN, "a b&c/é"])
def test_with_verp_the_mailto_address_carries_the_token_too(token: str) -> None:
    ident = replace(identity(), verp=True)
    kwargs = args(unsubscribe_token=token)
    fast = MessageBuilder(ident).build(alert(), **kwargs)
    slow = to_bytes(build_message(alert(), identity=ident, **kwargs))
    got = str(parse(fast)["List-Unsubscribe"])
    assert squeeze(got) == squeeze(str(parse(slow)["List-Unsubscribe"]))
    if token == TOKEN:  # a client that writes its own subject still sends the token
        assert f"<mailto:unsubscribe+{TOKEN}@example.org?subject=unsubscribe%20{TOKEN}>" in got
    else:  # a token that cannot be a local part stays out of the address
        assert "<mailto:unsubscribe@example.org?subject=unsubscribe%20a%20b" in got
    check_wire_format(fast)


# Pieces of a body that the line-wise encoding must get right: line breaks of every kind,
# trailing whitespace, "From " and "." at a line start, the boundary, non-ASCII, control
# characters, lines of about 76 and over 998 characters.
FRAGMENT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "\n",
            "\r",
            "\r\n",
            " ",
            "\t",
            " \n",
            "\t\r\n",
            "From ",
            "\nFrom ",
            "From",
            ".",
            "\n.\n",
            "=",
            "=_boundary",
            "=_bound",
            "ary",
            "é",
            "中文",
            "😀",
            "\x00",
            "\x0c",
            "x" * 73,
            "y" * 80,
            "z" * 999,
        ]
    ),
)
PIECE = st.one_of(
    st.sampled_from(["", "\n", "\r", "x", " "]),  # small pieces make the edge cases likely
    st.lists(FRAGMENT, max_size=6).map("".join),
)
AVOID = st.sampled_from([b"=_boundary", b"", b"From", b"xy", b"\r", b"ary\nx"])


def spliced(
    parts: list[tuple[bool, str]],
) -> tuple[list[str], list[tuple[int, int]], dict[int, str]]:
    """(chunks, slots, fill) of a text given as (is a slot, text) parts."""
    chunks = ["" if slot else text for slot, text in parts]
    slots = [(i, 100 + i) for i, (slot, _) in enumerate(parts) if slot]
    return chunks, slots, {marker: parts[i][1] for i, marker in slots}


@settings(max_examples=600, deadline=None)
@given(parts=st.lists(st.tuples(st.booleans(), PIECE), max_size=10), avoid=AVOID)
@example(parts=[(False, "\n"), (True, ""), (False, "\n")], avoid=b"")  # a slot's line, then more
@example(parts=[(False, "a\n"), (True, "")], avoid=b"")  # the text ends in an empty slot's line
@example(parts=[(True, "")], avoid=b"")  # nothing at all: one empty line
def test_a_body_encoded_line_by_line_is_the_whole_text_encoded(
    parts: list[tuple[bool, str]], avoid: bytes
) -> None:
    chunks, slots, fill = spliced(parts)
    prepared = prepare_body(chunks, slots, avoid)
    if b"\n" in avoid or any(chunk.endswith("\r") for chunk in chunks[:-1]):
        assert prepared is None  # only the whole text's encoding is exact
        return
    assert prepared is not None
    marker_at = dict(slots)
    # The same prepared body for several recipients: its own values, empty ones, others.
    for values in (fill, dict.fromkeys(fill, ""), dict.fromkeys(fill, "From x ")):
        text = "".join(
            chunk if (marker := marker_at.get(i)) is None else values[marker]
            for i, chunk in enumerate(chunks)
        )
        got = prepared.encode(values)
        if any("\r" in value or "\n" in value for value in values.values()):
            assert got is None  # a value would change the lines
        else:
            assert got == encode_body(text, avoid)


@settings(max_examples=300)
@given(
    first=st.lists(FRAGMENT, max_size=8).map("".join),
    second=st.lists(FRAGMENT, max_size=8).map("".join),
)
def test_each_step_of_the_encoding_works_line_by_line(first: str, second: str) -> None:
    """What the line-wise encoding rests on: after a line break, everything starts afresh."""
    head = first.replace("\r", "").encode("utf-8") + b"\n"
    tail = second.replace("\r", "").encode("utf-8")
    whole = head + tail
    qp_head, qp_tail = bodies._qp(head), bodies._qp(tail)
    assert bodies._qp(whole) == qp_head + qp_tail
    assert bodies._repair(qp_head + qp_tail) == bodies._repair(qp_head) + bodies._repair(qp_tail)
    assert bodies._needs_repair(qp_head + qp_tail) == (
        bodies._needs_repair(qp_head) or bodies._needs_repair(qp_tail)
    )
    for avoid in (b"", b"=_boundary", b"From"):
        assert bodies._plain_7bit(whole + b"\n", avoid) == (
            bodies._plain_7bit(head, avoid) and bodies._plain_7bit(tail + b"\n", avoid)
        )


def test_parts_already_encoded_are_used_only_for_the_builders_boundary() -> None:
    builder = MessageBuilder(identity())
    rendered = alert(text="Hello\n", html="<p>Hello</p>\n")
    given_text = ("quoted-printable", b"=48ello\r\n")
    ours = EncodedBodies(builder.boundary.encode("ascii"), text=given_text, html=None)
    data = builder.build(rendered, **args("A", "p@example.org"), bodies=ours)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=48ello\r\n" in data
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\n<p>Hello</p>\r\n" in data  # encoded here
    other = EncodedBodies(b"=_another", text=given_text, html=None)
    assert builder.build(rendered, **args("A", "p@example.org"), bodies=other) == builder.build(
        rendered, **args("A", "p@example.org")
    )


SHARED = MessageBuilder(identity())  # one builder across examples: its subject lines are kept


@settings(max_examples=400)
@given(subjects=st.lists(st.one_of(HEADER_TEXT, st.sampled_from(["Tell them", "Díselo", ""]))))
def test_a_kept_subject_line_is_the_one_a_new_builder_writes(subjects: list[str]) -> None:
    for subject in subjects:
        fresh = MessageBuilder(identity())
        kwargs = args("A", "p@example.org")
        kept = SHARED.build(alert(subject=subject), **kwargs)
        new = fresh.build(alert(subject=subject), **kwargs)
        assert kept.replace(SHARED.boundary.encode(), fresh.boundary.encode()) == new

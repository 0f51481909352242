"""Rendering alerts, rewriting links, building MIME: languages, fallbacks, injection."""

from __future__ import annotations

import email
import email.policy
import shutil
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.compose import links
from mailer.compose.alert import AlertComposer, Recipient
from mailer.compose.dkim import DkimSigner
from mailer.compose.message import Identity, header_text, list_id_header
from mailer.compose.templates import AlertTemplate, check_template, sample_context
from mailer.compose.tokens import TokenSigner
from mailer.errors import TemplateProblem
from tests.conftest import REPO, TEST_SECRET

BASE = "https://act.example.org"
CTA = "https://www.whitehouse.gov/contact/"


class MemoryLinks:
    """An in-memory link registry (the database one is exercised by the send tests)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def link_id(self, url: str) -> int | None:
        return self.ids.get(url)

    def register(self, urls: Iterable[str]) -> None:
        for url in urls:
            self.ids.setdefault(url, len(self.ids) + 1)


def composer(template: AlertTemplate | None = None) -> tuple[AlertComposer, MemoryLinks]:
    registry = MemoryLinks()
    built = AlertComposer(
        template=template or AlertTemplate(REPO / "templates", "executive-orders"),
        blast_id=7,
        blast_name="eo",
        cta_url=CTA,
        identity=Identity(
            from_name="Rapid Response",
            from_address="alerts@example.org",
            reply_to="",
            return_path="",
            list_id=list_id_header("supporters", "Rights Network", "example.org"),
            unsubscribe_mailto="unsubscribe@example.org",
        ),
        organization_name="Rights Network",
        postal_address="1 Example Way\nOakland, CA 94600",
        base_url=BASE,
        signer=TokenSigner(TEST_SECRET),
        link_ids=registry,
        clock=lambda: datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
    )
    built.register_links()
    return built, registry


DKIM_SIGNER = DkimSigner(
    domain="example.org",
    selector="s1",
    private_key_pem=rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ),
)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body(preferencelist=(kind,))
    assert part is not None
    content: str = part.get_content()
    return content


def test_english_alert_with_name() -> None:
    c, _ = composer()
    msg = parse(
        c.compose(
            1, Recipient(email="ana@example.org", first_name="Ana", language="en")
        ).message.data
    )
    assert msg["Subject"].startswith("Ana, tell the White House")
    assert "Dear Ana," in text_of(msg, "plain")
    assert "Dear Ana," in text_of(msg, "html")
    assert msg["Content-Language"] == "en"


def test_spanish_alert_for_spanish_speaker() -> None:
    c, _ = composer()
    composed = c.compose(2, Recipient(email="jose@example.org", first_name="José", language="es"))
    msg = parse(composed.message.data)
    assert msg["Subject"] == "José, dile a la Casa Blanca que aquí no sobra nadie"
    assert "Casa Blanca" in text_of(msg, "plain")
    assert "Cancelar" in text_of(msg, "html") or "cancelar" in text_of(msg, "html")
    assert composed.alert.language == "es"
    # RFC 2047: the raw header is ASCII, the decoded one is the Spanish subject.
    raw_subject = next(
        line for line in composed.message.data.split(b"\r\n") if line.startswith(b"Subject:")
    )
    assert raw_subject.isascii() and b"=?utf-8?" in raw_subject.lower()


def test_unknown_language_falls_back_to_english() -> None:
    c, _ = composer()
    composed = c.compose(3, Recipient(email="m@example.org", first_name="Marie", language="fr"))
    assert composed.alert.language == "en"
    assert "Dear Marie," in composed.alert.text


def test_greeting_falls_back_without_first_name() -> None:
    c, _ = composer()
    en = c.compose(4, Recipient(email="x@example.org", first_name="", language="en")).alert
    es = c.compose(5, Recipient(email="y@example.org", first_name="", language="es")).alert
    assert "Dear friend," in en.text
    assert en.subject.startswith("Friend, ")
    assert es.text.lstrip().startswith("Hola:")
    assert not es.subject.startswith(",")


def test_html_is_autoescaped_but_subject_is_not() -> None:
    c, _ = composer()
    composed = c.compose(
        6, Recipient(email="o@example.org", first_name="O'Brien <b>&", language="en")
    )
    assert "O&#39;Brien &lt;b&gt;&amp;" in composed.alert.html
    assert "<b>&" not in composed.alert.html.split("<body", 1)[1]
    assert composed.alert.subject.startswith("O'Brien <b>&, ")


def test_every_link_is_tracked_except_unsubscribe_and_mailto() -> None:
    c, registry = composer()
    composed = c.compose(8, Recipient(email="t@example.org", first_name="T"))
    html, text = composed.alert.html, composed.alert.text
    assert CTA not in html and CTA not in text
    assert "https://www.example.org/statements" not in html + text
    assert set(registry.ids) == {CTA, "https://www.example.org/statements/executive-orders"}
    signer = TokenSigner(TEST_SECRET)
    tracked = [u for u in links.html_links(html) + links.text_links(text) if "/c/" in u]
    assert tracked, "no tracking links found"
    for url in tracked:
        assert url.startswith(f"{BASE}/c/")
        token = signer.read_click(url.rsplit("/", 1)[1])
        assert token.delivery_id == 8
        assert token.link_id in registry.ids.values()
    unsubscribe = [u for u in links.html_links(html) if "/u/" in u]
    assert len(unsubscribe) == 1
    assert signer.read_unsubscribe(unsubscribe[0].rsplit("/", 1)[1]).delivery_id == 8


def test_rewrite_keeps_trailing_punctuation_and_skips_other_schemes() -> None:
    def track(url: str) -> str:
        return "T(" + url + ")"

    text = "Act: https://a.example.org/x?y=1. Write mailto:me@example.org or see https://self.example.org/u/abc"
    out = links.rewrite_text(text, "https://self.example.org/", track)
    assert "T(https://a.example.org/x?y=1)." in out
    assert "mailto:me@example.org" in out
    assert "https://self.example.org/u/abc" in out and "T(https://self" not in out
    html = (
        '<a class="b" href="https://a.example.org/?q=1&amp;r=2">x</a>'
        "<a href='mailto:x@example.org'>m</a>"
    )
    rewritten = links.rewrite_html(html, "https://self.example.org/", track)
    assert 'href="T(https://a.example.org/?q=1&amp;r=2)"' in rewritten
    assert "mailto:x@example.org" in rewritten


def test_required_headers_are_present() -> None:
    c, _ = composer()
    composed = c.compose(9, Recipient(email="h@example.org", first_name="H", last_name="Ng"))
    msg = parse(composed.message.data)
    assert msg["From"] == "Rapid Response <alerts@example.org>"
    assert msg["To"] == "H Ng <h@example.org>"
    assert msg["Date"] == "Sat, 28 Nov 2026 09:00:00 +0000"
    assert msg["Message-ID"] == composed.message.message_id
    assert msg["Message-ID"].startswith("<7.9.") and msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Id"] == '"Rights Network" <supporters.example.org>'
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = msg["List-Unsubscribe"]
    assert (
        f"<{BASE}/u/" in unsub and "<mailto:unsubscribe@example.org?subject=unsubscribe%20" in unsub
    )
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "1 Example Way" in text_of(msg, "plain") and "Oakland" in text_of(msg, "html")
    assert composed.message.envelope_sender == "alerts@example.org"


INJECTIONS = [
    "Eve\r\nBcc: victim@example.com",
    "Eve\nSubject: owned",
    "Eve\rX-Injected: 1",
    "Eve\u2028Bcc: victim@example.com",
    "Eve\x00\x0bBcc: x@example.com",
    "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40example=2Ecom?=",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_header_injection_through_names_is_impossible(name: str) -> None:
    c, _ = composer()
    composed = c.compose(10, Recipient(email="eve@example.org", first_name=name, last_name=name))
    msg = parse(composed.message.data)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert len(msg.get_all("Subject") or []) == 1
    assert msg["To"].addresses[0].addr_spec == "eve@example.org"
    for value in (str(msg["To"]), str(msg["Subject"])):
        assert "\r" not in value and "\n" not in value


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_no_name_can_add_or_break_a_header(first: str, last: str) -> None:
    c, _ = composer()
    composed = c.compose(11, Recipient(email="p@example.org", first_name=first, last_name=last))
    msg = parse(composed.message.data)
    assert sorted(msg.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "Content-Language",
            "MIME-Version",
            "Content-Type",
        ]
    )
    assert msg["To"].addresses[0].addr_spec == "p@example.org"
    # Folding may move whitespace between encoded words; the characters must survive.
    shown = msg["To"].addresses[0].display_name
    assert shown.replace(" ", "") == header_text(f"{first} {last}").replace(" ", "")


@settings(max_examples=100, deadline=None)
@given(
    first=st.text(max_size=30),
    region=st.text(max_size=30),
    test=st.booleans(),
    signed=st.booleans(),
)
def test_a_composed_message_has_crlf_line_ends_only_as_it_promises(
    first: str, region: str, test: bool, signed: bool
) -> None:
    """``OutgoingMessage.crlf`` lets the transport skip its check: it must be true."""
    c, _ = composer()
    if signed:
        c.dkim = DKIM_SIGNER
    recipient = Recipient(email="p@example.org", first_name=first, region=region)
    message = c.compose(12, recipient, test=test).message
    data = message.data
    assert message.crlf
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")


@given(st.text())
def test_header_text_is_one_clean_line(value: str) -> None:
    cleaned = header_text(value)
    assert "\r" not in cleaned and "\n" not in cleaned
    assert cleaned == cleaned.strip()
    assert all(ch.isprintable() or ch == " " for ch in cleaned)


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=st.characters(max_codepoint=127)),
        st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))),
    )
)
def test_header_text_fast_path_for_printable_text_changes_nothing(value: str) -> None:
    """Printable text (any script) skips the per-character check; the same result."""
    by_category = "".join(
        " " if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"} else ch
        for ch in value
    )
    assert header_text(value) == " ".join(by_category.replace("=?", "= ?").split())


def broken_templates(tmp_path: Path, en_html: str) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    (root / "executive-orders" / "en.html").write_text(en_html, "utf-8")
    return root


def test_undefined_variable_is_found_at_check_time_with_file_and_line(tmp_path: Path) -> None:
    root = broken_templates(
        tmp_path,
        '{% extends "layout/base.html" %}\n{% block content %}\n'
        "<p>{{ supporter.nickname }}</p>\n{% endblock %}\n",
    )
    template = AlertTemplate(root, "executive-orders")
    with pytest.raises(TemplateProblem) as info:
        check_template(template)
    message = str(info.value)
    assert "en.html, line 3" in message and "nickname" in message


def test_syntax_error_is_found_when_loading_with_file_and_line(tmp_path: Path) -> None:
    root = broken_templates(
        tmp_path,
        '{% extends "layout/base.html" %}\n{% block content %}\n{% if %}\n{% endblock %}\n',
    )
    with pytest.raises(TemplateProblem, match=r"en\.html, line 3"):
        AlertTemplate(root, "executive-orders")


def test_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(TemplateProblem, match="known: executive-orders"):
        AlertTemplate(REPO / "templates", "no-such-alert")


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    root = broken_templates(
        tmp_path,
        '{% extends "layout/base.html" %}'
        "{% block content %}{{ cta_url.__class__.__mro__ }}{% endblock %}",
    )
    template = AlertTemplate(root, "executive-orders")
    with pytest.raises(TemplateProblem):
        template.render(sample_context(), "en")


def test_shipped_template_renders_in_every_language() -> None:
    template = AlertTemplate(REPO / "templates", "executive-orders")
    assert sorted(template.languages) == ["en", "es"]
    check_template(template)

"""The spliced bodies (rendered once per language) against the full render, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.alerts.compiled import StoredAlertTemplate
from mailer.alerts.store import LanguageText, Revision
from mailer.compose import message
from mailer.compose.alert import AlertComposer, Recipient
from mailer.compose.dkim import DkimSigner
from mailer.compose.splice import spliceable
from mailer.compose.templates import AlertTemplate
from mailer.store.models import AlertFormat
from tests.conftest import REPO
from tests.test_compose import BASE, composer

TEMPLATES = REPO / "templates"

MARKDOWN = """Dear {{ supporter.first_name or "friend" }},

The council votes **tonight** on the budget for {{ supporter.region }}.

[Call your councillor]({{ cta_url }}) or read [the plan](https://www.example.org/plan).

{% if supporter.last_name %}Thank you, {{ supporter.first_name }} {{ supporter.last_name }}.
{% endif %}
"""


def stored_alert() -> StoredAlertTemplate:
    texts = {
        lang: LanguageText(
            "{{ supporter.first_name or 'Friend' }}: the council votes tonight",
            "Budget vote, {{ supporter.zip }}",
            MARKDOWN,
            "",
        )
        for lang in ("en", "es")
    }
    revision = Revision(
        id=1,
        alert="budget",
        number=2,
        author="t",
        created_at=None,
        format=AlertFormat.MARKDOWN,
        description="",
        default_language="en",
        texts=texts,
    )
    return StoredAlertTemplate(TEMPLATES, revision)


def rsa_signer() -> DkimSigner:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DkimSigner(domain="example.org", selector="s1", private_key_pem=pem)


DKIM = rsa_signer()
_TIME = re.compile(rb"\bt=(\d+)")


def both(built: AlertComposer, delivery_id: int, recipient: Recipient) -> tuple[bytes, bytes]:
    """The spliced and the fully rendered message, with the same Message-ID and DKIM time."""
    for _ in range(3):
        message._IDS.seed(delivery_id)
        spliced = built.compose(delivery_id, recipient).message.data
        message._IDS.seed(delivery_id)
        full = built.compose(delivery_id, recipient, splice=False).message.data
        if _TIME.findall(spliced) == _TIME.findall(full):  # not across a second boundary
            break
    return spliced, full


HOSTILE = [
    "",
    " ",
    "Zoë",
    "José María",
    "O'Brien",
    '"Bob" <bob@example.org>',
    "<script>alert(1)</script> & co",
    "=?utf-8?q?evil?=",
    "Ünïcödé " * 30,
    "x" * 300,
    "Ana\tMaría",
    "李小龍",
    "From here",
    ".",
    "a  b",
    "http:",
    "https://www.example.org/plan",
    "ends with space ",
    "=",
    "\u200b",
]
names = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=80))
recipients = st.builds(
    Recipient,
    email=st.sampled_from(["a@example.org", "o'neil+x@example.org", "b@example.org"]),
    first_name=names,
    last_name=names,
    zip=st.sampled_from(["", "94600", "<b>"]),
    region=names,
    language=st.sampled_from(["en", "es", "fr", ""]),
)


@pytest.fixture(scope="module")
def composers() -> dict[str, AlertComposer]:
    built: dict[str, AlertComposer] = {}
    for name, template in (
        ("folder", AlertTemplate(TEMPLATES, "executive-orders")),
        ("stored", stored_alert()),
    ):
        for dkim in (False, True):
            for opens in (False, True):
                c, _ = composer(template)
                c.dkim = DKIM if dkim else None
                c.opens = opens
                built[f"{name} dkim={dkim} opens={opens}"] = c
    return built


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, 7), delivery_id=st.integers(1, 2**31), recipient=recipients)
def test_spliced_message_is_the_full_render_byte_for_byte(
    composers: dict[str, AlertComposer], which: int, delivery_id: int, recipient: Recipient
) -> None:
    key = list(composers)[which]
    spliced, full = both(composers[key], delivery_id, recipient)
    assert spliced == full, key


@pytest.mark.parametrize("kind", ["folder", "stored"])
def test_both_languages_are_actually_spliced(kind: str) -> None:
    template = AlertTemplate(TEMPLATES, "executive-orders") if kind == "folder" else stored_alert()
    built, _ = composer(template)
    encodings = set()
    for language in ("en", "es"):
        for first_name in ("Alex", ""):
            recipient = Recipient(email="a@example.org", first_name=first_name, language=language)
            spliced, full = both(built, 9, recipient)
            assert spliced == full
            # The parts came from the bodies' once-encoded lines, not encode_body.
            made = built._spliced(9, recipient, f"{BASE}/u/x")
            assert made is not None
            _, bodies = made
            assert bodies.text is not None and bodies.html is not None
            encodings |= {bodies.text[0], bodies.html[0]}
    assert encodings == {"7bit", "quoted-printable"}  # English HTML goes as it is, Spanish not
    assert built._splicer is not None
    variants = built._splicer._variants
    assert len(variants) == 4  # two languages, with and without a first name
    assert all(v is not None for v in variants.values())
    heads = built._splicer._heads  # subject and preheader too
    assert len(heads) == 4
    assert all(h is not None for h in heads.values())


def test_a_subject_that_is_not_plain_is_rendered_and_the_bodies_still_spliced(
    tmp_path: Path,
) -> None:
    template = folder(tmp_path, "<p>{{ supporter.first_name }}</p>")
    (tmp_path / "t" / "template.toml").write_text(
        '[languages.en]\nsubject = "Hi {{ supporter.first_name | upper }}"\npreheader = "p"\n'
    )
    template = AlertTemplate(tmp_path, "t")
    built, _ = composer(template)
    for name in ("Zoë", "", "a  b"):
        spliced, full = both(built, 3, Recipient(email="a@example.org", first_name=name))
        assert spliced == full
    assert built._splicer is not None
    assert built._splicer._head_truth == {"en": None}
    assert None not in built._splicer._variants.values()


def folder(tmp_path: Path, body: str, text: str = "Hi\n") -> AlertTemplate:
    (tmp_path / "layout").mkdir(exist_ok=True)
    for f in ("base.html", "base.txt"):
        (tmp_path / "layout" / f).write_text((TEMPLATES / "layout" / f).read_text())
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "t" / "template.toml").write_text(
        '[languages.en]\nsubject = "Hi {{ supporter.first_name }}"\npreheader = "p"\n'
    )
    (tmp_path / "t" / "en.html").write_text(
        '{% extends "layout/base.html" %}{% block content %}' + body + "{% endblock %}"
    )
    (tmp_path / "t" / "en.txt").write_text(
        '{% extends "layout/base.txt" %}{% block content %}' + text + "{% endblock %}"
    )
    return AlertTemplate(tmp_path, "t")


REFUSED = [
    "{% if supporter.first_name == 'Bob' %}Hi Bob{% endif %}",
    "{{ supporter.first_name | upper }}",
    "{{ supporter.custom.get('team', '') }}",
    "{% set n = supporter.first_name %}{{ n }}",
    "{% filter upper %}{{ supporter.first_name }}{% endfilter %}",
    "{% autoescape false %}{{ supporter.first_name }}{% endautoescape %}",
    "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(supporter.first_name) }}",
    "{{ supporter.first_name if supporter.zip else 'x' }}",
    "{{ supporter }}",
]


@pytest.mark.parametrize("body", REFUSED)
def test_anything_but_plain_substitution_keeps_the_full_render(tmp_path: Path, body: str) -> None:
    template = folder(tmp_path, body)
    html_t, _ = template.body_templates("en")
    assert spliceable(html_t.environment, [html_t.name or ""]) is None
    built, _ = composer(template)
    recipient = Recipient(email="a@example.org", first_name="Bob", zip="1")
    spliced, full = both(built, 3, recipient)
    assert spliced == full
    assert built._splicer is not None and built._splicer._variants == {}


LINK_PLACES = [
    # a value in a link or a tag could change which links are tracked
    ('<a href="https://www.example.org/p?n={{ supporter.first_name }}">x</a>', "Hi\n"),
    ('<a title="{{ supporter.first_name }}" href="{{ cta_url }}">x</a>', "Hi\n"),
    ("<p>Hi</p>", "{{ cta_url }}{{ supporter.first_name }}\n"),
    ("<p>Hi</p>", "https://www.example.org/{{ supporter.zip }}\n"),
]


@pytest.mark.parametrize(("body", "text"), LINK_PLACES)
def test_a_value_in_or_next_to_a_link_keeps_the_full_render(
    tmp_path: Path, body: str, text: str
) -> None:
    template = folder(tmp_path, body, text)
    built, _ = composer(template)
    for first_name in ("Bob", "https://www.whitehouse.gov/contact/"):
        recipient = Recipient(email="a@example.org", first_name=first_name, zip="x")
        spliced, full = both(built, 3, recipient)
        assert spliced == full
    assert built._splicer is not None
    assert list(built._splicer._variants.values()) == [None]


def test_a_value_with_a_slash_is_rendered_in_full(tmp_path: Path) -> None:
    """A URL written as a name, next to text that is one, is tracked as the full render does."""
    template = folder(tmp_path, "<p>{{ supporter.first_name }}</p>", "{{ supporter.first_name }}\n")
    built, links = composer(template)
    links.register(["https://www.example.org/plan"])
    recipient = Recipient(email="a@example.org", first_name="https://www.example.org/plan")
    spliced, full = both(built, 3, recipient)
    assert spliced == full
    assert b"/c/" in full  # the full render tracks the name that is a registered link


@pytest.mark.parametrize("where", ["template", "organization"])
def test_a_marker_character_written_by_the_template_keeps_the_full_render(
    tmp_path: Path, where: str
) -> None:
    """The splice marks values with private-use characters; text that has its own is not cut."""
    own = "\ue000\ue008\ue100\uf000"
    template = folder(
        tmp_path, f"<p>{own if where == 'template' else ''}{{{{ supporter.zip }}}}</p>"
    )
    built, _ = composer(template)
    if where == "organization":
        built._shared["organization"] = {"name": own, "postal_address": "1 Way"}
    recipient = Recipient(email="a@example.org", first_name="Bob", zip="94600")
    spliced, full = both(built, 3, recipient)
    assert spliced == full
    assert built._splicer is not None
    assert list(built._splicer._variants.values()) == [None]

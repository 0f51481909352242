"""Markdown bodies: the button line, Jinja surviving the conversion, escaping, statements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailer.alerts.compiled import RevisionProblem, StoredAlertTemplate
from mailer.alerts.markdown import CTA_URL, Cta, compile_markdown, format_cta, parse_cta
from mailer.alerts.statement import draft_from_statement, escape
from mailer.alerts.store import LanguageText, Revision
from mailer.compose import links
from mailer.compose.templates import check_template, sample_context
from mailer.store.models import AlertFormat
from tests.conftest import REPO

DATA = Path(__file__).with_name("data")
LAYOUTS = REPO / "templates"


def revision(body: str, *, text: str = "", lang: str = "en") -> Revision:
    return Revision(
        id=1,
        alert="a",
        number=3,
        author="t",
        created_at=None,
        format=AlertFormat.MARKDOWN,
        description="",
        default_language=lang,
        texts={lang: LanguageText("Hi {{ supporter.first_name or 'friend' }}", "pre", body, text)},
    )


def render(body: str, **supporter: str) -> tuple[str, str]:
    template = StoredAlertTemplate(LAYOUTS, revision(body))
    ctx = sample_context()
    ctx["supporter"] = dict(ctx["supporter"], **supporter)
    out = template.render(ctx, "en")
    return out.html, out.text


# -- the button line ------------------------------------------------------------------------

labels = st.text(
    st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=60
).filter(lambda s: s.strip() != "" and s == s.strip())
urls = st.sampled_from(["", "https://www.example.org/act", "https://a.example/x?y=1&z=2"])


@given(labels, urls)
def test_a_button_line_reads_back_as_written(label: str, url: str) -> None:
    assert parse_cta(format_cta(label, url)) == Cta(label, url)


@given(st.text(max_size=80))
def test_parsing_any_line_never_fails_and_only_button_lines_are_buttons(line: str) -> None:
    cta = parse_cta(line)
    if cta is not None:
        assert line.lstrip(" ").startswith("=>")
        assert cta.label.strip() == cta.label != ""


@given(labels)
def test_a_button_links_the_call_to_action_in_both_parts(label: str) -> None:
    compiled = compile_markdown(f"Intro.\n\n{format_cta(label)}\n\nAfter.\n")
    assert f'href="{CTA_URL}"' in compiled.html
    assert f"\n{CTA_URL}\n" in compiled.text
    assert "=&gt;" not in compiled.html and "=>" not in compiled.text


def test_a_button_line_inside_code_stays_code() -> None:
    compiled = compile_markdown("```\n=> [not a button]\n```\n\n    => [nor this]\n")
    assert "<table" not in compiled.html
    assert "=&gt; [not a button]" in compiled.html


def test_a_button_to_another_url() -> None:
    html, text = render("=> [Read the orders](https://www.example.org/orders)\n")
    assert links.html_links(html)[0] == "https://www.example.org/orders"
    assert "Read the orders:\nhttps://www.example.org/orders" in text


# -- Jinja survives Markdown ----------------------------------------------------------------

jinja_bits = st.sampled_from(
    [
        '{{ supporter.first_name or "friend" }}',
        "{{ cta_url }}",
        "{{ organization.name | upper }}",
        "{# a note #}",
        "{{ 'a*b_c' }}",
    ]
)
words = st.sampled_from(["word", "*em*", "**strong**", "`code`", "_x_", "[link](https://e.org)"])


@given(st.lists(st.one_of(jinja_bits, words), min_size=1, max_size=12))
def test_every_jinja_construct_comes_out_as_written(pieces: list[str]) -> None:
    source = " ".join(pieces) + "\n"
    compiled = compile_markdown(source)
    for bit in set(pieces) & {
        '{{ supporter.first_name or "friend" }}',
        "{{ cta_url }}",
        "{{ organization.name | upper }}",
        "{# a note #}",
        "{{ 'a*b_c' }}",
    }:
        assert compiled.html.count(bit) == source.count(bit)
        assert compiled.text.count(bit) == source.count(bit)


def test_jinja_in_link_targets_text_blocks_and_raw_html() -> None:
    body = (
        'Dear {{ supporter.first_name or "friend" }},\n\n'
        "[Act now]({{ cta_url }}) or [read]({{ cta_url }}?ref={{ blast.name }}).\n\n"
        "{% if supporter.zip %}\n\n"
        "Your ZIP is **{{ supporter.zip }}**.\n\n"
        "{% endif %}\n\n"
        '<div class="note">{{ organization.name }}</div>\n'
    )
    html, text = render(body, first_name="Ana", zip="94600")
    assert "Dear Ana," in html
    assert links.html_links(html)[:2] == [
        "https://www.example.org/act",
        "https://www.example.org/act?ref=sample",
    ]
    assert "<strong>94600</strong>" in html
    assert '<div class="note">Organization</div>' in html
    assert "Act now (https://www.example.org/act)" in text
    html, text = render(body, first_name="", zip="")
    assert "Your ZIP" not in html and "Your ZIP" not in text
    assert "Dear friend," in html
    assert "<p style" in html and "<p></p>" not in re.sub(r"<p [^>]*>", "<p>", html)


def test_a_hostile_first_name_stays_escaped_while_organizer_html_passes() -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    html, text = render(
        'Dear {{ supporter.first_name }},\n\n<p class="own">Organizer <b>HTML</b></p>\n',
        first_name=hostile,
    )
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html
    assert '<p class="own">Organizer <b>HTML</b></p>' in html
    assert hostile in text  # the text part is not HTML


def test_raw_html_runs_in_the_sandbox() -> None:
    template = StoredAlertTemplate(LAYOUTS, revision("<p>{{ cta_url.__class__.__mro__ }}</p>\n"))
    with pytest.raises(RevisionProblem, match=r"unsafe|__class__|__mro__"):
        template.render(sample_context(), "en")


def test_the_layout_adds_footer_and_the_text_part_can_be_overridden() -> None:
    html, text = render("Hello.\n\n=> [Act]\n")
    assert "1 Example Street" in html and "Unsubscribe" in html
    assert "To unsubscribe:" in text and "Hello." in text
    template = StoredAlertTemplate(
        LAYOUTS, revision("Hello.\n\n=> [Act]\n", text="Plain words, {{ cta_url }}\n")
    )
    out = template.render(sample_context(), "en")
    assert out.text.startswith("Plain words, https://www.example.org/act\n")
    assert "To unsubscribe:" in out.text


def test_an_undefined_variable_names_the_markdown_line() -> None:
    body = "First line.\n\nSecond paragraph\nwith {{ supporter.nickname }} on line 4.\n"
    template = StoredAlertTemplate(LAYOUTS, revision(body))
    with pytest.raises(
        RevisionProblem, match=r"a revision 3 body \(en\), line 4: .*nickname"
    ) as info:
        check_template(template)
    assert (info.value.language, info.value.part, info.value.line) == ("en", "body", 4)


def test_a_syntax_error_names_the_markdown_line() -> None:
    with pytest.raises(RevisionProblem) as info:
        StoredAlertTemplate(LAYOUTS, revision("ok\n\nsecond\n{{ supporter.zip ) }}\n"))
    assert (info.value.part, info.value.line) == ("body", 4)


# -- start from a statement ----------------------------------------------------------------


def test_a_draft_from_the_seed_statement() -> None:
    statement = (DATA / "statement.txt").read_text("utf-8")
    draft = draft_from_statement(statement)
    assert draft.subject == "We Rise Up for Immigrant and Refugee Justice"
    assert draft.preheader.startswith("Today Donald Trump signed two mean-spirited")
    assert len(draft.preheader) <= 111
    body = draft.body
    assert body.startswith('Dear {{ supporter.first_name or "friend" }},\n\n')
    assert "=> [Send a message to the White House]" in body
    assert body.index("Trump's proposals are utterly") < body.index("=> [Send a message")
    assert body.rstrip().endswith("In solidarity,\\\n{{ sender.name or organization.name }}")
    assert "Posted in" not in body
    # The subtitle broken over two lines is one line again.
    assert "**NNIRR Stands Firm in its Commitment to Rights and Justice for ALL" in body
    template = StoredAlertTemplate(LAYOUTS, revision(body))
    check_template(template)
    out = template.render(sample_context(), "en")
    assert "Dear Alex," in out.html
    assert out.html.count("https://www.example.org/act") == 1
    assert "Send a message to the White House:\nhttps://www.example.org/act" in out.text
    assert "In solidarity,<br />\nSender" in out.html


def test_a_spanish_draft_and_a_statement_without_a_call() -> None:
    draft = draft_from_statement(
        "Título\n\nUn párrafo con bastantes palabras para ser el texto.\n", language="es"
    )
    assert draft.body.startswith("{% if supporter.first_name %}Hola, ")
    assert "=> [Actúa ahora]" in draft.body
    assert "En solidaridad," in draft.body


@given(st.text(max_size=200))
@example("0.")  # an ordered item: its "." is escaped, not its digits
@example("1) first\n2. second")
@example("a line\n- a list item\n+ another\n# a heading")
@example("\t<")  # indented: it would be a code block, where escapes show
def test_statement_text_shows_as_written(text: str) -> None:
    """Whatever a statement holds (Markdown, HTML, Jinja), the draft prints it, never runs it."""
    template = StoredAlertTemplate(LAYOUTS, revision(escape(text) + "\n"))
    out = template.render(sample_context(), "en")
    words = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text).split()
    assert " ".join(out.text.split("--\nOrganization")[0].split()) == " ".join(words)

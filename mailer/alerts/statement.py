"""Start from a statement: a pasted statement becomes a draft alert to edit.

The draft has a greeting with the first-name fallback, the statement's
paragraphs, the call-to-action button where the statement asks readers to act
(or after the last paragraph), and a sign-off. Its first line becomes the
subject, its first sentence of substance the preheader.

The statement's text is the organization's words, not a template: characters
Markdown or Jinja would read as syntax are escaped, so a ``{{`` or a ``*`` in
a statement shows as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.alerts.markdown import format_cta
from mailer.alerts.store import LanguageText

PREHEADER_MAX = 110
SHORT_WORDS = 12

GREETING = {
    "en": 'Dear {{ supporter.first_name or "friend" }},',
    "es": "{% if supporter.first_name %}Hola, {{ supporter.first_name }}:"
    "{% else %}Hola:{% endif %}",
}
SIGN_OFF = {
    "en": "In solidarity,\\\n{{ sender.name or organization.name }}",
    "es": "En solidaridad,\\\n{{ sender.name or organization.name }}",
}
DEFAULT_CTA = {"en": "Take action now", "es": "Actúa ahora"}

# "Click here to send a message to the White House" -> "Send a message to the White House"
_CALL = re.compile(r"^(?:please\s+)?(?:click|tap)\s+(?:here|below)\s*(?:to\s+)?(?P<rest>.+)$", re.I)
# Leftovers of a web page around a pasted statement.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CHROME = re.compile(r"^(?:posted\s+in\b|share\s+this\b|tags?:|filed\s+under\b)", re.I)


@dataclass(frozen=True)
class Draft:
    subject: str
    preheader: str
    body: str  # Markdown
    cta_label: str

    def as_text(self) -> LanguageText:
        return LanguageText(subject=self.subject, preheader=self.preheader, body=self.body)


def escape(text: str) -> str:
    """Statement text as Markdown that shows exactly that text, Jinja included
    (control characters, which no statement means to hold, are dropped)."""
    text = _CONTROL.sub("", text)
    out = re.sub(r"([\\`*_\[\]<>&|])", r"\\\1", text)
    # Indentation would make a code block, where escapes show as typed: drop it.
    out = re.sub(r"^[ \t]+", "", out, flags=re.MULTILINE)
    # A line may not start a heading, a list item or an ordered item ("1." becomes
    # "1\.": only punctuation can be escaped in CommonMark, not the digits).
    out = re.sub(r"^([#+=-])", r"\\\1", out, flags=re.MULTILINE)
    out = re.sub(r"^(\d+)([.)])", r"\1\\\2", out, flags=re.MULTILINE)
    # Jinja reads {{ {% {# anywhere, escaped or not: print those openers as strings.
    return re.sub(r"\{([{%#])", lambda m: "{{ '{" + m[1] + "' }}", out)


def _paragraphs(statement: str) -> list[str]:
    text = statement.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [" ".join(b.split()) for b in re.split(r"\n\s*\n", text)]
    blocks = [b for b in blocks if b and not _CHROME.match(b)]
    merged: list[str] = []
    for block in blocks:
        if merged and block[:1].islower() and not merged[-1].endswith((".", "!", "?", ":")):
            merged[-1] = f"{merged[-1]} {block}"  # a line of a heading broken in two
        else:
            merged.append(block)
    return merged


def _is_heading(block: str) -> bool:
    return len(block.split()) <= SHORT_WORDS * 2 and not block.endswith((".", "!", "?", ",", ";"))


def _first_sentence(paragraphs: list[str]) -> str:
    for block in paragraphs:
        if len(block.split()) >= SHORT_WORDS and not _is_heading(block):
            sentence = re.split(r"(?<=[.!?])\s", block, maxsplit=1)[0]
            if len(sentence) <= PREHEADER_MAX:
                return sentence
            cut = sentence[:PREHEADER_MAX].rsplit(" ", 1)[0]
            return cut.rstrip(",;:") + "…"
    return ""


def draft_from_statement(statement: str, *, language: str = "en") -> Draft:
    """A draft alert in ``language`` (greeting and sign-off in English or Spanish)."""
    paragraphs = _paragraphs(statement)
    if not paragraphs:
        raise ValueError("the statement is empty")
    title, rest = paragraphs[0], paragraphs[1:]
    lang = language if language in GREETING else "en"
    body: list[str] = [GREETING[lang]]
    cta_label = ""
    for n, block in enumerate(rest):
        call = _CALL.match(block)
        if call and not cta_label:
            label = call["rest"].rstrip(".!:")
            cta_label = label[:1].upper() + label[1:]
            body.append(format_cta(cta_label))
        elif n == 0 and _is_heading(block):
            body.append(f"**{escape(block)}**")  # the statement's subtitle
        else:
            body.append(escape(block))
    if not cta_label:
        cta_label = DEFAULT_CTA[lang]
        body.append(format_cta(cta_label))
    body.append(SIGN_OFF[lang])
    return Draft(
        subject=escape_jinja(title),
        preheader=escape_jinja(_first_sentence(rest)),
        body="\n\n".join(body) + "\n",
        cta_label=cta_label,
    )


def escape_jinja(text: str) -> str:
    """Plain text (a subject, a preheader) as Jinja that prints exactly that text."""
    return re.sub(r"\{([{%#])", lambda m: "{{ '{" + m[1] + "' }}", text)

"""Markdown bodies: compiled once per revision into the Jinja bodies a template folder has.

An alert body is CommonMark (markdown-it-py) with Jinja in it, and one line of
syntax of our own for the call-to-action button::

    Dear {{ supporter.first_name or "friend" }},

    The White House is no longer taking phone calls.

    => [Send your message to the White House]
    => [Read the orders](https://www.example.org/orders)

A line ``=> [label]`` is a button to the blast's call-to-action URL
(``{{ cta_url }}``); ``=> [label](URL)`` is a button to URL. A ``]`` or ``\\``
in the label is written ``\\]`` or ``\\\\``.

Jinja comes first: every ``{{ … }}``, ``{% … %}`` and ``{# … #}`` is set aside
before the Markdown is parsed (replaced by a placeholder Markdown leaves alone)
and put back, as written, in the HTML and text that come out. So Jinja works
in link targets, in text, in raw HTML, and as blocks: a paragraph that holds
only ``{% … %}`` statements becomes those statements without a ``<p>``. The
result is a Jinja template that extends the shared layout; it is rendered per
recipient in the sandbox with autoescaping, so supporter data stays escaped
while the organizer's own HTML passes.
"""

from __future__ import annotations

import html
import re
import secrets
import textwrap
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
CTA_LINE = re.compile(
    r"^ {0,3}=>[ \t]*\[(?P<label>(?:[^\\\]\n]|\\.)*)\](?:\((?P<url>[^\s()]*)\))?[ \t]*$"
)
CTA_URL = "{{ cta_url }}"
TEXT_WIDTH = 72

_FONT = "font-family:Arial, Helvetica, sans-serif;"
_STYLES = {
    "p": f"margin:0 0 16px 0; {_FONT} font-size:16px; line-height:24px; color:#222222;",
    "ul": f"margin:0 0 16px 0; padding:0 0 0 22px; {_FONT} font-size:16px; line-height:24px;"
    " color:#222222;",
    "li": "margin:0 0 6px 0;",
    "h1": f"margin:0 0 16px 0; {_FONT} font-size:24px; line-height:30px; color:#222222;",
    "h2": f"margin:0 0 14px 0; {_FONT} font-size:20px; line-height:26px; color:#222222;",
    "h3": f"margin:0 0 12px 0; {_FONT} font-size:17px; line-height:24px; color:#222222;",
    "a": "color:#b3261e; text-decoration:underline;",
    "blockquote": "margin:0 0 16px 0; padding:0 0 0 16px; border-left:4px solid #e3e3e3;"
    " color:#555555;",
}
_STYLES["ol"] = _STYLES["ul"]
_BUTTON = (
    '<table role="presentation" border="0" cellpadding="0" cellspacing="0" align="center"'
    ' style="margin:8px auto 24px auto;">\n  <tr>\n'
    '    <td align="center" bgcolor="#b3261e" style="background-color:#b3261e;'
    ' border-radius:6px;">\n'
    '      <a href="{href}" target="_blank" style="display:inline-block; padding:14px 28px;'
    f" {_FONT} font-size:18px; line-height:22px; font-weight:bold; color:#ffffff;"
    ' text-decoration:none; border-radius:6px;">{label}</a>\n'
    "    </td>\n  </tr>\n</table>\n"
)


@dataclass(frozen=True)
class Cta:
    """A call-to-action button: its label, and its URL ("" for the blast's own)."""

    label: str
    url: str = ""

    @property
    def href(self) -> str:
        return self.url or CTA_URL


def parse_cta(line: str) -> Cta | None:
    """The button a line asks for, or None when the line is not a button line."""
    match = CTA_LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    label = re.sub(r"\\(.)", r"\1", match["label"]).strip()
    if not label:
        return None
    return Cta(label=label, url=match["url"] or "")


def format_cta(label: str, url: str = "") -> str:
    """The line that makes a button (the inverse of :func:`parse_cta`)."""
    escaped = label.strip().replace("\\", "\\\\").replace("]", "\\]")
    return f"=> [{escaped}]" + (f"({url})" if url else "")


@dataclass(frozen=True)
class Compiled:
    """A body made ready for the layout: the ``content`` block of each part."""

    html: str
    text: str

    def html_template(self) -> str:
        return (
            '{% extends "layout/base.html" %}{% block content %}\n'
            + self.html
            + ("{% endblock %}\n")
        )

    def text_template(self, override: str = "") -> str:
        body = (override or self.text).strip("\n")
        return (
            '{% extends "layout/base.txt" %}{% block content -%}\n' + body + ("\n{%- endblock %}\n")
        )


class _Jinja:
    """Jinja constructs set aside under placeholders that Markdown passes unchanged."""

    def __init__(self, source: str) -> None:
        nonce = secrets.token_hex(4)
        while nonce in source:
            nonce = secrets.token_hex(4)
        self.prefix = f"jz{nonce}q"
        self.found: list[str] = []
        self.protected = JINJA.sub(self._hide, source)
        self._back = re.compile(re.escape(self.prefix) + r"(\d+)z")

    def _hide(self, match: re.Match[str]) -> str:
        self.found.append(match[0])
        return f"{self.prefix}{len(self.found) - 1}z"

    def restore(self, text: str) -> str:
        return self._back.sub(lambda m: self.found[int(m[1])], text)

    def only_statements(self, text: str) -> bool:
        """Whether ``text`` is nothing but placeholders of ``{% %}``/``{# #}`` constructs."""
        rest = self._back.sub(
            lambda m: "" if self.found[int(m[1])].startswith(("{%", "{#")) else "x", text
        )
        return text.strip() != "" and rest.strip() == ""


def _cta_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    if state.is_code_block(start):
        return False
    line = state.src[state.bMarks[start] + state.tShift[start] : state.eMarks[start]]
    cta = parse_cta(line)
    if cta is None:
        return False
    if not silent:
        token = state.push("cta", "", 0)
        token.map = [start, start + 1]
        token.meta = {"label": cta.label, "url": cta.url}
    state.line = start + 1
    return True


def _render_cta(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    cta = Cta(label=tokens[idx].meta["label"], url=tokens[idx].meta["url"])
    return _BUTTON.format(href=html.escape(cta.href, quote=True), label=html.escape(cta.label))


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True})
    md.block.ruler.before(
        "paragraph", "cta", _cta_rule, {"alt": ["paragraph", "reference", "blockquote", "list"]}
    )
    md.add_render_rule("cta", _render_cta)
    return md


_MD = _parser()


def _tokens(jinja: _Jinja) -> list[Token]:
    tokens = _MD.parse(jinja.protected)
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if (
            token.type == "paragraph_open"
            and not token.hidden
            and i + 2 < len(tokens)
            and jinja.only_statements(tokens[i + 1].content)
        ):
            block = Token("html_block", "", 0)
            block.content = tokens[i + 1].content.strip() + "\n"
            out.append(block)
            i += 3
            continue
        if token.nesting == 1 and token.tag in _STYLES:
            token.attrSet("style", _STYLES[token.tag])
        for child in token.children or []:
            if child.type == "link_open":
                child.attrSet("style", _STYLES["a"])
        out.append(token)
        i += 1
    return out


def compile_markdown(source: str) -> Compiled:
    """The HTML and plain-text content of a Markdown body, Jinja left in place."""
    jinja = _Jinja(source.replace("\r\n", "\n"))
    tokens = _tokens(jinja)
    body_html = _MD.renderer.render(tokens, _MD.options, {})
    body_text = "\n\n".join(_blocks(SyntaxTreeNode(tokens).children))
    return Compiled(html=jinja.restore(body_html), text=jinja.restore(body_text) + "\n")


# -- the plain-text part -----------------------------------------------------------------


def _inline(node: SyntaxTreeNode) -> str:
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind == "text" or kind == "code_inline":
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "link":
            label = _inline(child)
            href = str(child.attrs.get("href", ""))
            parts.append(label if label == href else f"{label} ({href})")
        elif kind == "image":
            parts.append(_inline(child) or str(child.attrs.get("alt", "")))
        elif kind == "html_inline":
            continue
        else:  # em, strong, and anything that only wraps text
            parts.append(_inline(child))
    return "".join(parts)


def _wrap(text: str, indent: str = "") -> str:
    lines = []
    for line in text.split("\n"):
        lines.append(
            textwrap.fill(
                line,
                TEXT_WIDTH,
                initial_indent=indent,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or indent.rstrip()
        )
    return "\n".join(lines)


def _indent(text: str, first: str, rest: str) -> str:
    lines = text.split("\n")
    return "\n".join([first + lines[0]] + [(rest + ln) if ln else ln for ln in lines[1:]])


def _blocks(nodes: list[SyntaxTreeNode]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        kind = node.type
        if kind == "paragraph":
            out.append(_wrap(_inline(node.children[0])))
        elif kind == "heading":
            title = _inline(node.children[0])
            underline = "=" if node.tag == "h1" else "-"
            out.append(f"{title}\n{underline * len(title)}" if node.tag in ("h1", "h2") else title)
        elif kind in ("bullet_list", "ordered_list"):
            items = []
            start = int(node.attrs.get("start", 1))
            for n, item in enumerate(node.children):
                mark = "- " if kind == "bullet_list" else f"{start + n}. "
                text = "\n\n".join(_blocks(item.children)) if node.children else ""
                items.append(_indent(text, mark, " " * len(mark)))
            out.append("\n".join(items))
        elif kind == "blockquote":
            quoted = "\n\n".join(_blocks(node.children))
            out.append("\n".join(("> " + ln).rstrip() for ln in quoted.split("\n")))
        elif kind in ("code_block", "fence"):
            out.append(_indent(node.content.rstrip("\n"), "    ", "    "))
        elif kind == "hr":
            out.append("* * *")
        elif kind == "html_block":
            stripped = re.sub(r"<[^>]*>", "", node.content).strip()
            if stripped:
                out.append(stripped)
        elif kind == "cta":
            cta = Cta(label=node.meta["label"], url=node.meta["url"])
            out.append(f"{cta.label}:\n{cta.href}")
        elif kind == "table":
            rows = [
                " | ".join(
                    _inline(cell.children[0]) if cell.children else "" for cell in row.children
                )
                for section in node.children
                for row in section.children
            ]
            out.append("\n".join(rows))
        elif node.children:
            out.extend(_blocks(node.children))
    return out

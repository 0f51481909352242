"""Rendering an alert's bodies once per language and splicing each recipient in.

A blast renders the same HTML and text for every supporter except where the
template writes a supporter's own values. When the template uses those values
only as plain substitutions, the bodies are rendered once per language (and per
pattern of empty and non-empty values the template branches on) with a marker
character in each place a value goes; links are tracked on that render, with a
marker where each click URL goes. A recipient's bodies are then the static
chunks joined with their values: escaped as Jinja escapes them in the HTML part,
as they are in the text part.

Whether a template qualifies is decided from its Jinja syntax tree, layouts
included (:func:`spliceable`). A supporter value, ``subject``, ``preheader`` or
``unsubscribe_url`` may appear only as

* ``{{ value }}``,
* ``{{ value or "literal" }}`` (the render is per empty/non-empty pattern),
* the test of ``{% if value %}`` / ``{% elif value %}`` (the same),

and the template may not include, import, define macros, capture output
(``{% set %}…{% endset %}``, ``{% filter %}``, ``{% call %}``) or switch
autoescaping. Anything else (a filter over a value, a comparison, a value in
``custom``) keeps the full render for every recipient.

Tracking links is the other thing a value could change. The marker render is
refused when a value sits inside an HTML tag (the unsubscribe URL may, as the
whole start of an ``href``), inside an ``href``, or in a run of URL characters
of the text part that holds ``//``; and a recipient whose values contain ``/``
is composed by the full render. With those rules no value can start, end or
extend a link either render would track, so both track the same links.

Subject and preheader are small and are rendered per recipient as before.

The bodies' MIME encoding is prepared per variant too: their lines without a
value are encoded once, both as they are and quoted-printable
(:func:`~mailer.compose.bodies.prepare_body`, for the blast's MIME boundary),
and a recipient's parts are those runs joined with only the lines holding a
value encoded, the Content-Transfer-Encoding decided over the whole part.
:class:`~mailer.compose.fastmime.MessageBuilder` takes those parts with the
alert's text, which previews still get as before. The bytes are
:func:`~mailer.compose.bodies.encode_body`'s of the spliced text (a value with
a line break is encoded with the whole text), and DKIM signs them unchanged,
so the message is the full render's byte for byte.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import markupsafe
from jinja2 import nodes

from mailer.compose import links
from mailer.compose.bodies import EncodedBodies, PreparedBody, prepare_body
from mailer.compose.templates import AlertTemplate, RenderedAlert
from mailer.errors import TemplateProblem

FIELDS = ("email", "first_name", "last_name", "zip", "region", "language")
_NAMES = ("subject", "preheader", "unsubscribe_url")
# Every value a recipient brings: "supporter.<field>" and the three names.
KEYS = tuple(f"supporter.{f}" for f in FIELDS) + _NAMES
_UNSUBSCRIBE = KEYS.index("unsubscribe_url")
_SUBJECT = KEYS.index("subject")  # and the preheader after it
_BASE = 0xE000  # private-use characters: value markers E000.., open E0FF, links E100..
_OPEN = 0xE0FF
_LINK = 0xE100
_CHECK = 0xF000  # the markers of the second render (see Splicer._build)
_MARKER = re.compile("([\ue000-\ue1ff])")
_RUN = re.compile(r"""[^\s<>"'\])}]+""")  # what a URL in text is made of (links.py)
_REFUSED = (
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.AssignBlock,
    nodes.ScopedEvalContextModifier,
    nodes.EvalContextModifier,
)
_BASE_URL = re.compile(r"https?://[A-Za-z0-9.:-]+(?:/[A-Za-z0-9._~/-]*)?")


def _key(expr: nodes.Node, names: tuple[str, ...] = _NAMES) -> str | None:
    """The recipient value ``expr`` is, when it is one as it stands (of ``names``)."""
    if isinstance(expr, nodes.Name) and expr.name in names:
        return expr.name
    if (
        isinstance(expr, nodes.Getattr)
        and isinstance(expr.node, nodes.Name)
        and expr.node.name == "supporter"
        and expr.attr in FIELDS
    ):
        return f"supporter.{expr.attr}"
    if (
        isinstance(expr, nodes.Getitem)
        and isinstance(expr.node, nodes.Name)
        and expr.node.name == "supporter"
        and isinstance(expr.arg, nodes.Const)
        and expr.arg.value in FIELDS
    ):
        return f"supporter.{expr.arg.value}"
    return None


class _Analysis:
    def __init__(self, env: jinja2.Environment, names: tuple[str, ...] = _NAMES) -> None:
        self.env = env
        self.names = names  # the names besides supporter values that may be substituted
        self.truth: set[str] = set()  # values the output branches on (empty or not)
        self.seen: set[str] = set()

    def template(self, name: str) -> bool:
        if name in self.seen:
            return True
        self.seen.add(name)
        loader = self.env.loader
        if loader is None:
            return False
        try:
            source, _, _ = loader.get_source(self.env, name)
            tree = self.env.parse(source, name)
        except jinja2.TemplateError:
            return False
        return self.node(tree)

    def node(self, node: nodes.Node) -> bool:
        if isinstance(node, _REFUSED):
            return False
        if isinstance(node, nodes.Name) and (node.name == "supporter" or node.name in _NAMES):
            return False  # any use not recognised below
        if isinstance(node, nodes.Extends):
            parent = node.template
            if not (isinstance(parent, nodes.Const) and isinstance(parent.value, str)):
                return False
            return self.template(parent.value)
        if isinstance(node, nodes.Output):
            return all(self.output(child) for child in node.nodes)
        if isinstance(node, nodes.If):
            key = _key(node.test, self.names)
            if key is not None:
                self.truth.add(key)
            elif not self.node(node.test):
                return False
            return all(self.node(child) for child in (*node.body, *node.elif_, *node.else_))
        return all(self.node(child) for child in node.iter_child_nodes())

    def output(self, expr: nodes.Node) -> bool:
        if isinstance(expr, nodes.TemplateData) or _key(expr, self.names) is not None:
            return True
        if (
            isinstance(expr, nodes.Or)
            and (key := _key(expr.left, self.names)) is not None
            and isinstance(expr.right, nodes.Const)
            and isinstance(expr.right.value, str)
        ):
            self.truth.add(key)
            return True
        return self.node(expr)


def spliceable(env: jinja2.Environment, names: Iterable[str]) -> frozenset[str] | None:
    """The values the templates ``names`` branch on, or None when they cannot be spliced."""
    analysis = _Analysis(env)
    if not all(analysis.template(name) for name in names):
        return None
    return frozenset(analysis.truth)


def spliceable_head(env: jinja2.Environment, source: str) -> frozenset[str] | None:
    """:func:`spliceable` for a subject or preheader (which cannot use either)."""
    analysis = _Analysis(env, ("unsubscribe_url",))
    try:
        tree = env.parse(source)
    except jinja2.TemplateError:
        return None
    return frozenset(analysis.truth) if analysis.node(tree) else None


def _marks(truthy: dict[str, bool], base: int) -> dict[str, str]:
    """Marker ``base + i`` for value ``KEYS[i]``, or "" where the pattern has it empty."""
    return {key: chr(base + i) if truthy.get(key, True) else "" for i, key in enumerate(KEYS)}


def _same_but_markers(first: tuple[str, ...], second: tuple[str, ...]) -> bool:
    """Are two renders, with markers from _BASE and from _CHECK, the same text otherwise?

    A marker character the template or a shared value writes itself stays where it
    is in both and tells them apart; any other character of the markers' range
    left over is refused too.
    """
    moved = str.maketrans({chr(_BASE + i): chr(_CHECK + i) for i in range(len(KEYS))})
    checked = tuple(text.translate(moved) for text in first)
    return checked == second and not any(_MARKER.search(text) for text in checked)


_Chunks = tuple[list[str], list[tuple[int, int]]]


def _pieces(text: str) -> _Chunks:
    """``text`` split at its markers: the chunks ("" for each marker) and the markers' places."""
    chunks = _MARKER.split(text)
    slots = [(i, ord(chunks[i])) for i in range(1, len(chunks), 2)]
    for i, _ in slots:
        chunks[i] = ""
    return chunks, slots


@dataclass(frozen=True)
class _Variant:
    html: list[str]  # static chunks, "" where a value goes
    html_slots: list[tuple[int, int]]  # (index in html, marker)
    text: list[str]
    text_slots: list[tuple[int, int]]
    link_ids: dict[int, int]  # marker → link id
    html_body: PreparedBody | None  # the bodies' static lines encoded (mailer.compose.bodies)
    text_body: PreparedBody | None


class Splicer:
    """One template's bodies for one blast, rendered once per language and pattern."""

    def __init__(
        self,
        template: AlertTemplate,
        shared: Mapping[str, Any],
        *,
        base_url: str,
        link_id: Callable[[str], int | None],
        opens: bool,
        boundary: str,
    ) -> None:
        self.template = template
        self.shared = dict(shared)
        self.base_url = base_url
        self.own = base_url + "/"
        self.link_id = link_id
        self.opens = opens
        self.avoid = boundary.encode("ascii")  # the MIME boundary the parts are encoded for
        self._truth: dict[str, tuple[str, ...] | None] = {}
        self._variants: dict[tuple[str, tuple[bool, ...]], _Variant | None] = {}
        self._head_truth: dict[str, tuple[str, ...] | None] = {}
        self._heads: dict[tuple[str, tuple[bool, ...]], list[_Chunks] | None] = {}

    def _head_keys(self, lang: str) -> tuple[str, ...] | None:
        if lang not in self._head_truth:
            found: tuple[str, ...] | None = None
            sources = self.template.head_sources(lang)
            if sources is not None:
                env = self.template.head_templates(lang)[0].environment
                subject, preheader = (spliceable_head(env, source) for source in sources)
                if subject is not None and preheader is not None:
                    found = tuple(sorted(subject | preheader))
            self._head_truth[lang] = found
        return self._head_truth[lang]

    def _head(self, lang: str, values: list[Any]) -> list[str] | None:
        """Subject and preheader spliced as :meth:`AlertTemplate.render_head` renders them."""
        truth = self._head_keys(lang)
        if truth is None:
            return None
        by_key = dict(zip(KEYS, values, strict=True))
        pattern = tuple(bool(by_key[key]) for key in truth)
        index = (lang, pattern)
        if index not in self._heads:
            self._heads[index] = self._build_head(lang, dict(zip(truth, pattern, strict=True)))
        head = self._heads[index]
        if head is None:
            return None
        out = []
        for chunks, slots in head:
            line = chunks.copy()
            for at, marker in slots:
                line[at] = values[marker - _BASE]
            out.append(" ".join("".join(line).split()))
        return out

    def _build_head(self, lang: str, truthy: dict[str, bool]) -> list[_Chunks] | None:
        subject_t, preheader_t = self.template.head_templates(lang)
        renders = []
        for base in (_BASE, _CHECK):
            context, _ = self._marked_context(lang, truthy, base)
            try:
                renders.append((subject_t.render(context), preheader_t.render(context)))
            except Exception:  # the full render reports any problem, with its location
                return None
        if not _same_but_markers(renders[0], renders[1]):
            return None
        return [_pieces(text) for text in renders[0]]

    def _truth_keys(self, lang: str) -> tuple[str, ...] | None:
        if lang not in self._truth:
            found: frozenset[str] | None = None
            if _BASE_URL.fullmatch(self.base_url):
                html_t, text_t = self.template.body_templates(lang)
                found = spliceable(html_t.environment, [html_t.name or ""])
                if found is not None:
                    more = spliceable(text_t.environment, [text_t.name or ""])
                    found = None if more is None else found | more
            self._truth[lang] = None if found is None else tuple(sorted(found))
        return self._truth[lang]

    def alert(
        self,
        supporter: Mapping[str, Any],
        unsubscribe_url: str,
        click: Callable[[int], str],
        open_token: Callable[[], str],
    ) -> tuple[RenderedAlert, EncodedBodies] | None:
        """The recipient's tracked alert and its parts encoded for MIME (those that
        could be), or None where only the full render is exact."""
        lang = self.template.pick_language(str(supporter.get("language", "")))
        truth = self._truth_keys(lang)
        if truth is None:
            return None
        values: list[Any] = [supporter.get(f) for f in FIELDS]
        values += ["", "", unsubscribe_url]
        if not all(isinstance(value, str) for value in values):
            return None
        head = self._head(lang, values)
        if head is None:
            context = dict(self.shared, supporter=supporter, unsubscribe_url=unsubscribe_url)
            try:
                lang, *head = self.template.render_head(context, lang)
            except TemplateProblem:
                return None  # the full render reports it, with its own location
        subject, preheader = head
        values[_SUBJECT], values[_SUBJECT + 1] = subject, preheader
        for i, value in enumerate(values):
            if i != _UNSUBSCRIBE and "/" in value:
                return None
        by_key = dict(zip(KEYS, values, strict=True))
        pattern = tuple(bool(by_key[key]) for key in truth)
        variant = self._variant(lang, truth, pattern)
        if variant is None:
            return None
        urls = {marker: click(link_id) for marker, link_id in variant.link_ids.items()}
        html_fill = {_BASE + i: _escaped(v) for i, v in enumerate(values)}
        html_fill.update((m, html.escape(u, quote=True)) for m, u in urls.items())
        if self.opens:
            html_fill[_OPEN] = open_token()
        text_fill = {_BASE + i: v for i, v in enumerate(values)}
        text_fill.update(urls)
        html_out = variant.html.copy()
        for index, marker in variant.html_slots:
            html_out[index] = html_fill[marker]
        text_out = variant.text.copy()
        for index, marker in variant.text_slots:
            text_out[index] = text_fill[marker]
        alert = RenderedAlert(
            language=lang,
            subject=subject,
            preheader=preheader,
            html="".join(html_out),
            text="".join(text_out),
        )
        return alert, EncodedBodies(
            self.avoid,
            text=None if variant.text_body is None else variant.text_body.encode(text_fill),
            html=None if variant.html_body is None else variant.html_body.encode(html_fill),
        )

    def _variant(
        self, lang: str, truth: tuple[str, ...], pattern: tuple[bool, ...]
    ) -> _Variant | None:
        index = (lang, pattern)
        if index not in self._variants:
            self._variants[index] = self._build(lang, dict(zip(truth, pattern, strict=True)))
        return self._variants[index]

    def _marked_context(
        self, lang: str, truthy: dict[str, bool], base: int
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A render's context with marker ``base + i`` for value ``KEYS[i]``, and the marks."""
        marks = _marks(truthy, base)
        supporter: dict[str, Any] = {f: marks[f"supporter.{f}"] for f in FIELDS}
        supporter["custom"] = {}
        context = dict(
            self.shared,
            supporter=supporter,
            unsubscribe_url=marks["unsubscribe_url"],
            language=lang,
        )
        return context, marks

    def _render(self, lang: str, truthy: dict[str, bool], base: int) -> tuple[str, str] | None:
        """The bodies with marker ``base + i`` for value ``KEYS[i]`` ("" where it is empty)."""
        context, marks = self._marked_context(lang, truthy, base)
        context.update(subject=marks["subject"], preheader=marks["preheader"])
        html_t, text_t = self.template.body_templates(lang)
        try:
            return html_t.render(context), text_t.render(context)
        except Exception:  # the full render reports any problem, with its location
            return None

    def _build(self, lang: str, truthy: dict[str, bool]) -> _Variant | None:
        bodies = self._render(lang, truthy, _BASE)
        # Rendered again with other markers: a marker character the template or a shared
        # value writes itself stays where it is and tells the two renders apart.
        again = self._render(lang, truthy, _CHECK)
        if bodies is None or again is None:
            return None
        if not _same_but_markers(bodies, again):
            return None  # the template or a shared value writes a marker character itself
        html_body, text_body = bodies
        unsubscribe = chr(_BASE + _UNSUBSCRIBE)
        inside: list[tuple[int, int, str]] = [
            (m.start("url"), m.end("url"), m.group("url")) for m in _HREF.finditer(html_body)
        ]
        for m in _MARKER.finditer(html_body):
            at = m.start()
            in_href = [url for start, end, url in inside if start <= at < end]
            if in_href:
                if m.group() != unsubscribe or not in_href[0].lstrip().startswith(unsubscribe):
                    return None
            elif html_body.rfind("<", 0, at) > html_body.rfind(">", 0, at):
                return None  # a value inside a tag could make an attribute
        for run in _RUN.finditer(text_body):
            if _MARKER.search(run.group()) and "//" in _MARKER.sub("", run.group()):
                return None  # a value next to what could be a URL
        link_ids: dict[int, int] = {}
        markers: dict[int, str] = {}

        def track(url: str) -> str:
            link_id = self.link_id(url)
            if link_id is None:
                return url
            if link_id not in markers:
                markers[link_id] = chr(_LINK + len(markers))
                link_ids[ord(markers[link_id])] = link_id
            return markers[link_id]

        html_body = links.rewrite_html(html_body, self.own, track)
        text_body = links.rewrite_text(text_body, self.own, track)
        if len(markers) > 0x100:
            return None  # more links than markers
        if self.opens:
            html_body = with_pixel(html_body, self.base_url, chr(_OPEN))
        html_chunks, html_slots = _pieces(html_body)
        text_chunks, text_slots = _pieces(text_body)
        return _Variant(
            html_chunks,
            html_slots,
            text_chunks,
            text_slots,
            link_ids,
            prepare_body(html_chunks, html_slots, self.avoid),
            prepare_body(text_chunks, text_slots, self.avoid),
        )


_HREF = links.HTML_HREF


def with_pixel(html_body: str, base_url: str, token: str) -> str:
    """A 1x1 image at /o/<token> just before </body> (tracking.opens)."""
    pixel = (
        f'<img src="{base_url}/o/{token}" width="1" height="1" '
        'alt="" style="display:block;border:0;width:1px;height:1px">'
    )
    at = html_body.lower().rfind("</body>")
    return html_body + pixel if at < 0 else html_body[:at] + pixel + html_body[at:]


# The characters Jinja's autoescape (markupsafe) replaces.
_HTML_SPECIAL = re.compile("[&<>'\"]")


def _escaped(value: str) -> str:
    """``value`` as Jinja's autoescape writes it into HTML; most values have nothing to escape."""
    return str(markupsafe.escape(value)) if _HTML_SPECIAL.search(value) else value

"""A stored revision as an :class:`~mailer.compose.templates.AlertTemplate`.

The composer, the sender, `mailer check` and preview take any
``AlertTemplate``; this one is built from a database revision instead of a
folder. Its bodies are compiled once, when it is built (Markdown to the same
Jinja a folder template holds), and extend the shared layout from the
templates directory (``layout/base.html``, ``layout/base.txt``), so footer,
postal address and unsubscribe link are the same for both kinds.

Template names look like ``executive-orders@3/en.html`` (alert, revision,
language), so an error names the revision. For a Markdown body an error in the
HTML or text part is traced back to the line of the Markdown the organizer
wrote, by rendering that Markdown itself as a Jinja template.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from mailer.alerts.markdown import compile_markdown
from mailer.alerts.store import Revision
from mailer.compose.templates import AlertTemplate, RenderedAlert
from mailer.errors import TemplateProblem
from mailer.store.models import AlertFormat


class RevisionProblem(TemplateProblem):
    """A problem in a stored revision, with where it is for an editor to point at."""

    def __init__(self, message: str, *, language: str, part: str, line: int | None) -> None:
        super().__init__(message)
        self.language = language
        self.part = part  # "subject", "preheader", "body" or "text"
        self.line = line  # in the text the organizer wrote, when known


class _RevisionLoader(BaseLoader):
    """The revision's bodies, under names that end in .html / .txt."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        if template not in self.sources:
            raise jinja2.TemplateNotFound(template)
        return self.sources[template], template, lambda: True


def _environment(loader: BaseLoader, *, html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"]) if html else False,
        keep_trailing_newline=True,
        auto_reload=False,
    )


class StoredAlertTemplate(AlertTemplate):
    """One revision of a stored alert, compiled once, rendered per supporter."""

    def __init__(self, root: Path, revision: Revision) -> None:
        # Deliberately not AlertTemplate.__init__, which reads a folder: the same
        # attributes are set from the revision instead.
        self.root = root
        self.revision = revision
        self.name = revision.alert
        self.description = revision.description
        self.default_language = revision.default_language
        prefix = f"{revision.alert}@{revision.number}"
        # The folder's other files, under the names a body would include them by,
        # come from the revision too, never from a folder on disk.
        sources: dict[str, str] = {
            f"{revision.alert}/{path}": content for path, content in revision.files.items()
        }
        for lang, t in revision.texts.items():
            if revision.format is AlertFormat.MARKDOWN:
                compiled = compile_markdown(t.body)
                sources[f"{prefix}/{lang}.html"] = compiled.html_template()
                sources[f"{prefix}/{lang}.txt"] = compiled.text_template(t.text)
            else:
                sources[f"{prefix}/{lang}.html"] = t.body
                sources[f"{prefix}/{lang}.txt"] = t.text
        self.sources = sources
        loader = ChoiceLoader([_RevisionLoader(sources), FileSystemLoader(root)])
        self._html_env = _environment(loader, html=True)
        self._text_env = _environment(loader, html=False)
        self._parts: dict[str, tuple[jinja2.Template, ...]] = {}
        self._heads = {lang: (t.subject, t.preheader) for lang, t in revision.texts.items()}
        if revision.default_language not in revision.texts:
            raise TemplateProblem(
                f"{prefix}: the default language {revision.default_language!r} has no text"
            )
        for lang, t in revision.texts.items():
            parts = []
            for key, source in (("subject", t.subject), ("preheader", t.preheader)):
                try:
                    parts.append(self._text_env.from_string(source))
                except jinja2.TemplateSyntaxError as exc:
                    raise RevisionProblem(
                        f"{revision.alert} revision {revision.number} {key} ({lang}): "
                        f"{exc.message}",
                        language=lang,
                        part=key,
                        line=None,
                    ) from None
            for env, suffix in ((self._html_env, "html"), (self._text_env, "txt")):
                file = f"{prefix}/{lang}.{suffix}"
                try:
                    parts.append(env.get_template(file))
                except jinja2.TemplateNotFound as exc:
                    raise TemplateProblem(f"{file}: {exc.name} is missing from {root}") from None
                except jinja2.TemplateSyntaxError as exc:
                    problem = self._located(lang, suffix, exc.message or str(exc), exc.lineno)
                    raise problem from None
            self._parts[lang] = tuple(parts)

    def render(self, context: Mapping[str, Any], language: str) -> RenderedAlert:
        try:
            return super().render(context, language)
        except TemplateProblem:
            if self.revision.format is not AlertFormat.MARKDOWN:
                raise
            lang = self.pick_language(language)
            located = self._markdown_problem(lang, context)
            if located is None:
                raise
            raise located from None

    def _markdown_problem(
        self, lang: str, context: Mapping[str, Any] | None
    ) -> TemplateProblem | None:
        """The same problem, found in the Markdown source as written (parsed, and
        rendered when a ``context`` is given)."""
        t = self.revision.texts[lang]
        for part, source in (("body", t.body), ("text", t.text)):
            if not source:
                continue
            try:
                compiled = self._text_env.from_string(source)
                if context is not None:
                    compiled.render(dict(context, language=lang))
            except jinja2.TemplateSyntaxError as exc:
                return self._where(lang, part, exc.lineno, exc.message or str(exc))
            except jinja2.TemplateError as exc:
                line = _line_of(exc)
                return self._where(lang, part, line, getattr(exc, "message", None) or str(exc))
            except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
                return self._where(lang, part, _line_of(exc), f"{type(exc).__name__}: {exc}")
        return None

    def _where(self, lang: str, part: str, line: int | None, message: str) -> RevisionProblem:
        number = self.revision.number
        at = f", line {line}" if line else ""
        return RevisionProblem(
            f"{self.name} revision {number} {part} ({lang}){at}: {message}",
            language=lang,
            part=part,
            line=line,
        )

    def _located(self, lang: str, suffix: str, message: str, line: int | None) -> TemplateProblem:
        if self.revision.format is AlertFormat.MARKDOWN:
            found = self._markdown_problem(lang, None)
            if found is not None:
                return found
        part = "body" if suffix == "html" else "text"
        return self._where(lang, part, line, message)


def _line_of(exc: BaseException) -> int | None:
    """The template line a render error happened on, from its traceback."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


LAYOUT_FILES = ("layout/base.html", "layout/base.txt")


def _stamp(root: Path) -> str:
    """The size and modification time of the layout's files under ``root``."""
    parts = []
    for name in LAYOUT_FILES:
        try:
            found = (root / name).stat()
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{found.st_size}:{found.st_mtime_ns}")
    return " ".join(parts)


class _CompiledRevisions:
    """Compiled revisions kept in memory, so that the studio's pages (editor, preview,
    its frame), `mailer check` and every composer of a blast do not compile the same
    revision (and the layout) again each time.

    Keyed by the templates folder and a digest of the revision's whole text (its
    name, number, texts and files): a key can only ever mean one compiled
    template, whichever database it came from. The key also holds the size and
    time of the shared layout's files, so an edited layout is compiled again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.kept: OrderedDict[tuple[str, str, str], StoredAlertTemplate] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, root: Path, revision: Revision) -> StoredAlertTemplate:
        key = (
            str(root),
            _stamp(root),
            hashlib.sha256(revision.as_text().encode()).hexdigest(),
        )
        with self.lock:
            found = self.kept.get(key)
            if found is not None:
                self.kept.move_to_end(key)
                return found
        compiled = StoredAlertTemplate(root, revision)  # may raise TemplateProblem
        with self.lock:
            self.kept[key] = compiled
            while len(self.kept) > self.size:
                self.kept.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self.lock:
            self.kept.clear()


COMPILED_KEPT = 32  # compiled revisions kept in memory
compiled_revisions = _CompiledRevisions(COMPILED_KEPT)

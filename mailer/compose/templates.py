"""Loading and rendering alert templates (Jinja, sandboxed).

An alert template is a folder under the templates directory::

    templates/
      layout/base.html, layout/base.txt     the layouts every alert extends
      executive-orders/
        template.toml                       description, default_language, and per
                                            language a templated subject and preheader
        en.html  en.txt  es.html  es.txt    the bodies, one pair per language

Templates are edited by organizers, so Jinja runs in a sandboxed environment;
an undefined variable is an error (``StrictUndefined``) and ``.html`` files are
autoescaped. Every problem becomes :class:`~mailer.errors.TemplateProblem`
naming the file and line, so a mistake shows up at preview time rather than on
recipient 40,000.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from mailer.errors import TemplateProblem

MANIFEST = "template.toml"
MAX_NAME = 100  # a template is a folder: its name must make a path any system can open


@dataclass(frozen=True)
class RenderedAlert:
    """One supporter's alert, before links are rewritten and MIME is built."""

    language: str
    subject: str
    preheader: str
    html: str
    text: str


def _environment(root: Path, *, html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"]) if html else False,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def _location(exc: BaseException, default: str) -> str:
    """'file, line N' for a Jinja error, from the exception or its traceback."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.filename or exc.name or default}, line {exc.lineno}"
    tb = exc.__traceback__
    where = default
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith((".html", ".txt")) or "<template>" in filename:
            where = f"{filename}, line {tb.tb_lineno}"
        tb = tb.tb_next
    return where


class AlertTemplate:
    """One alert template folder, compiled once, rendered per supporter."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        folder = root / name
        manifest_path = folder / MANIFEST
        if (
            not name
            or len(name) > MAX_NAME
            or not name.isprintable()
            or "/" in name
            or "\\" in name
            or name.startswith((".", "_"))
            or name == "layout"
        ):
            raise TemplateProblem(f"{name[:MAX_NAME]!r} is not a template name")
        if not manifest_path.is_file():
            known = ", ".join(available_templates(root)) or "none"
            raise TemplateProblem(
                f"no template {name!r} in {root} (no {manifest_path.name}); known: {known}"
            )
        try:
            manifest = tomllib.loads(manifest_path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TemplateProblem(f"{manifest_path}: {exc}") from None
        self.description = str(manifest.get("description", ""))
        languages = manifest.get("languages")
        if not isinstance(languages, dict) or not languages:
            raise TemplateProblem(f"{manifest_path}: needs a [languages.<code>] table per language")
        self.default_language = str(manifest.get("default_language", next(iter(languages))))
        if self.default_language not in languages:
            raise TemplateProblem(
                f"{manifest_path}: default_language {self.default_language!r} "
                f"has no [languages.{self.default_language}]"
            )
        self._html_env = _environment(root, html=True)
        self._text_env = _environment(root, html=False)
        self._parts: dict[str, tuple[jinja2.Template, ...]] = {}
        self._heads: dict[str, tuple[str, str]] = {}
        for lang, table in languages.items():
            if not isinstance(table, dict):
                raise TemplateProblem(f"{manifest_path}: [languages.{lang}] must be a table")
            parts = []
            for key in ("subject", "preheader"):
                source = table.get(key)
                if not isinstance(source, str):
                    raise TemplateProblem(
                        f"{manifest_path}: [languages.{lang}] needs a {key} string"
                    )
                where = f"{manifest_path} [languages.{lang}] {key}"
                try:
                    parts.append(self._text_env.from_string(source))
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateProblem(f"{where}: {exc.message}") from None
            for env, suffix in ((self._html_env, "html"), (self._text_env, "txt")):
                file = f"{name}/{lang}.{suffix}"
                try:
                    parts.append(env.get_template(file))
                except jinja2.TemplateNotFound as exc:
                    raise TemplateProblem(
                        f"{root / file}: missing (needed by {exc.name})"
                    ) from None
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateProblem(f"{_location(exc, file)}: {exc.message}") from None
            self._parts[lang] = tuple(parts)
            self._heads[lang] = (str(table["subject"]), str(table["preheader"]))

    @property
    def languages(self) -> list[str]:
        return list(self._parts)

    def pick_language(self, wanted: str) -> str:
        """The supporter's language when the template has it, else the default."""
        return wanted if wanted in self._parts else self.default_language

    def body_templates(self, language: str) -> tuple[jinja2.Template, jinja2.Template]:
        """The compiled HTML and text bodies of ``language`` (as picked)."""
        parts = self._parts[self.pick_language(language)]
        return parts[2], parts[3]

    def head_sources(self, language: str) -> tuple[str, str] | None:
        """The Jinja source of the subject and preheader of ``language`` (as picked)."""
        heads: dict[str, tuple[str, str]] = getattr(self, "_heads", {})
        return heads.get(self.pick_language(language))

    def head_templates(self, language: str) -> tuple[jinja2.Template, jinja2.Template]:
        """The compiled subject and preheader of ``language`` (as picked)."""
        parts = self._parts[self.pick_language(language)]
        return parts[0], parts[1]

    def render_head(self, context: Mapping[str, Any], language: str) -> tuple[str, str, str]:
        """(language, subject, preheader) as :meth:`render` makes them."""
        lang = self.pick_language(language)
        subject_t, preheader_t, _, _ = self._parts[lang]
        ctx = dict(context, language=lang)
        current = f"{self.name} subject ({lang})"
        try:
            subject = " ".join(subject_t.render(ctx).split())
            current = f"{self.name} preheader ({lang})"
            preheader = " ".join(preheader_t.render(ctx).split())
        except jinja2.TemplateError as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise TemplateProblem(f"{_location(exc, current)}: {message}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateProblem(
                f"{_location(exc, current)}: {type(exc).__name__}: {exc}"
            ) from None
        return lang, subject, preheader

    def render(self, context: Mapping[str, Any], language: str) -> RenderedAlert:
        lang, subject, preheader = self.render_head(context, language)
        _, _, html_t, text_t = self._parts[lang]
        ctx = dict(context, language=lang, subject=subject, preheader=preheader)
        current = f"{self.name}/{lang}.html"
        try:
            html = html_t.render(ctx)
            current = f"{self.name}/{lang}.txt"
            text = text_t.render(ctx)
        except jinja2.TemplateError as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise TemplateProblem(f"{_location(exc, current)}: {message}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateProblem(
                f"{_location(exc, current)}: {type(exc).__name__}: {exc}"
            ) from None
        return RenderedAlert(
            language=lang, subject=subject, preheader=preheader, html=html, text=text
        )


def available_templates(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))


def sample_context(**overrides: Any) -> dict[str, Any]:
    """A complete context with placeholder values, for checking a template renders."""
    ctx: dict[str, Any] = {
        "supporter": {
            "first_name": "Alex",
            "last_name": "Sample",
            "email": "alex@example.org",
            "zip": "00000",
            "region": "",
            "language": "en",
            "custom": {},
        },
        "organization": {"name": "Organization", "postal_address": "1 Example Street"},
        "sender": {"name": "Sender", "address": "alerts@example.org"},
        "blast": {"name": "sample"},
        "cta_url": "https://www.example.org/act",
        "unsubscribe_url": "https://mailer.example.org/u/sample",
    }
    ctx.update(overrides)
    return ctx


def check_template(template: AlertTemplate) -> None:
    """Render every language with and without a first name; raise on the first problem."""
    for lang in template.languages:
        for first_name in ("Alex", ""):
            base = sample_context()
            base["supporter"] = dict(base["supporter"], first_name=first_name, language=lang)
            template.render(base, lang)

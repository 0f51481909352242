"""A petition's words per language, from ``petition.toml`` beside the alert (in its
folder, or kept with a stored alert's revision when the folder was imported).

::

    templates/executive-orders/petition.toml

    [languages.en]
    title = "Tell the White House: ..."
    intro = "One or two sentences above the form."
    message = \"\"\"The suggested message, which each signer may edit.\"\"\"
    target = "the White House"        # optional: who the thank-you page hands signers on to

    [languages.es]
    ...

The texts are plain text (no Jinja): they are shown escaped on the pages and
copied into the signer's message box as they are.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from mailer.errors import TemplateProblem

PETITION_FILE = "petition.toml"
KEYS = ("title", "intro", "message")
OPTIONAL_KEYS = ("target",)
MAX_TEXT = 5000


def load_texts(root: Path, template: str) -> dict[str, dict[str, str]]:
    """``{language: {title, intro, message}}`` from ``root/template/petition.toml``."""
    if not template or "/" in template or template.startswith((".", "_")):
        raise TemplateProblem(f"{template!r} is not a template name")
    path = root / template / PETITION_FILE
    if not path.is_file():
        raise TemplateProblem(
            f"no {PETITION_FILE} in template {template!r} ({path}); "
            "it holds the petition's title and suggested message per language"
        )
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateProblem(f"{path}: {exc}") from None
    return parse_texts(text, str(path))


def parse_texts(text: str, where: str) -> dict[str, dict[str, str]]:
    """``{language: {title, intro, message}}`` from the text of a ``petition.toml``
    (a folder's, or the one a stored alert keeps); problems name ``where``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateProblem(f"{where}: {exc}") from None
    languages = data.get("languages")
    if not isinstance(languages, dict) or not languages:
        raise TemplateProblem(f"{where}: needs a [languages.<code>] table per language")
    texts: dict[str, dict[str, str]] = {}
    for lang, table in languages.items():
        if not isinstance(table, dict):
            raise TemplateProblem(f"{where}: [languages.{lang}] must be a table")
        entry: dict[str, str] = {}
        for key in KEYS:
            value = table.get(key)
            if not isinstance(value, str) or not value.strip():
                raise TemplateProblem(f"{where}: [languages.{lang}] needs a non-empty {key} string")
            if len(value) > MAX_TEXT:
                raise TemplateProblem(
                    f"{where}: [languages.{lang}] {key} is longer than {MAX_TEXT} characters"
                )
            entry[key] = value.strip()
        for key in OPTIONAL_KEYS:
            value = table.get(key, "")
            if not isinstance(value, str) or len(value) > 200:
                raise TemplateProblem(
                    f"{where}: [languages.{lang}] {key} must be a string of at most 200 characters"
                )
            if value.strip():
                entry[key] = value.strip()
        texts[str(lang)] = entry
    return texts


def texts_for(texts: dict[str, dict[str, str]], language: str, default: str) -> dict[str, str]:
    """The texts in ``language`` when the petition has them, else in ``default``."""
    return texts.get(language) or texts.get(default) or next(iter(texts.values()))

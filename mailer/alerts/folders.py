"""Template folders in and out of the database: `mailer template import` and `export`.

A folder template comes in as a revision of format ``folder``: its bodies
(``<lang>.html``, ``<lang>.txt``) are kept exactly as written, and every other
file of the folder (``template.toml`` as written, ``petition.toml``, …) is kept
beside them, so exporting that revision writes the same bytes back. Files
whose names start with a dot are ignored; subfolders and files that are not
UTF-8 text are refused.

A Markdown alert goes out as a folder whose ``template.toml`` says
``format = "markdown"``, with ``<lang>.md`` bodies and, where the plain text is
written by hand, ``<lang>.txt``; importing that folder gives a Markdown
revision again.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from mailer.alerts.compiled import StoredAlertTemplate
from mailer.alerts.store import LanguageText, Revision, check_name, get_revision, save_revision
from mailer.compose.templates import MANIFEST, check_template
from mailer.errors import InvalidState, TemplateProblem
from mailer.store import Database
from mailer.store.models import AlertFormat, utcnow


def _read(path: Path) -> str:
    """A file's text exactly as stored (line ends kept), or a problem naming it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateProblem(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise TemplateProblem(f"{path}: cannot be read: {exc.strerror}") from None


def _manifest(path: Path, text: str) -> dict[str, Any]:
    try:
        manifest = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateProblem(f"{path}: {exc}") from None
    languages = manifest.get("languages")
    if not isinstance(languages, dict) or not languages:
        raise TemplateProblem(f"{path}: needs a [languages.<code>] table per language")
    for lang, table in languages.items():
        if not isinstance(table, dict):
            raise TemplateProblem(f"{path}: [languages.{lang}] must be a table")
        for key in ("subject", "preheader"):
            if not isinstance(table.get(key), str):
                raise TemplateProblem(f"{path}: [languages.{lang}] needs a {key} string")
    default = manifest.get("default_language", next(iter(languages)))
    if default not in languages:
        raise TemplateProblem(f"{path}: default_language {default!r} has no [languages.{default}]")
    fmt = manifest.get("format", "folder")
    if fmt not in ("folder", "markdown"):
        raise TemplateProblem(f'{path}: format must be "folder" or "markdown", not {fmt!r}')
    return manifest


def read_folder(folder: Path, name: str | None = None) -> Revision:
    """The folder as an unsaved revision (id 0, number 0); problems name the file."""
    if not folder.is_dir():
        raise TemplateProblem(f"{folder}: not a folder")
    name = check_name(name or folder.name)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise TemplateProblem(f"{folder}: no {MANIFEST} (description, languages, subjects)")
    manifest_text = _read(manifest_path)
    manifest = _manifest(manifest_path, manifest_text)
    markdown = manifest.get("format") == "markdown"
    texts = {}
    used = {MANIFEST}
    for lang, table in manifest["languages"].items():
        if markdown:
            body_file, text_file = f"{lang}.md", f"{lang}.txt"
            body = _read(folder / body_file) if (folder / body_file).is_file() else None
            text = _read(folder / text_file) if (folder / text_file).is_file() else ""
        else:
            body_file, text_file = f"{lang}.html", f"{lang}.txt"
            body = _read(folder / body_file) if (folder / body_file).is_file() else None
            if not (folder / text_file).is_file():
                raise TemplateProblem(
                    f"{folder / text_file}: missing (named by [languages.{lang}])"
                )
            text = _read(folder / text_file)
        if body is None:
            raise TemplateProblem(f"{folder / body_file}: missing (named by [languages.{lang}])")
        used.update((body_file, text_file))
        texts[lang] = LanguageText(table["subject"], table["preheader"], body, text)
    files: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            raise TemplateProblem(f"{entry}: a template folder cannot hold subfolders")
        if entry.name not in used or (entry.name == MANIFEST and not markdown):
            files[entry.name] = _read(entry)
    return Revision(
        id=0,
        alert=name,
        number=0,
        author="",
        created_at=None,
        format=AlertFormat.MARKDOWN if markdown else AlertFormat.FOLDER,
        description=str(manifest.get("description", "")),
        default_language=str(manifest.get("default_language", next(iter(texts)))),
        texts=texts,
        files=files,
    )


def import_folder(
    db: Database,
    folder: Path,
    *,
    layouts: Path,
    author: str,
    name: str | None = None,
    note: str = "",
    now: Callable[[], datetime] = utcnow,
) -> Revision:
    """Store template folder ``folder`` as the next revision of alert ``name``
    (default: the folder's name), after checking it renders in every language
    with the layouts of ``layouts``."""
    found = read_folder(folder, name)
    check_template(StoredAlertTemplate(layouts, found))
    return save_revision(
        db,
        found.alert,
        found.texts,
        author=author,
        description=found.description,
        default_language=found.default_language,
        format=found.format,
        files=found.files,
        note=note or f"imported from {folder.name}",
        now=now,
    )


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def manifest_text(revision: Revision) -> str:
    """``template.toml`` for ``revision``: the imported one as written while it still
    says what the revision says, otherwise written afresh."""
    kept = revision.files.get(MANIFEST)
    if kept is not None and revision.format is AlertFormat.FOLDER:
        try:
            old = tomllib.loads(kept)
        except tomllib.TOMLDecodeError:
            old = {}
        languages = old.get("languages") or {}
        same = (
            str(old.get("description", "")) == revision.description
            and str(old.get("default_language", next(iter(languages), "")))
            == revision.default_language
            and old.get("format", "folder") == "folder"
            and set(languages) == set(revision.texts)
            and all(
                languages[lang].get("subject") == t.subject
                and languages[lang].get("preheader") == t.preheader
                for lang, t in revision.texts.items()
            )
        )
        if same:
            return kept
    lines = [
        f"description = {_toml_string(revision.description)}",
        f"default_language = {_toml_string(revision.default_language)}",
    ]
    if revision.format is AlertFormat.MARKDOWN:
        lines.append('format = "markdown"')
    for lang in revision.languages:
        t = revision.texts[lang]
        lines += [
            "",
            f"[languages.{lang}]",
            f"subject = {_toml_string(t.subject)}",
            f"preheader = {_toml_string(t.preheader)}",
        ]
    return "\n".join(lines) + "\n"


def folder_files(revision: Revision) -> dict[str, str]:
    """The files (name → text) a revision is as a folder."""
    files = {k: v for k, v in revision.files.items() if k != MANIFEST}
    files[MANIFEST] = manifest_text(revision)
    for lang, t in revision.texts.items():
        if revision.format is AlertFormat.MARKDOWN:
            files[f"{lang}.md"] = t.body
            if t.text:
                files[f"{lang}.txt"] = t.text
        else:
            files[f"{lang}.html"] = t.body
            files[f"{lang}.txt"] = t.text
    return dict(sorted(files.items()))


def export_alert(
    db: Database, name: str, folder: Path, *, number: int | None = None, overwrite: bool = False
) -> list[Path]:
    """Write revision ``number`` (default: the newest) of alert ``name`` into ``folder``.

    A folder that exists and holds files is refused unless ``overwrite``;
    then only the alert's own files are replaced.
    """
    revision = get_revision(db, name, number)
    if folder.exists() and not folder.is_dir():
        raise InvalidState(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise InvalidState(f"{folder} is not empty; choose an empty folder or overwrite it")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file, content in folder_files(revision).items():
        path = folder / file
        path.write_bytes(content.encode("utf-8"))
        written.append(path)
    return written

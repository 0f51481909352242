"""Which template a blast uses: a stored alert or a template folder.

``blast create --template NAME`` takes either, and so does ``petition create
--template NAME`` (:func:`petition_texts`). When the database holds an
alert named NAME, the alert wins over a folder of the same name (the folder
is typically where it was imported from, and edits happen in the database
since), and the blast pins the alert's newest revision then. A blast that
pins no revision (every blast made before alerts were stored) is sent from
the folder named in ``blast.template``, as before.
"""

from __future__ import annotations

from pathlib import Path

from mailer.alerts.compiled import compiled_revisions
from mailer.alerts.store import alert_exists, get_revision, load_revision
from mailer.compose.templates import AlertTemplate
from mailer.config import Settings
from mailer.errors import TemplateProblem
from mailer.petitions.texts import PETITION_FILE, load_texts, parse_texts
from mailer.store import Blast, Database


def template_named(db: Database, settings: Settings, name: str) -> tuple[AlertTemplate, int | None]:
    """The template ``name`` means now, and the revision id to pin (None: a folder)."""
    if alert_exists(db, name):
        revision = get_revision(db, name)
        return compiled_revisions.get(settings.templates_path(), revision), revision.id
    return AlertTemplate(settings.templates_path(), name), None


def template_of_blast(
    db: Database, settings: Settings, blast: Blast, templates_dir: Path | None = None
) -> AlertTemplate:
    """The template ``blast`` is sent with: its pinned revision, else its folder."""
    root = templates_dir or settings.templates_path()
    if blast.alert_revision_id is not None:
        return compiled_revisions.get(root, load_revision(db, blast.alert_revision_id))
    return AlertTemplate(root, blast.template)


def petition_texts(db: Database, settings: Settings, name: str) -> dict[str, dict[str, str]]:
    """The petition texts template ``name`` holds: the ``petition.toml`` of the stored
    alert's newest revision (kept there when its folder was imported), else of the folder."""
    if alert_exists(db, name):
        revision = get_revision(db, name)
        text = revision.files.get(PETITION_FILE)
        where = f"alert {revision.alert!r} revision {revision.number}"
        if text is None:
            raise TemplateProblem(
                f"{where} has no {PETITION_FILE} (it holds the petition's title and suggested "
                "message per language): write the petition in the admin, or import a template "
                f"folder with a {PETITION_FILE}"
            )
        return parse_texts(text, f"{where} {PETITION_FILE}")
    return load_texts(settings.templates_path(), name)

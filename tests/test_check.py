"""`mailer check` catches each problem it lists, in a deliberately broken template."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlmodel import select

from mailer.blasts import create_blast
from mailer.check import check_blast, gate
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.store import Blast, Database, Event, Supporter
from tests.conftest import REPO, make_settings
from tests.factories import Person, add_people

BROKEN_TOML = """
description = "everything wrong"
default_language = "en"
[languages.en]
subject = ""
preheader = "x"
[languages.es]
subject = "{{ 'Una alerta muy larga ' * 6 }}"
preheader = "x"
"""
# No layout (so no footer: no unsubscribe link, no postal address), a relative and a
# plain-http link, an image without alt text, no call to action, and far too much HTML.
BROKEN_HTML = """<html><body>
<p>Hello {{ supporter.first_name }}</p>
<a href="/act-now">relative</a> <a href="http://insecure.example.org/">insecure</a>
<img src="https://www.example.org/banner.png">
{% if supporter.zip.startswith("9") %}{{ supporter.custom.county }}{% endif %}
<p>{{ "padding " * 14000 }}</p>
</body></html>
"""


@pytest.fixture
def broken(tmp_path: Path) -> Settings:
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    folder = root / "broken"
    folder.mkdir()
    (folder / "template.toml").write_text(BROKEN_TOML, "utf-8")
    for lang in ("en", "es"):
        (folder / f"{lang}.html").write_text(BROKEN_HTML, "utf-8")
        (folder / f"{lang}.txt").write_text("", "utf-8")
    return make_settings(templates=root)


def codes(db: Database, settings: Settings, ref: int) -> dict[str, str]:
    return {p.code: p.severity for p in check_blast(db, settings, ref)}


def test_every_listed_problem_is_caught(db: Database, broken: Settings) -> None:
    add_people(db, "members", [Person("a@example.org", "Ann"), Person("b@example.org", "Bo", "es")])
    blast = create_blast(db, broken, name="b", template="broken", list_names=["members"])
    assert blast.id is not None
    found = codes(db, broken, blast.id)
    assert found == {
        "cta-missing": "error",
        "link-not-absolute": "error",
        "link-not-https": "warning",
        "text-part-empty": "error",
        "unsubscribe-missing": "error",
        "postal-address-missing": "error",
        "too-big": "error",
        "image-alt-missing": "warning",
        "subject-empty": "error",
        "subject-long": "warning",
    }


def test_a_data_dependent_template_error_is_found_with_real_recipients(
    db: Database, broken: Settings
) -> None:
    add_people(db, "members", [Person("zip9@example.org", "Zed")])
    with db.session() as session:
        supporter = session.exec(select(Supporter)).one()
        supporter.zip = "94110"  # the template reads supporter.custom.county for 9xxxx ZIPs
        session.add(supporter)
    blast = create_blast(db, broken, name="b", template="broken", list_names=["members"])
    assert blast.id is not None
    problems = [p for p in check_blast(db, broken, blast.id) if p.code == "template"]
    assert (
        problems and "county" in problems[0].message and "zip9@example.org" in problems[0].message
    )


def test_the_shipped_alert_is_clean(db: Database) -> None:
    settings = make_settings()
    add_people(db, "members", [Person("a@example.org", "Ann"), Person("c@example.org", "", "es")])
    blast = create_blast(
        db, settings, name="eo", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    assert check_blast(db, settings, blast.id) == []


def test_an_empty_audience_is_a_warning(db: Database) -> None:
    settings = make_settings()
    add_people(db, "members", [])
    blast = create_blast(
        db, settings, name="eo", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    assert codes(db, settings, blast.id) == {"audience-empty": "warning"}


def test_sending_a_failing_blast_is_refused_unless_forced(db: Database, broken: Settings) -> None:
    add_people(db, "members", [Person("a@example.org", "Ann")])
    blast = create_blast(db, broken, name="b", template="broken", list_names=["members"])
    assert blast.id is not None
    with pytest.raises(InvalidState, match=r"fails its pre-flight check.*--force"):
        gate(db, broken, blast.id, force=False, actor="test")
    gate(db, broken, blast.id, force=True, actor="test")
    with db.session() as session:
        stored = session.get(Blast, blast.id)
        assert stored is not None and stored.checks_overridden
        event = session.exec(select(Event).where(Event.action == "blast.checks_overridden")).one()
        assert any("too-big" in e for e in event.detail["errors"])
    gate(db, broken, blast.id, force=False, actor="test")  # forced once: it passes now


def test_audience_languages_the_alert_lacks_are_a_warning(db: Database) -> None:
    settings = make_settings()
    add_people(
        db,
        "members",
        [Person("a@example.org", "Ann"), Person("f@example.org", "Flo", "fr")],
    )
    blast = create_blast(
        db, settings, name="eo", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    [problem] = check_blast(db, settings, blast.id)
    assert (problem.severity, problem.code) == ("warning", "translation-missing")
    assert "no fr text: those supporters get the en one" in problem.message

"""Alerts in the database: revisions, folders in and out, blasts pinning what they send."""

from __future__ import annotations

import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from mailer.alerts.folders import export_alert, import_folder
from mailer.alerts.store import (
    LanguageText,
    diff,
    get_revision,
    history,
    list_alerts,
    save_revision,
    translation_status,
)
from mailer.alerts.studio import check_revision, preview, save_language, start_from_statement
from mailer.assemble import composer_for
from mailer.blasts import create_blast, send_now
from mailer.check import check_blast
from mailer.compose.alert import Recipient
from mailer.config import Settings
from mailer.errors import InvalidState, NotFound, TemplateProblem
from mailer.report import blast_report
from mailer.store import Blast, Database, Event
from mailer.store.models import AlertFormat
from tests.conftest import REPO, make_settings
from tests.factories import Person, add_people
from tests.processes import run_mailer, write_config
from tests.smtpserver import SmtpTestServer

FOLDER = REPO / "templates" / "executive-orders"
STATEMENT = Path(__file__).with_name("data") / "statement.txt"
EN = LanguageText(
    "{{ supporter.first_name or 'Friend' }}, act now",
    "One line for the inbox.",
    'Dear {{ supporter.first_name or "friend" }},\n\nThe orders are cruel.\n\n=> [Act now]\n',
)
ES = LanguageText(
    "{{ supporter.first_name or 'Hola' }}, actúa",
    "Una línea.",
    "Hola {{ supporter.first_name }}:\n\nLas órdenes son crueles.\n\n=> [Actúa ahora]\n",
)


def clock(minutes: int) -> datetime:
    return datetime(2026, 1, 20, 17, 0, tzinfo=UTC) + timedelta(minutes=minutes)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_every_save_is_a_revision_with_author_time_and_an_audit_event(db: Database) -> None:
    first = save_revision(db, "orders", {"en": EN}, author="ana", now=lambda: clock(0))
    second = save_revision(
        db, "orders", {"en": EN, "es": ES}, author="bo", based_on=1, now=lambda: clock(5)
    )
    assert (first.number, second.number) == (1, 2)
    assert [(r.number, r.author, r.created_at) for r in history(db, "orders")] == [
        (1, "ana", clock(0)),
        (2, "bo", clock(5)),
    ]
    assert get_revision(db, "orders", 1).texts == {"en": EN}
    assert get_revision(db, "orders").languages == ["en", "es"]
    assert "+[es] subject: {{ supporter.first_name or 'Hola' }}, actúa" in diff(db, "orders", 1, 2)
    with db.session() as session:
        events = session.exec(select(Event).where(Event.action == "alert.saved")).all()
    assert [(e.actor, e.detail["revision"]) for e in events] == [("ana", 1), ("bo", 2)]
    [summary] = list_alerts(db)
    assert (summary.name, summary.revision, summary.languages) == ("orders", 2, ["en", "es"])


def test_a_save_based_on_an_old_revision_is_refused_and_nothing_is_stored(db: Database) -> None:
    save_revision(db, "orders", {"en": EN}, author="ana")
    save_revision(db, "orders", {"en": EN}, author="bo", based_on=1)
    with pytest.raises(InvalidState, match="at revision 2 now, not 1"):
        save_revision(db, "orders", {"en": ES}, author="ana", based_on=1)
    with pytest.raises(InvalidState, match="default language 'en' has no text"):
        save_revision(db, "orders", {"es": ES}, author="ana")
    with pytest.raises(InvalidState, match="not a language code"):
        save_revision(db, "orders", {"en": EN, "Spanish!": ES}, author="ana")
    with pytest.raises(InvalidState, match="not an alert name"):
        save_revision(db, "../etc", {"en": EN}, author="ana")
    assert [r.number for r in history(db, "orders")] == [1, 2]
    with pytest.raises(NotFound, match="no alert 'nothing'"):
        get_revision(db, "nothing")


def test_translations_missing_or_out_of_date_against_the_default_language(db: Database) -> None:
    save_revision(db, "orders", {"en": EN, "es": ES}, author="a")  # 1
    assert {s.language: s.state for s in translation_status(db, "orders", ["fr"])} == {
        "en": "default",
        "es": "current",
        "fr": "missing",
    }
    changed = LanguageText(EN.subject, EN.preheader, EN.body + "\nOne more line.\n")
    save_revision(db, "orders", {"en": changed, "es": ES}, author="a")  # 2: en changed
    [_, es] = translation_status(db, "orders")
    assert (es.state, es.changed_in, es.default_changed_in) == ("out-of-date", 1, 2)
    save_language(
        db, "orders", "es", LanguageText(ES.subject, "Nueva.", ES.body), author="b", based_on=2
    )  # 3: es caught up
    assert {s.language: s.state for s in translation_status(db, "orders")}["es"] == "current"
    save_revision(db, "orders", {"en": changed}, author="a")  # 4: es dropped
    assert {s.language: s.state for s in translation_status(db, "orders")}["es"] == "missing"


def test_the_shipped_folder_round_trips_byte_for_byte(db: Database, tmp_path: Path) -> None:
    revision = import_folder(db, FOLDER, layouts=REPO / "templates", author="cli")
    assert revision.format is AlertFormat.FOLDER
    assert sorted(revision.files) == ["petition.toml", "template.toml"]
    export_alert(db, "executive-orders", tmp_path / "out")
    assert files_of(tmp_path / "out") == files_of(FOLDER)
    with pytest.raises(InvalidState, match="not empty"):
        export_alert(db, "executive-orders", tmp_path / "out")


def test_a_folder_with_crlf_lines_and_a_changed_subject(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "eo"
    shutil.copytree(FOLDER, folder)
    en_txt = folder / "en.txt"
    en_txt.write_bytes(en_txt.read_bytes().replace(b"\n", b"\r\n"))
    import_folder(db, folder, layouts=REPO / "templates", author="cli")
    export_alert(db, "eo", tmp_path / "out")
    assert files_of(tmp_path / "out") == files_of(folder)
    # Editing the subject in the database rewrites template.toml, keeping the bodies.
    current = get_revision(db, "eo")
    en = current.texts["en"]
    save_language(
        db,
        "eo",
        "en",
        LanguageText("New subject", en.preheader, en.body, en.text),
        author="web",
        based_on=1,
    )
    export_alert(db, "eo", tmp_path / "again")
    assert 'subject = "New subject"' in (tmp_path / "again" / "template.toml").read_text()
    assert (tmp_path / "again" / "en.txt").read_bytes() == en_txt.read_bytes()


def test_a_broken_folder_is_refused_naming_the_file(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(FOLDER, folder)
    (folder / "es.txt").unlink()
    with pytest.raises(TemplateProblem, match=r"es\.txt: missing"):
        import_folder(db, folder, layouts=REPO / "templates", author="cli")
    shutil.copy(FOLDER / "es.txt", folder / "es.txt")
    (folder / "en.html").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(TemplateProblem, match=r"en\.html: not UTF-8"):
        import_folder(db, folder, layouts=REPO / "templates", author="cli")
    (folder / "en.html").write_text("{{ supporter.nickname }}", "utf-8")
    with pytest.raises(TemplateProblem, match="nickname"):
        import_folder(db, folder, layouts=REPO / "templates", author="cli")
    assert list_alerts(db) == []


def test_a_markdown_alert_exports_and_imports_as_markdown(db: Database, tmp_path: Path) -> None:
    save_revision(db, "orders", {"en": EN, "es": ES}, author="a", description="Orders")
    export_alert(db, "orders", tmp_path / "out")
    assert sorted(files_of(tmp_path / "out")) == ["en.md", "es.md", "template.toml"]
    assert 'format = "markdown"' in (tmp_path / "out" / "template.toml").read_text()
    again = import_folder(db, tmp_path / "out", layouts=REPO / "templates", author="b")
    assert again.format is AlertFormat.MARKDOWN
    assert again.texts == get_revision(db, "orders", 1).texts


def test_a_blast_pins_its_revision_and_sends_it_after_later_edits(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(
        db, "members", [Person("ana@example.org", "Ana"), Person("ines@example.org", "Inés", "es")]
    )
    first = save_revision(db, "orders", {"en": EN, "es": ES}, author="a")
    blast = create_blast(db, settings, name="b", template="orders", list_names=["members"])
    assert blast.alert_revision_id == first.id
    edited = LanguageText(EN.subject, EN.preheader, "Edited later.\n\n=> [Act]\n")
    save_revision(db, "orders", {"en": edited, "es": ES}, author="a")
    assert blast.id is not None
    assert [p for p in check_blast(db, settings, blast.id) if p.is_error] == []
    preview_now = composer_for(db, settings, blast).render(Recipient("x@example.org"), "u")
    assert "The orders are cruel." in preview_now.html and "Edited" not in preview_now.html
    send_now(db, settings, blast.id)
    assert blast_report(db, blast.id)["alert_revision"] == 1
    [ana] = smtp_server.handler.to("ana@example.org")
    [ines] = smtp_server.handler.to("ines@example.org")
    html = ana.message().get_body(("html",))
    assert html is not None
    assert "The orders are cruel." in html.get_content()
    assert ana.message()["Subject"] == "Ana, act now"
    assert ines.message()["Subject"] == "Inés, actúa"
    text = ines.message().get_body(("plain",))
    assert text is not None
    assert "Actúa ahora:\nhttp://127.0.0.1:8000/c/" in text.get_content().replace("\r\n", "\n")


def test_a_stored_alert_wins_over_a_folder_of_the_same_name(db: Database, tmp_path: Path) -> None:
    settings = make_settings(templates=REPO / "templates")
    add_people(db, "members", [Person("ana@example.org", "Ana")])
    folder_blast = create_blast(
        db, settings, name="from folder", template="executive-orders", list_names=["members"]
    )
    assert folder_blast.alert_revision_id is None
    save_revision(db, "executive-orders", {"en": EN}, author="a")
    stored_blast = create_blast(
        db, settings, name="from db", template="executive-orders", list_names=["members"]
    )
    assert stored_blast.alert_revision_id is not None
    who = Recipient("x@example.org", first_name="Ana")
    assert "The orders are cruel." in composer_for(db, settings, stored_blast).render(who, "u").html
    # The blast made before the alert was stored keeps its folder.
    with db.session() as session:
        kept = session.get(Blast, folder_blast.id)
        assert kept is not None
    assert "two executive orders" in composer_for(db, settings, kept).render(who, "u").html


def test_preview_and_check_for_the_studio(db: Database, tmp_path: Path) -> None:
    settings = make_settings()
    add_people(db, "members", [Person("zoe@example.org", "<b>Zoë</b>", "es")])
    revision = start_from_statement(db, "statement", STATEMENT.read_text("utf-8"), author="ana")
    assert revision.number == 1 and revision.default_language == "en"
    shown = preview(db, settings, "statement")
    assert shown.subject == "We Rise Up for Immigrant and Refugee Justice"
    assert "Dear Alex," in shown.html and "Send a message to the White House" in shown.html
    real = preview(db, settings, "statement", supporter_email="ZOE@example.org", language="en")
    assert "Dear &lt;b&gt;Zoë&lt;/b&gt;," in real.html
    findings = check_revision(db, settings, "statement", wanted_languages=["es"])
    assert [(f.code, f.language) for f in findings] == [("translation-missing", "es")]
    # A deliberately undefined variable is flagged at its line, in its language.
    body = revision.texts["en"].body.replace("Today Donald", "Today {{ supporter.nick }} Donald")
    save_language(
        db,
        "statement",
        "en",
        LanguageText(revision.texts["en"].subject, "p", body),
        author="ana",
        based_on=1,
    )
    [error] = [f for f in check_revision(db, settings, "statement") if f.is_error]
    assert (error.code, error.language, error.part, error.line) == ("template", "en", "body", 5)
    with pytest.raises(TemplateProblem, match="line 5"):
        preview(db, settings, "statement")
    with pytest.raises(NotFound):
        preview(db, settings, "statement", number=1, supporter_email="nobody@example.org")


def test_the_template_commands(tmp_path: Path) -> None:
    config = write_config(tmp_path, database_url="sqlite:///m.db", smtp_port=None)

    def mailer(*args: str) -> subprocess.CompletedProcess[str]:
        return run_mailer(tmp_path, *args, config=config)

    imported = mailer("template", "import", str(FOLDER), "--note", "first")
    assert imported.returncode == 0, imported.stderr
    assert "alert 'executive-orders' revision 1 saved (folder; en, es)" in imported.stdout
    listed = mailer("template", "list").stdout
    assert listed.startswith("executive-orders  revision 1  folder  en,es  Executive orders")
    shown = mailer("template", "show", "executive-orders").stdout
    assert "[es] subject: {{ supporter.first_name or 'Hola' }}" in shown
    assert "translation es: current" in shown
    assert "cli" in mailer("template", "show", "executive-orders", "--history").stdout
    out = tmp_path / "out"
    assert mailer("template", "export", "executive-orders", str(out)).returncode == 0
    assert files_of(out) == files_of(FOLDER)
    missing = mailer("template", "show", "nothing")
    assert missing.returncode == 1
    assert "error: no alert 'nothing' in the database" in missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    refused = mailer("template", "import", str(broken))
    assert refused.returncode == 1 and "no template.toml" in refused.stderr


def test_markdown_is_compiled_once_per_revision_not_per_recipient(
    db: Database, settings: Settings, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer.alerts import compiled, markdown

    calls: list[str] = []
    real = markdown.compile_markdown

    def counting(source: str) -> markdown.Compiled:
        calls.append(source)
        return real(source)

    monkeypatch.setattr(compiled, "compile_markdown", counting)
    compiled.compiled_revisions.clear()  # an earlier test may have compiled the same text
    add_people(db, "members", [Person(f"p{i}@example.org", f"P{i}") for i in range(20)])
    save_revision(db, "orders", {"en": EN, "es": ES}, author="a")
    blast = create_blast(db, settings, name="b", template="orders", list_names=["members"])
    assert blast.id is not None
    send_now(db, settings, blast.id)
    check_blast(db, settings, blast.id)
    assert len(smtp_server.handler.received) == 20
    # once per language, when the blast was created; its check and its sending reuse it
    assert sorted(calls) == sorted([EN.body, ES.body])


def test_a_stored_folder_includes_its_own_files_not_the_disk(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    folder = root / "eo"
    shutil.copytree(FOLDER, folder)
    (folder / "signoff.html").write_text("<p>Stored sign-off</p>\n", "utf-8")
    en = folder / "en.html"
    en.write_text(
        en.read_text("utf-8").replace(
            "{% endblock %}", '{% include "eo/signoff.html" %}\n{% endblock %}'
        ),
        "utf-8",
    )
    settings = make_settings(templates=root)
    import_folder(db, folder, layouts=root, author="cli")
    (folder / "signoff.html").write_text("<p>Changed on disk</p>\n", "utf-8")
    add_people(db, "members", [Person("ana@example.org", "Ana")])
    blast = create_blast(db, settings, name="b", template="eo", list_names=["members"])
    html = composer_for(db, settings, blast).render(Recipient("x@example.org"), "u").html
    assert "Stored sign-off" in html and "Changed on disk" not in html


def test_two_organizers_saving_at_once_one_wins_and_one_is_told(db: Database) -> None:
    save_revision(db, "orders", {"en": EN}, author="a")
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def save(author: str) -> None:
        barrier.wait()
        try:
            save_revision(
                db,
                "orders",
                {"en": ES if author == "es" else EN, "es": ES},
                author=author,
                based_on=1,
            )
            outcomes[author] = "saved"
        except InvalidState as exc:
            outcomes[author] = str(exc)

    threads = [threading.Thread(target=save, args=(who,)) for who in ("ana", "bo")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v == "saved" for v in outcomes.values()) == [False, True]
    [refusal] = [v for v in outcomes.values() if v != "saved"]
    assert "save" in refusal and "orders" in refusal
    assert [r.number for r in history(db, "orders")] == [1, 2]

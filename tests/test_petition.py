"""Petitions: create and link from the CLI, the petition report, exports, follow-ups."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from mailer.alerts.folders import import_folder
from mailer.alerts.studio import start_from_statement
from mailer.blasts import create_blast, create_follow_up, send_now
from mailer.config import Settings
from mailer.errors import InvalidState, NotFound, TemplateProblem
from mailer.petitions.export import delivery_document, write_csv
from mailer.petitions.report import petition_report
from mailer.petitions.signing import sign
from mailer.petitions.store import create_petition, refresh_texts
from mailer.report import blast_report
from mailer.schedule.planner import start_due
from mailer.store import Blast, Database, Delivery, Supporter, open_database
from mailer.store.models import Petition, Signature, utcnow
from tests.conftest import REPO, make_settings
from tests.factories import Person, people
from tests.petitionkit import TARGET, send_petition_blast
from tests.smtpserver import SmtpTestServer
from tests.test_cli import mailer, write_config

DAY1 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def petition_in(db: Database, settings: Settings, **kwargs: object) -> Petition:
    options: dict[str, object] = {"name": "executive-orders", "goal": 4, "target_url": TARGET}
    options.update(kwargs)
    return create_petition(db, settings, **options)  # type: ignore[arg-type]


def add_signature(
    db: Database, petition: Petition, email: str, *, at: datetime = DAY1, **fields: object
) -> bool:
    values: dict[str, object] = {
        "first_name": "Sam",
        "last_name": "",
        "zip_code": "",
        "region": "",
        "language": "en",
        "message": "",
        "source": "public",
    }
    values.update(fields)
    with db.session() as session:
        return sign(session, petition, email=email, now=at, **values)  # type: ignore[arg-type]


# -- creating and linking ---------------------------------------------------


def test_create_reads_the_texts_of_every_language(db: Database) -> None:
    petition = petition_in(db, make_settings())
    assert petition.slug == "executive-orders" and petition.goal == 4
    assert sorted(petition.texts) == ["en", "es"]
    assert petition.texts["es"]["message"].startswith("Señor Presidente")
    assert petition.opt_in_list == "petition-executive-orders"


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"goal": 0}, InvalidState, "--goal"),
        ({"target_url": "javascript:alert(1)"}, InvalidState, "target URL"),
        ({"name": "eo", "template": "nope"}, TemplateProblem, "no petition.toml"),
        ({"slug": "***"}, InvalidState, "slug"),
    ],
)
def test_create_refuses_bad_input(
    db: Database, kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        petition_in(db, make_settings(), **kwargs)


def test_a_broken_petition_file_is_named_with_its_language(db: Database, tmp_path: Path) -> None:
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    path = tmp_path / "templates" / "executive-orders" / "petition.toml"
    path.write_text('[languages.en]\ntitle = "T"\nintro = "I"\n', "utf-8")
    with pytest.raises(TemplateProblem, match=r"petition\.toml: \[languages\.en\] needs a non"):
        petition_in(db, make_settings(templates=tmp_path / "templates"))


def test_refresh_reads_the_edited_texts(db: Database, tmp_path: Path) -> None:
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    settings = make_settings(templates=tmp_path / "templates")
    petition_in(db, settings)
    path = tmp_path / "templates" / "executive-orders" / "petition.toml"
    path.write_text('[languages.en]\ntitle = "T2"\nintro = "I2"\nmessage = "M2"\n', "utf-8")
    refreshed = refresh_texts(db, settings, "executive-orders")
    assert refreshed.texts == {"en": {"title": "T2", "intro": "I2", "message": "M2"}}
    with db.session() as session:
        stored = session.exec(select(Petition)).one()
    assert stored.texts == refreshed.texts


def test_create_takes_the_texts_of_a_stored_alert(db: Database, tmp_path: Path) -> None:
    """Like `blast create --template`, `petition create --template` names a stored alert
    or a folder; the stored alert wins, its petition.toml read from the database."""
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    settings = make_settings(templates=tmp_path / "templates")
    folder = tmp_path / "templates" / "executive-orders"
    import_folder(db, folder, layouts=tmp_path / "templates", author="test", name="orders")
    edited = (folder / "petition.toml").read_text("utf-8").replace("Tell ", "Urge ", 1)
    (folder / "petition.toml").write_text(edited, "utf-8")
    import_folder(db, folder, layouts=tmp_path / "templates", author="test", name="orders")
    shutil.rmtree(folder)  # nothing left on disk: the texts can only come from the database
    petition = petition_in(db, settings, name="Orders petition", template="orders")
    assert sorted(petition.texts) == ["en", "es"]
    assert petition.texts["en"]["title"].startswith("Urge ")  # the newest revision's
    assert petition.template == "orders"
    assert refresh_texts(db, settings, "Orders petition").texts == petition.texts
    start_from_statement(db, "written", "A statement.\n\nClick here to act.", author="test")
    with pytest.raises(TemplateProblem, match=r"alert 'written' .*has no petition\.toml"):
        petition_in(db, settings, name="Written", template="written")


def test_names_and_slugs_are_unique(db: Database) -> None:
    settings = make_settings()
    petition_in(db, settings)
    with pytest.raises(InvalidState, match="exists already"):
        petition_in(db, settings)
    with pytest.raises(InvalidState, match="slug 'executive-orders' is taken"):
        petition_in(db, settings, name="Executive Orders", template="executive-orders")


def test_a_blast_linked_to_a_petition_takes_its_target_as_call_to_action(db: Database) -> None:
    settings = make_settings()
    petition = petition_in(db, settings, target_url="https://www.whitehouse.gov/contact/#form")
    from tests.factories import add_people

    add_people(db, "members", people(1))
    blast = create_blast(
        db,
        settings,
        name="a",
        template="executive-orders",
        list_names=["members"],
        petition="executive-orders",
    )
    assert blast.petition_id == petition.id
    assert blast.cta_url == "https://www.whitehouse.gov/contact/#form"
    with pytest.raises(NotFound, match="no petition 'nope'"):
        create_blast(
            db,
            settings,
            name="b",
            template="executive-orders",
            list_names=["members"],
            petition="nope",
        )


def test_cli_create_list_and_link(tmp_path: Path, smtp_server: SmtpTestServer) -> None:
    config = write_config(tmp_path, smtp_server.port)
    lists = REPO / "lists" / "sample-supporters.csv"
    assert (
        mailer(tmp_path, "import", str(lists), "--list", "members", config=config).returncode == 0
    )
    created = mailer(
        tmp_path,
        "petition",
        "create",
        "executive-orders",
        "--goal",
        "500",
        "--target-url",
        TARGET,
        config=config,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == (
        "petition 1 created: https://act.example.org/p/executive-orders"
    )
    listed = mailer(tmp_path, "petition", "list", config=config)
    assert "executive-orders" in listed.stdout and "500" in listed.stdout
    blast = mailer(
        tmp_path,
        "blast",
        "create",
        "eo",
        "-t",
        "executive-orders",
        "-l",
        "members",
        "--petition",
        "executive-orders",
        config=config,
    )
    assert blast.returncode == 0, blast.stderr
    wrong = mailer(
        tmp_path,
        "blast",
        "create",
        "x",
        "-t",
        "executive-orders",
        "-l",
        "members",
        "--petition",
        "nope",
        config=config,
    )
    assert wrong.returncode == 1 and "no petition 'nope'" in wrong.stderr
    follow_up = mailer(
        tmp_path,
        "blast",
        "follow-up",
        "eo",
        "--after",
        "48h",
        "--audience",
        "no-action",
        config=config,
    )
    assert follow_up.returncode == 0, follow_up.stderr
    plain = mailer(
        tmp_path,
        "blast",
        "create",
        "plain",
        "-t",
        "executive-orders",
        "-l",
        "members",
        config=config,
    )
    assert plain.returncode == 0
    refused = mailer(
        tmp_path,
        "blast",
        "follow-up",
        "plain",
        "--after",
        "1h",
        "--audience",
        "no-action",
        config=config,
    )
    assert refused.returncode == 1 and "not linked to a petition" in refused.stderr
    bad_goal = mailer(tmp_path, "petition", "create", "other", "--goal", "0", config=config)
    assert bad_goal.returncode == 1 and "--goal" in bad_goal.stderr
    report = mailer(tmp_path, "report", "eo", "--json", config=config)
    figures = json.loads(report.stdout)
    assert figures["petition"] == "executive-orders"
    assert (figures["actions"], figures["action_rate"], figures["actions_per_click"]) == (0, 0, 0)


# -- signing ----------------------------------------------------------------


def test_a_second_signature_from_the_alert_link_updates_it(db: Database) -> None:
    petition = petition_in(db, make_settings())
    assert add_signature(db, petition, "a@example.org", message="first", at=DAY1)
    assert not add_signature(
        db, petition, "a@example.org", message="second", at=DAY2, first_name="Alma", source="alert"
    )
    with db.session() as session:
        [row] = session.exec(select(Signature)).all()
    assert (row.message, row.first_name) == ("second", "Alma")
    assert (row.created_at, row.updated_at) == (DAY1, DAY2)


# -- the petition report ----------------------------------------------------


def test_petition_report(db: Database) -> None:
    petition = petition_in(db, make_settings())
    add_signature(db, petition, "a@example.org", zip_code="94612", at=DAY1)
    add_signature(db, petition, "b@example.org", zip_code="10001", language="es", at=DAY1)
    add_signature(db, petition, "c@example.org", zip_code="94103", opted_in=True, at=DAY2)
    add_signature(db, petition, "d@example.org", zip_code="", at=DAY2)
    add_signature(db, petition, "a@example.org", zip_code="94612", at=DAY2)  # an update
    report = petition_report(db, "executive-orders")
    assert report["signatures"] == 4 and report["goal"] == 4 and report["percent"] == 100.0
    assert report["by_day"] == [
        {"day": "2026-11-27", "signatures": 2, "total": 2},
        {"day": "2026-11-28", "signatures": 2, "total": 4},
    ]
    assert report["by_language"] == {"en": 3, "es": 1}
    assert report["by_region"] == {"CA": 2, "NY": 1, "unknown": 1}
    assert report["by_source"] == {"public": 4}
    assert report["opt_ins"] == 1


def test_cli_petition_report_and_exports(tmp_path: Path, smtp_server: SmtpTestServer) -> None:
    config = write_config(tmp_path, smtp_server.port)
    assert (
        mailer(
            tmp_path, "petition", "create", "executive-orders", "--goal", "10", config=config
        ).returncode
        == 0
    )
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with db.session() as session:
            petition = session.exec(select(Petition)).one()
        add_signature(
            db,
            petition,
            "a@example.org",
            first_name="Ana",
            zip_code="94612",
            message="Bienvenidos",
            language="es",
        )
    finally:
        db.dispose()
    report = mailer(tmp_path, "petition", "report", "executive-orders", "--json", config=config)
    assert json.loads(report.stdout)["by_region"] == {"CA": 1}
    table = mailer(tmp_path, "petition", "report", "executive-orders", config=config)
    assert "1 of 10 signatures (10.0%)" in table.stdout and "2026-11-27" in table.stdout
    exported = mailer(tmp_path, "petition", "export", "executive-orders", "--csv", config=config)
    assert exported.returncode == 0 and exported.stderr.strip() == "1 signatures"
    [row] = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert (row["first_name"], row["city"], row["message"]) == ("Ana", "Oakland", "Bienvenidos")
    assert "email" not in row
    out = tmp_path / "delivery.html"
    document = mailer(
        tmp_path,
        "petition",
        "export",
        "executive-orders",
        "--html",
        "-o",
        str(out),
        config=config,
    )
    assert document.returncode == 0, document.stderr
    assert "Ana" in out.read_text("utf-8") and "Oakland, CA 94612" in out.read_text("utf-8")


# -- exports -----------------------------------------------------------------


def test_csv_export_row_by_row(db: Database) -> None:
    petition = petition_in(db, make_settings())
    add_signature(
        db,
        petition,
        "a@example.org",
        first_name="Ana",
        last_name="Ruiz",
        zip_code="94612",
        message='Line one\nline two, "quoted"',
        language="es",
        source="alert",
        at=DAY1,
    )
    add_signature(
        db,
        petition,
        "b@example.org",
        first_name='=HYPERLINK("x")',
        zip_code="00000",
        message="-1+1",
        at=DAY2,
    )
    out = io.StringIO()
    assert write_csv(db, petition.id or 0, out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        [
            "signed_at",
            "first_name",
            "last_name",
            "city",
            "region",
            "zip",
            "message",
            "language",
            "source",
        ],
        [
            "2026-11-27T15:00:00+00:00",
            "Ana",
            "Ruiz",
            "Oakland",
            "CA",
            "94612",
            'Line one\nline two, "quoted"',
            "es",
            "alert",
        ],
        [
            "2026-11-28T09:30:00+00:00",
            '\'=HYPERLINK("x")',
            "",
            "",
            "",
            "00000",
            "'-1+1",
            "en",
            "public",
        ],
    ]
    with_email = io.StringIO()
    write_csv(db, "executive-orders", with_email, with_email=True)
    emails = [r["email"] for r in csv.DictReader(io.StringIO(with_email.getvalue()))]
    assert emails == ["a@example.org", "b@example.org"]


def test_delivery_document_lists_signers_escaped(db: Database) -> None:
    petition = petition_in(db, make_settings())
    add_signature(
        db,
        petition,
        "a@example.org",
        first_name="Ana",
        last_name="Ruiz",
        zip_code="94612",
        message="<script>x</script> welcome",
    )
    add_signature(db, petition, "b@example.org", first_name="Bo", zip_code="")
    html = delivery_document(db, "executive-orders", organization_name="Rights Network", now=DAY2)
    assert "<h1>Tell the White House: immigrants and refugees are welcome here</h1>" in html
    assert "2 signatures, delivered by Rights Network. Prepared 2026-11-28 09:30 UTC." in html
    assert '<td class="name">Ana Ruiz</td><td class="place">Oakland, CA 94612</td>' in html
    assert "&lt;script&gt;x&lt;/script&gt; welcome" in html and "<script>x" not in html
    assert '<td class="name">Bo</td><td class="place"></td>' in html
    assert "a@example.org" not in html


# -- follow-ups to those who did not act --------------------------------------


@pytest.mark.parametrize("starter", ["sender", "scheduler"])
def test_follow_up_to_those_who_did_not_act(
    db: Database, settings: Settings, smtp_server: SmtpTestServer, starter: str
) -> None:
    """Started by a sender, or by a scheduler that leaves the sending to workers."""
    group = people(4)
    sent = send_petition_blast(db, settings, smtp_server, group)
    with db.session() as session:
        original = session.get(Blast, sent.blast_id)
        p0 = session.exec(select(Supporter).where(Supporter.email == "p0@example.org")).one()
        d0 = session.exec(
            select(Delivery).where(
                Delivery.supporter_id == p0.id, Delivery.blast_id == sent.blast_id
            )
        ).one()
    assert original is not None
    # p0 acted through the alert, p1 on the public page with the same address.
    add_signature(
        db,
        sent.petition,
        "p0@example.org",
        source="alert",
        supporter_id=p0.id,
        blast_id=sent.blast_id,
        delivery_id=d0.id,
    )
    add_signature(db, sent.petition, "p1@example.org")
    follow_up = create_follow_up(
        db, settings, sent.blast_id, after=timedelta(0), name="nudge", audience="no-action"
    )
    assert follow_up.follow_up_audience == "no-action" and follow_up.petition_id == sent.petition.id
    assert follow_up.id is not None
    if starter == "scheduler":
        with db.session() as session:
            assert start_due(
                session, follow_up.id, now=utcnow(), dialect=db.engine.dialect.name, actor="test"
            )
    send_now(db, settings, follow_up.id)
    with db.session() as session:
        got = set(
            session.exec(
                select(Supporter.email)
                .join(Delivery, Delivery.supporter_id == Supporter.id)  # type: ignore[arg-type]
                .where(Delivery.blast_id == follow_up.id)
            ).all()
        )
    assert got == {"p2@example.org", "p3@example.org"}
    report = blast_report(db, sent.blast_id)
    assert report["actions"] == 1 and report["action_rate"] == 0.25


def test_no_action_follow_up_needs_a_petition(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    from tests.factories import add_people

    add_people(db, "members", [Person(email="x@example.org")])
    blast = create_blast(
        db, settings, name="plain", template="executive-orders", list_names=["members"]
    )
    with pytest.raises(InvalidState, match="not linked to a petition"):
        create_follow_up(
            db, settings, blast.id or 0, after=timedelta(hours=1), audience="no-action"
        )

"""The studio's pages: alerts from a statement, the editor, preview, check, test send,
the sending flow with its audience count and confirmation; roles, CSRF, audit and
hostile input. Against the whole app on a real socket and a real SMTP server, on
SQLite and PostgreSQL where data is involved."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlmodel import select

from mailer.alerts.sending import count_audience
from mailer.alerts.store import get_revision, history
from mailer.alerts.studio import check_revision, start_from_statement
from mailer.blasts import create_blast
from mailer.config import Settings
from mailer.send.audience import parse_segment, snapshot_of
from mailer.store import Blast, BlastStatus, Database, Event, Supporter, SupporterStatus
from mailer.store.models import utcnow
from mailer.supporters.suppression import suppress_address
from mailer.web.common import ADMIN_CSP, PREVIEW_CSP
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import REPO, make_settings
from tests.factories import Person, add_people, people
from tests.smtpserver import SmtpTestServer

SEED = (
    "We Rise Up for Immigrant and Refugee Justice\n\n"
    "Today two executive orders on immigration were signed.\n\n"
    "We will continue to work with our members, friends and allies.\n\n"
    "Click here to send a message to the White House\n\n"
    "Tell President Trump that you oppose these executive orders.\n"
)
ALERT = "orders"
EDIT = f"/admin/studio/alerts/{ALERT}"


@pytest.fixture
def site(db: Database, settings: Settings) -> Iterator[str]:
    add_people(db, "members", people(4))
    add_people(db, "members", [Person("ana@example.org", "Ana", language="es")])
    add_people(db, "others", [Person("p0@example.org", "P0"), Person("x@example.org", "X")])
    add_users(db)
    with serve(db, settings) as url:
        yield url


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(url: str, role: str = "organizer") -> tuple[httpx.Client, str]:
    """A client signed in as ``role`` (closed after the test) and its CSRF token."""
    c = httpx.Client(base_url=url, timeout=30)
    _OPEN.append(c)
    return c, sign_in(c, role)


def new_alert(c: httpx.Client, csrf: str, name: str = ALERT) -> httpx.Response:
    return c.post(
        "/admin/studio/new",
        data={"csrf": csrf, "name": name, "language": "en", "statement": SEED},
    )


def events(db: Database, action: str) -> list[Event]:
    with db.session() as session:
        return list(session.exec(select(Event).where(Event.action == action)))


# -- writing ---------------------------------------------------------------------------


def test_statement_becomes_a_draft_and_the_editor_saves_languages(db: Database, site: str) -> None:
    c, csrf = client(site)
    made = new_alert(c, csrf)
    assert made.status_code == 303
    assert made.headers["location"].startswith(EDIT)
    page = c.get(made.headers["location"])
    assert page.status_code == 200
    assert "saved from the statement" in page.text
    assert "Click here to send a message" in page.text or "=&gt; [" in page.text
    revision = get_revision(db, ALERT)
    assert revision.number == 1 and revision.author == "organizer"
    assert events(db, "alert.saved")[0].actor == "organizer"

    # A new language starts as a copy of the default one and is saved as revision 2.
    spanish = c.get(EDIT, params={"lang": "es"})
    assert "new: starts as a copy of en" in spanish.text
    saved = c.post(
        EDIT,
        data={
            "csrf": csrf,
            "lang": "es",
            "based_on": "1",
            "subject": "Nos levantamos",
            "preheader": "Actúa hoy",
            "body": "Hola {{ supporter.first_name or 'amiga' }}:\n\n=> [Escribe hoy]\n",
            "text": "",
        },
    )
    assert saved.status_code == 303, saved.text
    assert get_revision(db, ALERT).texts["es"].subject == "Nos levantamos"
    assert c.get(saved.headers["location"]).text.count("Saved as revision 2 (es)") == 1

    # The English text changes: Spanish is out of date, the tab says so.
    english = get_revision(db, ALERT).texts["en"]
    c.post(
        EDIT,
        data={
            "csrf": csrf,
            "lang": "en",
            "based_on": "2",
            "subject": "A new subject",
            "preheader": english.preheader,
            "body": english.body,
            "text": "",
        },
    )
    page = c.get(EDIT)
    assert re.search(r"es\s*<span class=\"state out-of-date\">", page.text)
    assert "To translate or bring up to date: es" in page.text
    history_page = c.get(f"{EDIT}/history", params={"old": "2", "new": "3"})
    assert (
        "-[en] subject:" in history_page.text
        and "+[en] subject: A new subject" in history_page.text
    )


def test_a_stale_save_is_refused_and_keeps_the_typed_text(db: Database, site: str) -> None:
    c, csrf = client(site)
    new_alert(c, csrf)
    other, other_csrf = client(site, "admin")
    english = get_revision(db, ALERT).texts["en"]
    form = {
        "lang": "en",
        "based_on": "1",
        "subject": english.subject,
        "preheader": english.preheader,
        "body": english.body,
        "text": "",
    }
    assert (
        other.post(EDIT, data={**form, "csrf": other_csrf, "subject": "Theirs"}).status_code == 303
    )
    mine = c.post(EDIT, data={**form, "csrf": csrf, "body": "My own careful words.\n\n=> [Act]"})
    assert mine.status_code == 409
    assert "someone saved it meanwhile" in mine.text
    assert "My own careful words." in mine.text  # nothing typed is lost
    assert 'name="based_on" value="2"' in mine.text  # saving again is deliberate
    assert get_revision(db, ALERT).texts["en"].subject == "Theirs"
    again = c.post(
        EDIT,
        data={**form, "csrf": csrf, "based_on": "2", "body": "My own careful words.\n\n=> [Act]"},
    )
    assert again.status_code == 303
    assert get_revision(db, ALERT).texts["en"].body.startswith("My own careful words.")


def test_roles_csrf_and_missing_alerts(db: Database, site: str) -> None:
    c, csrf = client(site)
    new_alert(c, csrf)
    viewer, viewer_csrf = client(site, "viewer")
    assert viewer.get("/admin/studio").status_code == 200
    page = viewer.get(EDIT)
    assert page.status_code == 200 and "readonly" in page.text and "Save en" not in page.text
    assert viewer.get(f"{EDIT}/preview").status_code == 200
    assert viewer.get("/admin/studio/new").status_code == 403
    assert new_alert(viewer, viewer_csrf, "viewer-alert").status_code == 403
    refused = viewer.post(
        EDIT, data={"csrf": viewer_csrf, "lang": "en", "based_on": "1", "subject": "x"}
    )
    assert refused.status_code == 403
    assert (
        viewer.post(f"{EDIT}/test", data={"csrf": viewer_csrf, "to": "v@example.org"}).status_code
        == 403
    )
    assert viewer.get("/admin/studio/send").status_code == 403
    assert (
        c.post(
            "/admin/studio/new", data={"csrf": "forged", "name": "x", "statement": "y"}
        ).status_code
        == 403
    )
    assert len(history(db, ALERT)) == 1
    assert c.get("/admin/studio/alerts/nothing-here").status_code == 404
    assert c.get("/admin/studio/alerts/nothing-here/preview").status_code == 404
    assert c.get("/admin/studio/alerts/nothing-here/history").status_code == 404
    with httpx.Client(base_url=site) as anonymous:
        assert anonymous.get("/admin/studio").status_code == 303


def test_bad_input_gets_clear_messages(db: Database, site: str) -> None:
    c, csrf = client(site)
    empty = c.post("/admin/studio/new", data={"csrf": csrf, "name": "a", "statement": " "})
    assert empty.status_code == 400 and "paste the statement" in empty.text
    assert new_alert(c, csrf).status_code == 303
    twice = new_alert(c, csrf)
    assert twice.status_code == 400 and "exists already" in twice.text
    bad_name = new_alert(c, csrf, "../etc")
    assert bad_name.status_code == 400 and "is not an alert name" in bad_name.text
    bad_lang = c.post(EDIT, data={"csrf": csrf, "lang": "<script>", "based_on": "1"})
    assert bad_lang.status_code == 400 and "is not a language code" in bad_lang.text
    assert "<script>" not in bad_lang.text
    assert c.get(EDIT, params={"lang": "not a language"}).status_code == 400


# -- preview, check, test send ----------------------------------------------------------


def test_preview_frames_text_and_supporter(db: Database, site: str) -> None:
    c, csrf = client(site)
    new_alert(c, csrf)
    page = c.get(f"{EDIT}/preview")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == ADMIN_CSP
    frames = re.findall(r"<iframe [^>]*>", page.text)
    assert len(frames) == 2
    assert all('sandbox="allow-same-origin"' in f for f in frames)
    assert any("phone" in f for f in frames) and any("desktop" in f for f in frames)
    assert "iframe.preview.phone { width: 375px" in c.get("/admin/static/admin.css").text
    src = re.search(r'src="([^"]+)"', frames[0])
    assert src is not None
    frame = c.get(src.group(1).replace("&amp;", "&"))
    assert frame.headers["content-security-policy"] == PREVIEW_CSP
    assert "Alex" in frame.text and "1 Example Way" in frame.text
    assert "Plain-text part" in page.text and "Alex" in page.text
    as_ana = c.get(f"{EDIT}/preview", params={"email": "ana@example.org", "lang": "en"})
    assert "Ana" in as_ana.text
    nobody = c.get(f"{EDIT}/preview", params={"email": "nobody@example.org"})
    assert nobody.status_code == 200 and "no supporter" in nobody.text


def test_check_points_at_the_line_and_test_send_arrives(
    db: Database, site: str, smtp_server: SmtpTestServer
) -> None:
    c, csrf = client(site)
    new_alert(c, csrf)
    english = get_revision(db, ALERT).texts["en"]
    body = (
        "Hello {{ supporter.first_name }},\n\nAs {{ supporter.nickname }} said.\n\n=> [Act now]\n"
    )
    c.post(
        EDIT,
        data={
            "csrf": csrf,
            "lang": "en",
            "based_on": "1",
            "subject": "x" * 90,
            "preheader": english.preheader,
            "body": body,
            "text": "",
        },
    )
    page = c.get(EDIT)
    assert "nickname" in page.text
    assert re.search(r"body, line 3:", page.text), page.text
    fixed = c.post(
        EDIT,
        data={
            "csrf": csrf,
            "lang": "en",
            "based_on": "2",
            "subject": "x" * 90,
            "preheader": english.preheader,
            "body": body.replace("supporter.nickname", "supporter.first_name"),
            "text": "",
        },
    )
    assert fixed.status_code == 303
    page = c.get(EDIT)
    assert "nickname" not in page.text
    assert "the subject has 90 characters" in page.text
    preview = c.get(f"{EDIT}/preview", params={"lang": "es"})
    assert "error" in preview.text and "no es text" in preview.text

    sent = c.post(
        f"{EDIT}/test",
        data={"csrf": csrf, "to": "me@example.org, you@example.org", "rev": "1", "lang": "en"},
    )
    assert sent.status_code == 303
    assert "Test sent" in c.get(sent.headers["location"]).text
    got = smtp_server.handler.to("me@example.org")
    assert len(got) == 1 and got[0].message()["Subject"].startswith("[TEST] ")
    assert got[0].message()["X-Mailer-Test"] == "yes"
    # Not a blast yet: no link rows to count clicks by, so the links go straight to their target.
    plain = got[0].message().get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "https://www.whitehouse.gov/contact/" in text and "/c/" not in text
    assert "/u/" in text  # the footer's unsubscribe link is there
    assert smtp_server.handler.to("you@example.org")
    (event,) = events(db, "alert.test_sent")
    assert event.actor == "organizer" and event.detail["revision"] == 1
    assert "revision 1 was test-sent" in c.get(f"{EDIT}/preview", params={"rev": "1"}).text.lower()
    bad = c.post(f"{EDIT}/test", data={"csrf": csrf, "to": "not an address"})
    assert bad.status_code == 400 and "is not an email address" in bad.text


# -- sending flow ------------------------------------------------------------------------


def test_audience_count_matches_the_snapshot_rules(db: Database, site: str) -> None:
    assert count_audience(db, ["members"], None) == 5
    assert count_audience(db, ["members", "others"], None) == 6  # p0 once
    assert count_audience(db, ["members"], {"language": ["es"]}) == 1
    with db.session() as session:
        p1 = session.exec(select(Supporter).where(Supporter.email == "p1@example.org")).one()
        p1.status = SupporterStatus.UNSUBSCRIBED
        session.add(p1)
        suppress_address(session, "p2@example.org", reason="test", actor="test", now=utcnow())
    assert count_audience(db, ["members"], None) == 3
    c, _ = client(site, "viewer")
    got = c.get("/admin/studio/count", params=[("lists", "members"), ("lists", "others")])
    assert got.json() == {"count": 4}
    es = c.get("/admin/studio/count", params={"lists": "members", "segment": "language=es"})
    assert es.json() == {"count": 1}
    bad = c.get("/admin/studio/count", params={"lists": "members", "segment": "shoe=9"})
    assert bad.status_code == 400 and "not known" in bad.json()["error"]


def test_the_counted_audience_is_the_audience_the_blast_snapshots(
    db: Database, site: str, settings: Settings
) -> None:
    """Whatever the lists and segment, the count the pages show is the number of
    deliveries the blast's snapshot then creates: statuses, suppressed addresses
    (of supporters or not), people on several lists, segments by language, region
    and custom field."""
    add_people(
        db,
        "members",
        [
            Person("gone@example.org", status=SupporterStatus.UNSUBSCRIBED),
            Person("bounced@example.org", language="es", status=SupporterStatus.BOUNCED),
            Person("pending@example.org", status=SupporterStatus.PENDING),
            Person("sup-es@example.org", language="es"),
            Person("carla@example.org", language="es"),
        ],
    )
    add_people(db, "others", [Person("carla@example.org"), Person("ana@example.org")])
    with db.session() as session:
        for email, region, county in (
            ("carla@example.org", "CA", "Cook"),
            ("p3@example.org", "CA", "Lake"),
            ("x@example.org", "NY", "Cook"),
        ):
            found = session.exec(select(Supporter).where(Supporter.email == email)).one()
            found.region, found.custom = region, {"county": county}
            session.add(found)
        for address in ("sup-es@example.org", "p2@example.org", "nobody@example.org"):
            suppress_address(session, address, reason="test", actor="test", now=utcnow())
    cases: list[tuple[list[str], str]] = [
        (["members"], ""),
        (["others"], ""),
        (["members", "others"], ""),
        (["members", "others"], "language=es"),
        (["members"], "language=es,language=en"),
        (["members", "others"], "region=CA"),
        (["members", "others"], "custom.county=Cook"),
        (["members", "others"], "language=es,region=CA"),
        (["members"], "language=fr"),
    ]
    c, csrf = client(site)
    new_alert(c, csrf)
    counts = []
    for number, (lists, segment) in enumerate(cases):
        shown = c.get("/admin/studio/count", params={"lists": lists, "segment": segment})
        assert shown.status_code == 200, shown.text
        blast = create_blast(
            db,
            settings,
            name=f"case {number}",
            template=ALERT,
            list_names=lists,
            segment=parse_segment([t for t in segment.split(",") if t]),
        )
        confirm = c.get(f"/admin/studio/blasts/{blast.id}")
        with db.session() as session:
            made = snapshot_of(session, blast, utcnow(), dialect=db.engine.dialect.name)
        assert shown.json() == {"count": made}, (lists, segment)
        assert f'class="audience">{made} supporters<' in confirm.text, (lists, segment)
        counts.append(made)
    # the cases do tell the rules apart
    assert counts == [5, 4, 6, 2, 5, 2, 2, 1, 0], counts
    assert c.get("/admin/studio/count", params={"lists": "nobody"}).json() == {"count": 0}


def test_send_flow_counts_confirms_and_starts(
    db: Database, site: str, smtp_server: SmtpTestServer
) -> None:
    c, csrf = client(site)
    new_alert(c, csrf)
    form = c.get("/admin/studio/send", params={"alert": ALERT})
    assert form.status_code == 200 and '<script src="/admin/static/studio.js">' in form.text
    assert c.get("/admin/static/studio.js").status_code == 200
    counted = c.post(
        "/admin/studio/send",
        data={
            "csrf": csrf,
            "alert": ALERT,
            "lists": ["members", "others"],
            "segment": "",
            "do": "count",
        },
    )
    assert counted.status_code == 200 and "6 supporters" in counted.text
    assert 'value="members"\n      checked' in counted.text or "checked" in counted.text
    made = c.post(
        "/admin/studio/send",
        data={
            "csrf": csrf,
            "alert": ALERT,
            "name": "Orders 1",
            "lists": ["members"],
            "segment": "",
            "do": "continue",
        },
    )
    assert made.status_code == 303, made.text
    confirm_path = made.headers["location"].split("?")[0]
    with db.session() as session:
        blast = session.exec(select(Blast).where(Blast.name == "Orders 1")).one()
    assert blast.alert_revision_id == get_revision(db, ALERT).id
    page = c.get(confirm_path)
    assert "5 supporters" in page.text
    assert "no test sent yet" in page.text
    assert re.search(r'class="verdict (good|bad)"', page.text)

    tested = c.post(f"{confirm_path}/test", data={"csrf": csrf, "to": "me@example.org"})
    assert tested.status_code == 303
    assert "a test was sent" in c.get(confirm_path).text

    started = c.post(f"{confirm_path}/send", data={"csrf": csrf, "do": "now", "force": "1"})
    assert started.status_code == 303, started.text
    with db.session() as session:
        stored = session.get(Blast, blast.id)
        assert stored is not None
        assert stored.status is BlastStatus.SCHEDULED
    assert events(db, "blast.scheduled")[0].actor == "organizer"
    cancelled = c.post(f"/admin/blasts/{blast.id}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303
    again = c.post(f"{confirm_path}/send", data={"csrf": csrf, "do": "now", "force": "1"})
    assert again.status_code == 400 and "cannot" in again.text


def test_send_flow_refuses_bad_choices(db: Database, site: str) -> None:
    c, csrf = client(site)
    new_alert(c, csrf)
    nothing = c.post("/admin/studio/send", data={"csrf": csrf, "alert": "nope", "do": "continue"})
    assert nothing.status_code == 400 and "choose one of the alerts" in nothing.text
    no_lists = c.post(
        "/admin/studio/send", data={"csrf": csrf, "alert": ALERT, "name": "B", "do": "continue"}
    )
    assert no_lists.status_code == 400 and "at least one list" in no_lists.text
    made = c.post(
        "/admin/studio/send",
        data={"csrf": csrf, "alert": ALERT, "name": "B", "lists": "members", "do": "continue"},
    )
    path = made.headers["location"].split("?")[0]
    no_time = c.post(f"{path}/send", data={"csrf": csrf, "do": "schedule", "date": "", "time": ""})
    assert no_time.status_code == 400 and "give the date and the time" in no_time.text
    past = c.post(
        f"{path}/send",
        data={
            "csrf": csrf,
            "do": "schedule",
            "date": "2001-01-01",
            "time": "09:00",
            "zone": "UTC",
            "force": "1",
        },
    )
    assert past.status_code == 400 and "in the past" in past.text
    assert c.get("/admin/studio/blasts/99999").status_code == 404


# -- hostile input -----------------------------------------------------------------------

FORMS = [
    ("/admin/studio/new", ("name", "language", "statement")),
    (EDIT, ("lang", "based_on", "subject", "preheader", "body", "text")),
    (f"{EDIT}/test", ("to", "rev", "lang")),
    ("/admin/studio/send", ("alert", "name", "lists", "segment", "cta_url", "do")),
    ("/admin/studio/blasts/1/test", ("to",)),
    ("/admin/studio/blasts/1/send", ("do", "date", "time", "zone", "force")),
]


@pytest.fixture
def hostile(sqlite_db: Database, settings: Settings) -> Iterator[tuple[httpx.Client, str]]:
    add_people(sqlite_db, "members", people(2))
    add_users(sqlite_db)
    start_from_statement(sqlite_db, ALERT, SEED, author="test")
    blast = create_blast(sqlite_db, settings, name="b", template=ALERT, list_names=["members"])
    assert blast.id == 1
    with serve(sqlite_db, settings) as url:
        c, csrf = client(url)
        yield c, csrf


TEXT = st.text(max_size=60) | st.sampled_from(
    ["", "1", "0", "es", "members", ALERT, "now", "count", "continue", "language=es", "x=y", "%FF"]
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(form=st.sampled_from(FORMS), values=st.lists(TEXT, min_size=6, max_size=6))
def test_random_posts_to_every_studio_form_never_fail(
    hostile: tuple[httpx.Client, str], form: tuple[str, tuple[str, ...]], values: list[str]
) -> None:
    c, csrf = hostile
    path, names = form
    data = {"csrf": csrf, **dict(zip(names, values, strict=False))}
    answer = c.post(path, data=data)
    assert answer.status_code < 500, answer.text
    for query in (
        {"lang": values[0], "rev": values[1], "email": values[2]},
        {"lists": values[0], "segment": values[1]},
    ):
        for get in (
            f"{EDIT}/preview",
            f"{EDIT}/frame.html",
            EDIT,
            "/admin/studio/count",
            f"{EDIT}/history",
        ):
            assert c.get(get, params=query).status_code < 500
    blast_path = f"/admin/studio/blasts/{quote(values[3], safe='')}/send"
    sent = c.post(blast_path, data={"csrf": csrf, "do": values[4], "date": values[5]})
    assert sent.status_code < 500


def test_check_flags_a_layout_without_its_footer(sqlite_db: Database, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    (templates / "layout" / "base.txt").write_text("{% block content %}{% endblock %}\n", "utf-8")
    start_from_statement(sqlite_db, ALERT, SEED, author="test")
    findings = check_revision(sqlite_db, make_settings(templates=templates), ALERT)
    missing = {(f.code, f.part) for f in findings if f.is_error}
    assert missing == {("unsubscribe-missing", "text"), ("postal-address-missing", "text")}
    assert not [f for f in check_revision(sqlite_db, make_settings(), ALERT) if f.is_error]

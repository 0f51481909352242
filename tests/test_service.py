"""`mailer run` as a real process: schedules, restarts, misfires, two services, follow-ups.

Each test drives the service and the CLI as separate processes against one
SQLite file and a real SMTP server in the test process.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mailer.devsmtp import free_port
from mailer.errors import InvalidState
from mailer.schedule.times import parse_local, show
from tests.conftest import REPO, pg_schema
from tests.processes import Site, blast_site, update_config, wait_for
from tests.smtpserver import SmtpTestServer

pytestmark = pytest.mark.processes  # every test here but the time-zone one starts mailer

PEOPLE = 12


@pytest.fixture
def work(
    request: pytest.FixtureRequest, tmp_path: Path, smtp_server: SmtpTestServer
) -> Iterator[Site]:
    """SQLite by default; ``@on_both_databases`` runs a test on PostgreSQL too."""
    with contextlib.ExitStack() as stack:
        url = "sqlite:///m.db"
        if getattr(request, "param", "sqlite") == "postgresql":
            url = stack.enter_context(pg_schema())
        yield from _work(tmp_path, smtp_server, url)


on_both_databases = pytest.mark.parametrize("work", ["sqlite", "postgresql"], indirect=True)


def _work(tmp_path: Path, smtp_server: SmtpTestServer, url: str) -> Iterator[Site]:
    work = blast_site(tmp_path, url, smtp_server, people=PEOPLE, web_port=free_port())
    yield work
    work.close()


def everyone_once(server: SmtpTestServer) -> bool:
    counts = Counter(r.rcpt_tos[0] for r in server.handler.received)
    assert all(n == 1 for n in counts.values()), counts
    return len(counts) == PEOPLE


def sqlite_rows(work: Site, query: str) -> list[tuple[object, ...]]:
    """Rows of ``query`` on the test's SQLite database; none while its table does not exist."""
    with contextlib.closing(sqlite3.connect(work.path / "m.db")) as conn:
        try:
            return conn.execute(query).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return []


def stored_jobs(work: Site) -> set[object]:
    """Ids of the jobs in APScheduler's job store, a table of the mailer's own database."""
    return {row[0] for row in sqlite_rows(work, "SELECT id FROM apscheduler_jobs")}


def sleep_until_past(at: datetime, seconds: float) -> None:
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + seconds)


@on_both_databases
def test_a_scheduled_blast_goes_out_on_time(work: Site) -> None:
    service = work.start_service()
    at = work.schedule_in(5)
    wait_for(lambda: len(work.smtp.handler.received) >= 1)
    first = datetime.now(UTC)
    assert abs((first - at).total_seconds()) <= 2.0
    wait_for(lambda: everyone_once(work.smtp))
    wait_for(lambda: work.status_of(1) == "done")
    log = work.stop(service)
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    names = {e.get("event") for e in events}
    assert {"service.started", "blast.job_set", "blast.sending", "service.stopped"} <= names


@on_both_databases
def test_a_schedule_survives_a_restart_and_goes_out_once(work: Site) -> None:
    first = work.start_service()
    work.schedule_in(8)  # room for a slow machine: the stop must come before the start
    time.sleep(1.0)  # the service has set its job
    work.stop(first)
    assert work.smtp.handler.received == []
    work.start_service()
    wait_for(lambda: everyone_once(work.smtp))
    wait_for(lambda: work.status_of(1) == "done")
    time.sleep(1.0)
    assert everyone_once(work.smtp)


def test_a_blast_due_while_no_service_ran_is_marked_missed(work: Site) -> None:
    update_config(work.path / "mailer.toml", "schedule", misfire_grace=1)
    at = work.schedule_in(5)
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 2.0)  # due, > 1 s grace ago
    work.start_service()
    wait_for(lambda: work.status_of(1) == "missed")
    listing = work.ok("blast", "list")
    assert "while no service was running" in listing and "not sent" in listing
    time.sleep(1.0)
    assert work.smtp.handler.received == []
    assert "missed" in work.ok("status")
    # The event log says why, in the organizer's words and as JSON lines.
    shown = work.ok("blast", "events", "1")
    assert "blast.created" in shown and "blast.scheduled" in shown
    missed = [line for line in shown.splitlines() if "blast.missed" in line]
    assert len(missed) == 1 and "while no service was running" in missed[0]
    lines = [json.loads(line) for line in work.ok("blast", "events", "1", "--json").splitlines()]
    assert [e["action"] for e in lines][-1] == "blast.missed"
    assert "while no service was running" in str(lines[-1]["detail"])


def test_a_blast_due_while_the_service_was_stopped_starts_late_within_the_grace(
    work: Site,
) -> None:
    first = work.start_service()
    at = work.schedule_in(5)
    wait_for(lambda: stored_jobs(work) == {"blast-1"})
    work.stop(first)
    assert stored_jobs(work) == {"blast-1"}  # the job outlives the service
    sleep_until_past(at, 2.0)  # due while no service ran, well within the 30 s grace
    assert work.smtp.handler.received == [] and work.status_of(1) == "scheduled"
    work.start_service()
    wait_for(lambda: everyone_once(work.smtp))
    wait_for(lambda: work.status_of(1) == "done")
    assert stored_jobs(work) == set()


def test_a_blast_due_longer_than_the_grace_before_a_restart_is_marked_missed(
    work: Site,
) -> None:
    update_config(work.path / "mailer.toml", "schedule", misfire_grace=1)
    first = work.start_service()
    at = work.schedule_in(5)
    wait_for(lambda: stored_jobs(work) == {"blast-1"})
    work.stop(first)
    sleep_until_past(at, 3.0)  # due while stopped, more than the 1 s grace ago
    second = work.start_service()
    wait_for(lambda: work.status_of(1) != "scheduled")
    assert work.status_of(1) == "missed"
    time.sleep(1.0)
    assert work.smtp.handler.received == []
    listing = work.ok("blast", "list")
    assert "while no service was running" in listing and "not sent" in listing
    log = work.stop(second)
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [e["blast"] for e in logged if e.get("event") == "blast.missed"] == [1]
    events = sqlite_rows(work, "SELECT detail FROM event WHERE action = 'blast.missed'")
    assert len(events) == 1 and "while no service was running" in str(events[0][0])


def test_the_grace_in_the_settings_at_restart_decides_for_a_job_stored_before(
    work: Site,
) -> None:
    first = work.start_service()  # misfire_grace = 30 s
    at = work.schedule_in(5)
    wait_for(lambda: stored_jobs(work) == {"blast-1"})
    work.stop(first)
    update_config(work.path / "mailer.toml", "schedule", misfire_grace=1)
    sleep_until_past(at, 3.0)  # within the old grace, past the new one
    work.start_service()
    wait_for(lambda: work.status_of(1) != "scheduled")
    assert work.status_of(1) == "missed"
    time.sleep(1.0)
    assert work.smtp.handler.received == []
    assert "more than 1 s ago" in work.ok("blast", "list")


def test_status_shows_a_blast_paused_by_a_down_relay_and_why(work: Site) -> None:
    closed = socket.socket()  # bound, never listening: connections to it are refused
    closed.bind(("127.0.0.1", 0))
    with closed:
        update_config(work.path / "mailer.toml", "smtp", port=closed.getsockname()[1])
        update_config(work.path / "mailer.toml", "sending", connect_attempts=1)
        work.start_service()
        work.schedule_in(5)
        wait_for(lambda: work.status_of(1) == "paused")
        lines = work.ok("status").splitlines()
    assert lines[0].startswith("service ") and "running since" in lines[0]
    at = lines.index("blast 1 paused: alert")
    assert "SMTP relay unreachable" in lines[at + 1]
    assert work.smtp.handler.received == []


@on_both_databases
def test_two_services_on_one_database_do_not_send_twice(work: Site) -> None:
    work.smtp.handler.delay = 0.05
    work.start_service()
    work.start_service(port=free_port())
    work.schedule_in(5)
    wait_for(lambda: everyone_once(work.smtp))
    wait_for(lambda: work.status_of(1) == "done")
    time.sleep(1.0)
    assert everyone_once(work.smtp)


def test_pause_from_the_cli_while_the_service_sends(work: Site) -> None:
    update_config(work.path / "mailer.toml", "sending", connections=1)
    work.smtp.handler.delay = 0.5  # 12 messages take 6 s
    work.start_service()
    work.schedule_in(5)
    wait_for(lambda: len(work.smtp.handler.received) >= 2)
    work.ok("blast", "pause", "1")
    time.sleep(1.5)  # the sender notices within control_interval and drains
    got = len(work.smtp.handler.received)
    time.sleep(1.0)
    assert len(work.smtp.handler.received) == got < PEOPLE
    assert work.status_of(1) == "paused"
    work.smtp.handler.delay = 0.0
    work.ok("blast", "resume", "1")
    wait_for(lambda: everyone_once(work.smtp))


def blast_of(message_id: str) -> int:
    return int(message_id.strip("<").split(".")[0])


@on_both_databases
def test_follow_up_goes_to_those_who_did_not_click_or_unsubscribe(work: Site) -> None:
    work.start_service()
    work.ok("blast", "send", "1")
    received = {r.rcpt_tos[0]: r.message() for r in work.smtp.handler.received}
    base = f"http://127.0.0.1:{work.web_port}"

    def click(address: str) -> None:  # a real click, through the service's own web app
        text = received[address].get_body(preferencelist=("plain",))
        assert text is not None
        link = re.search(rf"{re.escape(base)}/c/[A-Za-z0-9_-]+", text.get_content())
        assert link is not None
        assert httpx.get(link.group(0), timeout=5).status_code == 302

    def unsubscribe(address: str) -> None:
        found = re.search(r"<(http[^>]+/u/[^>]+)>", str(received[address]["List-Unsubscribe"]))
        assert found is not None
        answer = httpx.post(found.group(1), content="List-Unsubscribe=One-Click", timeout=5)
        assert answer.status_code == 200

    click("p0@example.org")  # before the follow-up is created
    follow_up = work.ok("blast", "follow-up", "1", "--after", "6s").strip()
    assert follow_up == "2"
    # After it is created and before it starts: its audience is taken when it starts.
    click("p1@example.org")
    unsubscribe("p2@example.org")
    wait_for(lambda: work.status_of(2) == "done", seconds=40)
    second = {
        r.rcpt_tos[0]
        for r in work.smtp.handler.received
        if blast_of(r.message()["Message-ID"]) == 2
    }
    assert second == {f"p{i}@example.org" for i in range(PEOPLE)} - {
        "p0@example.org",
        "p1@example.org",
        "p2@example.org",
    }


def test_follow_up_with_its_own_template(work: Site) -> None:
    templates = work.path / "templates"
    shutil.copytree(REPO / "templates", templates)
    reminder = templates / "reminder"
    shutil.copytree(templates / "executive-orders", reminder)
    settings = reminder / "template.toml"
    settings.write_text(
        settings.read_text("utf-8").replace(
            "tell the White House: immigrants", "a reminder: tell the White House that immigrants"
        ),
        "utf-8",
    )
    update_config(work.path / "mailer.toml", "templates", dir=templates.as_posix())
    assert work.ok("blast", "follow-up", "1", "--after", "1h", "-t", "reminder").strip() == "2"
    listed = work.ok("blast", "list").splitlines()[2].split()
    assert listed[:2] == ["2", "scheduled"]
    shown = work.ok("preview", "2", "--to", "p3@example.org", "--out", "preview")
    assert "Subject: P3, a reminder: tell the White House that immigrants" in shown
    original = work.ok("preview", "1", "--to", "p3@example.org", "--out", "preview")
    assert "Subject: P3, tell the White House: immigrants" in original


def test_test_send_reaches_seeds_and_touches_nothing(work: Site) -> None:
    out = work.ok("blast", "test", "1", "--to", "seed@example.net,p3@example.org")
    assert "seed@example.net: sent" in out
    seeds = {r.rcpt_tos[0]: r.message() for r in work.smtp.handler.received}
    assert set(seeds) == {"seed@example.net", "p3@example.org"}
    assert seeds["p3@example.org"]["Subject"].startswith("[TEST] P3,")
    assert seeds["seed@example.net"]["X-Mailer-Test"] == "yes"
    assert work.status_of(1) == "draft"
    report = json.loads(work.ok("report", "1", "--json"))
    assert report["recipients"] == 0 and report["sent"] == 0


def test_time_zones_across_daylight_saving_changes() -> None:
    chicago = "America/Chicago"
    # Winter (CST, UTC-6) and summer (CDT, UTC-5): the same wall time, different UTC.
    assert parse_local("2026-12-01 09:00", chicago) == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert parse_local("2026-07-01 09:00", chicago) == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    # Across the spring change: 01:59 CST is 07:59 UTC, 03:00 CDT is 08:00 UTC.
    assert parse_local("2026-03-08 01:59", chicago) == datetime(2026, 3, 8, 7, 59, tzinfo=UTC)
    assert parse_local("2026-03-08 03:00", chicago) == datetime(2026, 3, 8, 8, 0, tzinfo=UTC)
    with pytest.raises(InvalidState, match="does not exist"):
        parse_local("2026-03-08 02:30", chicago)
    with pytest.raises(InvalidState, match="happens twice"):
        parse_local("2026-11-01 01:30", chicago)
    assert parse_local("2026-11-01 01:30-06:00", chicago) == datetime(
        2026, 11, 1, 7, 30, tzinfo=UTC
    )
    assert show(datetime(2026, 12, 1, 15, 0, tzinfo=UTC), chicago) == "2026-12-01 09:00 CST"
    assert show(datetime(2026, 7, 1, 14, 0, tzinfo=UTC), chicago) == "2026-07-01 09:00 CDT"
    with pytest.raises(InvalidState, match="unknown time zone"):
        parse_local("2026-12-01 09:00", "Mars/Olympus")


def test_schedule_and_list_in_the_organizers_zone_from_the_cli(work: Site) -> None:
    def listed_time(*args: str) -> str:
        row = work.ok("blast", "list", *args).splitlines()[1].split()
        assert row[:2] == ["1", "scheduled"], row
        return " ".join(row[2:5])

    winter = work.ok(
        "blast", "schedule", "1", "--at", "2035-12-01 09:00", "--tz", "America/Chicago"
    )
    assert "2035-12-01 09:00 CST (2035-12-01 15:00 UTC)" in winter
    assert listed_time() == "2035-12-01 15:00 UTC"  # schedule.timezone is UTC here
    assert listed_time("--tz", "America/Chicago") == "2035-12-01 09:00 CST"
    # The zone from the settings, in summer time: the same wall time is an hour earlier in UTC.
    update_config(work.path / "mailer.toml", "schedule", timezone="America/Chicago")
    summer = work.ok("blast", "schedule", "1", "--at", "2035-07-01 09:00")
    assert "2035-07-01 09:00 CDT (2035-07-01 14:00 UTC)" in summer
    assert listed_time() == "2035-07-01 09:00 CDT"
    skipped = work.mailer("blast", "schedule", "1", "--at", "2035-03-11 02:30")
    assert skipped.returncode == 1 and "does not exist in America/Chicago" in skipped.stderr
    assert listed_time() == "2035-07-01 09:00 CDT"  # a refused time changes nothing


@on_both_databases
def test_sigterm_mid_blast_then_restart_finishes_it_once(work: Site) -> None:
    update_config(work.path / "mailer.toml", "sending", connections=1)
    work.smtp.handler.delay = 0.4
    service = work.start_service()
    work.schedule_in(5)
    wait_for(lambda: len(work.smtp.handler.received) >= 2)
    work.stop(service)  # graceful: the message in flight is finished and recorded
    assert work.status_of(1) == "sending"  # left to resume, not paused
    assert "sending" in work.ok("status")
    work.smtp.handler.delay = 0.0
    work.start_service()
    wait_for(lambda: everyone_once(work.smtp))
    wait_for(lambda: work.status_of(1) == "done")
    assert work.ok("log", "1", "--state", "unknown").strip() == "no deliveries in state unknown"


def helper_starts(work: Site) -> int:
    """How many times a helper process of a sender registered on the blast."""
    rows = sqlite_rows(work, "SELECT actor FROM event WHERE action LIKE 'blast.%'")
    return sum(1 for (actor,) in rows if str(actor).startswith("helper:"))


def test_a_scheduled_blast_is_sent_by_the_configured_sender_processes(work: Site) -> None:
    # One connection and a slow relay: the blast lasts long enough for a helper to join.
    update_config(work.path / "mailer.toml", "sending", processes=2, connections=1, batch_size=1)
    work.smtp.handler.delay = 0.4
    service = work.start_service()
    work.schedule_in(5)
    wait_for(lambda: everyone_once(work.smtp), seconds=60)
    wait_for(lambda: work.status_of(1) == "done")
    assert helper_starts(work) == 1
    work.stop(service)
    assert work.ok("log", "1", "--state", "unknown").strip() == "no deliveries in state unknown"


def test_a_stopping_service_stops_its_helpers_and_leaves_the_blast_sending(work: Site) -> None:
    update_config(work.path / "mailer.toml", "sending", processes=2, connections=1, batch_size=1)
    work.smtp.handler.delay = 0.5
    service = work.start_service()
    work.schedule_in(5)
    wait_for(lambda: helper_starts(work) == 1 and len(work.smtp.handler.received) >= 2)
    work.stop(service)  # the helper too finishes what it has in flight, then leaves
    assert work.status_of(1) == "sending"  # left to resume, not paused by the helper
    stopped_at = len(work.smtp.handler.received)
    time.sleep(1.5)
    assert len(work.smtp.handler.received) == stopped_at  # no sender is left running
    work.smtp.handler.delay = 0.0
    work.start_service()
    wait_for(lambda: everyone_once(work.smtp))
    wait_for(lambda: work.status_of(1) == "done")
    assert work.ok("log", "1", "--state", "unknown").strip() == "no deliveries in state unknown"


def test_sigterm_lets_an_http_request_in_progress_finish(work: Site) -> None:
    service = work.start_service()
    work.ok("blast", "send", "1")
    message = work.smtp.handler.received[0].message()
    link = re.search(r"<(http[^>]+/u/[^>]+)>", str(message["List-Unsubscribe"]))
    assert link is not None
    body = b"List-Unsubscribe=One-Click"
    head = (
        f"POST {urlsplit(link.group(1)).path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", work.web_port), timeout=10) as conn:
        conn.sendall(head.encode())  # the request has begun; its body comes later
        time.sleep(0.5)
        service.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # an idle service is gone well within this
        assert service.poll() is None, "the service quit with a request in progress"
        conn.sendall(body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    service.wait(timeout=30)
    assert service.returncode == 0, work.log(service)
    assert json.loads(work.ok("report", "1", "--json"))["unsubscribed"] == 1


def test_unschedule_while_the_service_runs(work: Site) -> None:
    work.start_service()
    at = work.schedule_in(12)  # room for two commands to start on a busy machine
    time.sleep(1.5)
    work.ok("blast", "unschedule", "1")
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 2.0)
    assert work.smtp.handler.received == [] and work.status_of(1) == "draft"


def test_rescheduling_while_the_service_runs(work: Site) -> None:
    work.start_service()
    work.schedule_in(120)
    time.sleep(1.5)  # the service has set its job for two minutes from now
    at = work.schedule_in(5)  # scheduling again moves it
    wait_for(lambda: len(work.smtp.handler.received) >= 1)
    assert abs((datetime.now(UTC) - at).total_seconds()) <= 2.5
    wait_for(lambda: everyone_once(work.smtp))

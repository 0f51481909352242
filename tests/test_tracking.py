"""Click tracking that is exact: group commit under concurrency, scanners, IPs, opens."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlmodel import col, func, select

from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.report import blast_report, delivery_log, link_report
from mailer.store import Click, Database, Delivery, Link
from mailer.web import app_for
from mailer.web.recorder import ClickBatcher
from mailer.web.server import BackgroundServer
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import SmtpTestServer

BASE = "http://127.0.0.1:8000"


@contextlib.contextmanager
def serve(db: Database, settings: Settings) -> Iterator[httpx.Client]:
    """The app on a real local socket, and a client for it."""
    app = app_for(db, settings)
    with BackgroundServer(app, port=free_port()) as server, httpx.Client(base_url=server.url) as c:
        yield c


def sent_links(db: Database, settings: Settings, server: SmtpTestServer, count: int) -> list[str]:
    add_people(db, "members", people(count))
    blast = create_blast(
        db, settings, name="t", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    paths = []
    for received in server.handler.received:
        body = received.message().get_body(preferencelist=("plain",))
        assert body is not None
        paths += re.findall(rf"{re.escape(BASE)}(/c/[A-Za-z0-9_-]+)", body.get_content())
    return paths


def stored_clicks(db: Database) -> int:
    """The clicks stored: replays of one link are counted on one row."""
    with db.session() as session:
        return session.exec(select(func.coalesce(func.sum(Click.clicks), 0))).one()


@pytest.mark.parametrize("store_ip", ["none", "truncated"])
def test_concurrent_clicks_are_all_stored_before_the_redirect(
    db: Database, smtp_server: SmtpTestServer, store_ip: str
) -> None:
    settings = make_settings(smtp_port=smtp_server.port, tracking={"store_ip": store_ip})
    paths = sent_links(db, settings, smtp_server, 20)
    with serve(db, settings) as client, ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(lambda p: client.get(p, follow_redirects=False).status_code, paths * 3)
        )
    assert statuses.count(302) == len(paths) * 3
    assert stored_clicks(db) == len(paths) * 3  # every redirect answered had its click stored
    with db.session() as session:
        ips = set(session.exec(select(Click.ip)).all())
    assert ips == ({""} if store_ip == "none" else {"127.0.0.0"})


def test_clicks_right_after_sending_are_flagged_as_scanners(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port)  # scanner_window: 10 s
    paths = sent_links(db, settings, smtp_server, 3)
    with serve(db, settings) as client:
        for path in paths:
            assert client.get(path, follow_redirects=False).status_code == 302
    report = blast_report(db, "t")
    assert report["clicks_total"] == len(paths) == report["clicks_flagged"]
    assert report["clicks_unique"] == 0 and report["click_rate"] == 0.0
    [cta, statement] = link_report(db, report["id"])
    assert cta["clicks_flagged"] == 3 and cta["clicks_unique"] == 0
    assert statement["clicks_total"] == 3


def test_clicks_later_count_as_people(db: Database, smtp_server: SmtpTestServer) -> None:
    settings = make_settings(smtp_port=smtp_server.port, tracking={"scanner_window": 0.0})
    paths = sent_links(db, settings, smtp_server, 3)
    with serve(db, settings) as client:
        for path in paths:
            client.get(path, follow_redirects=False)
    report = blast_report(db, "t")
    assert report["clicks_unique"] == 3 and report["clicks_flagged"] == 0
    assert report["clicks_total"] == len(paths)


def test_opens_pixel_when_asked(db: Database, smtp_server: SmtpTestServer) -> None:
    settings = make_settings(smtp_port=smtp_server.port, tracking={"opens": True})
    sent_links(db, settings, smtp_server, 2)
    html = smtp_server.handler.received[0].message().get_body(preferencelist=("html",))
    assert html is not None
    pixel = re.search(rf'<img src="{re.escape(BASE)}(/o/[A-Za-z0-9_-]+)"', html.get_content())
    assert pixel is not None
    with serve(db, settings) as client:
        response = client.get(pixel.group(1))
        assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
        client.get(pixel.group(1))
        assert client.get("/o/forged").status_code == 404
    report = blast_report(db, "t")
    assert (report["opens_unique"], report["opens_total"]) == (1, 2)


def test_no_pixel_by_default(db: Database, settings: Settings, smtp_server: SmtpTestServer) -> None:
    sent_links(db, settings, smtp_server, 1)
    assert b"/o/" not in smtp_server.handler.received[0].data


def test_clicks_per_supporter_in_the_send_log(db: Database, smtp_server: SmtpTestServer) -> None:
    settings = make_settings(smtp_port=smtp_server.port, tracking={"scanner_window": 0.0})
    paths = sent_links(db, settings, smtp_server, 2)
    with serve(db, settings) as client:
        client.get(paths[0], follow_redirects=False)
        client.get(paths[0], follow_redirects=False)
    rows = {row["email"]: row for row in delivery_log(db, blast_report(db, "t")["id"])}
    first = smtp_server.handler.received[0].rcpt_tos[0]
    assert rows[first]["clicks"] == 2 and rows[first]["clicks_flagged"] == 0
    assert sum(row["clicks"] for row in rows.values()) == 2


def stored_click_rows(db: Database) -> list[Click]:
    with db.session() as session:
        return list(session.exec(select(Click).order_by(col(Click.id))))


def test_replays_of_one_link_are_counted_on_one_stored_row(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port, tracking={"scanner_window": 0})
    path = sent_links(db, settings, smtp_server, 1)[0]
    with serve(db, settings) as client, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: client.get(path).status_code, range(300)))
    assert statuses == [302] * 300
    rows = stored_click_rows(db)
    assert len(rows) == 1  # 300 replays, one row
    assert rows[0].clicks == 300  # and every click still counted
    assert blast_report(db, "t")["clicks_total"] == 300
    assert [r["clicks_total"] for r in link_report(db, rows[0].blast_id) if r["clicks_total"]] == [
        300
    ]


def test_a_click_after_the_window_or_from_a_scanner_gets_its_own_row(
    db: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port, tracking={"click_dedup_window": 60})
    sent_links(db, settings, smtp_server, 1)
    with db.session() as session:
        delivery = session.exec(select(Delivery)).one()
        link = session.exec(select(Link)).first()
    assert delivery.id is not None and delivery.sent_at is not None
    assert link is not None and link.id is not None
    writer = ClickBatcher(db, scanner_window=10, dedup_window=60)
    sent = delivery.sent_at

    async def click_at(seconds: float) -> str | None:
        return await writer.record(
            delivery.id or 0, link.id or 0, sent + timedelta(seconds=seconds), ""
        )

    writer.start()
    try:
        for seconds in (1, 2, 30, 40, 89, 91, 200):
            assert asyncio.run(click_at(seconds)) == link.url
    finally:
        writer.stop()
    rows = [(r.suspected_bot, r.clicks) for r in stored_click_rows(db)]
    # 1 and 2 s: a scanner; 30..89 s: within 60 s of the row's first click; 91 s: past
    # that window, a new row; 200 s: past the window of that one, another.
    assert rows == [(True, 2), (False, 3), (False, 1), (False, 1)]

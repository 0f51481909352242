"""The SMTP transport against real servers: plain, STARTTLS, implicit TLS, AUTH."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from mailer.blasts import create_blast, send_now
from mailer.store import BlastStatus, Database
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import SmtpTestServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def running(server: SmtpTestServer) -> Iterator[SmtpTestServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def starttls_server(server_context: ssl.SSLContext) -> Iterator[SmtpTestServer]:
    yield from running(
        SmtpTestServer(tls="starttls", context=server_context, users={"org": "pw-123"})
    )


@pytest.fixture
def tls_server(server_context: ssl.SSLContext) -> Iterator[SmtpTestServer]:
    yield from running(SmtpTestServer(tls="tls", context=server_context, users={"org": "pw-123"}))


def blast(db: Database, **smtp: object) -> int:
    settings = make_settings(smtp=smtp)
    add_people(db, "members", people(2))
    created = create_blast(
        db, settings, name="b", template="executive-orders", list_names=["members"]
    )
    assert created.id is not None
    return created.id


def send(db: Database, blast_id: int, **smtp: object) -> tuple[BlastStatus, str, dict[str, int]]:
    result = send_now(db, make_settings(smtp=smtp), blast_id)
    return result.status, result.error, result.counts


def test_starttls_with_auth(
    sqlite_db: Database, starttls_server: SmtpTestServer, ca_file: str
) -> None:
    smtp = {
        "port": starttls_server.port,
        "tls": "starttls",
        "ca_file": ca_file,
        "username": "org",
        "password": "pw-123",
    }
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert (status, error, counts["sent"]) == (BlastStatus.DONE, "", 2)
    assert all(r.tls and r.authenticated_as == "org" for r in starttls_server.handler.received)


def test_implicit_tls_with_auth(
    sqlite_db: Database, tls_server: SmtpTestServer, ca_file: str
) -> None:
    smtp = {
        "port": tls_server.port,
        "tls": "tls",
        "ca_file": ca_file,
        "username": "org",
        "password": "pw-123",
    }
    status, _, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert (status, counts["sent"]) == (BlastStatus.DONE, 2)
    assert all(r.tls and r.authenticated_as == "org" for r in tls_server.handler.received)


def test_wrong_password_pauses_the_blast_with_the_reason(
    sqlite_db: Database, starttls_server: SmtpTestServer, ca_file: str
) -> None:
    smtp = {
        "port": starttls_server.port,
        "tls": "starttls",
        "ca_file": ca_file,
        "username": "org",
        "password": "wrong",
    }
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert status is BlastStatus.PAUSED
    assert "refused the login" in error and "535" in error
    assert counts["queued"] == 2 and starttls_server.handler.received == []


def test_untrusted_certificate_is_refused(
    sqlite_db: Database, starttls_server: SmtpTestServer
) -> None:
    smtp = {
        "port": starttls_server.port,
        "tls": "starttls",
        "username": "org",
        "password": "pw-123",
    }
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert status is BlastStatus.PAUSED
    assert "certificate" in error.lower()
    assert counts["sent"] == 0 and starttls_server.handler.received == []


def test_plain_connection_to_a_server_that_requires_starttls_gets_no_mail_through(
    sqlite_db: Database, starttls_server: SmtpTestServer
) -> None:
    smtp = {"port": starttls_server.port, "tls": "none"}
    status, error, counts = send(sqlite_db, blast(sqlite_db, **smtp), **smtp)
    assert status is BlastStatus.PAUSED  # not: every recipient marked failed
    assert "refused the sender" in error and "530" in error
    assert counts["queued"] == 2 and counts["failed"] == 0
    assert starttls_server.handler.received == []

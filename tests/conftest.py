"""Fixtures that start real parts: SQLite files, PostgreSQL schemas, SMTP servers.

Also the markers that let a run choose its tests (``pytest -m "not browser and not
processes"``; plain ``pytest`` runs them all), set by :func:`pytest_collection_modifyitems`
where they follow from a test's fixtures and parameters, and in the test files otherwise.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from mailer import config
from mailer.store import Database, open_database
from tests.smtpserver import PipeliningHandler, SmtpTestServer

pytest_plugins = ["tests.browser"]  # the browser and page fixtures

PG_URL = os.environ.get("MAILER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# The tests' sessions do not wait for each commit to reach the disk: what they commit is
# seen by every other session at once, as before; only a crash of the server itself
# could lose it. A commit then costs about a fifth.
NO_COMMIT_FLUSH = "-csynchronous_commit=off"


# A database test starts from a database at the newest migration. Running the migrations
# (Alembic, SQLite's batch table rebuilds) for each of several hundred tests costs
# minutes, so each pytest process migrates once and the tests get a copy:
# on SQLite the migrated file, on PostgreSQL a new schema where the SQL the migrations
# ran is run again (recorded from a real migration). tests/test_fixtures.py checks
# that the copies are the same as freshly migrated databases.


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, once per pytest process."""
    path = tmp_path_factory.mktemp("template") / "mailer.db"
    open_database(f"sqlite:///{path}", create=True).dispose()
    # The last connection's close checkpoints the WAL into the file and removes it.
    assert not path.with_name("mailer.db-wal").exists()
    return path


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    path = tmp_path / "mailer.db"
    shutil.copyfile(sqlite_template, path)
    db = open_database(f"sqlite:///{path}")
    yield db
    db.dispose()


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL schema (for processes to use), dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        PG_URL, isolation_level="AUTOCOMMIT", connect_args={"options": NO_COMMIT_FLUSH}
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}%20{quote(NO_COMMIT_FLUSH)}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


Recorded = list[tuple[str, Any, bool]]  # statement, parameters, executemany


def record_migration(url: str) -> Recorded:
    """Migrate the empty schema at ``url`` to the newest revision; the SQL it ran, in order."""
    recorded: Recorded = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        recorded.append((statement, parameters, many))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        open_database(url, create=True).dispose()
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    return recorded


@pytest.fixture(scope="session")
def pg_migration() -> Recorded:
    """The SQL that migrating an empty PostgreSQL schema runs, recorded once per process."""
    with pg_schema() as url:
        schema = url.split("search_path%3D", 1)[1].split("%20", 1)[0]
        recorded = record_migration(url)
    # The statements name no schema (search_path chooses it), so they fit any schema.
    assert not [s for s, p, _ in recorded if schema in s or schema in repr(p)]
    return recorded


def replay(url: str, recorded: Recorded) -> None:
    """Run recorded SQL on ``url``, on the driver's cursor as first run, in one transaction."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for statement, parameters, many in recorded:
                if many:
                    cursor.executemany(statement, parameters)
                else:
                    cursor.execute(statement, parameters)
    finally:
        engine.dispose()


@pytest.fixture
def pg_db(pg_migration: Recorded) -> Iterator[Database]:
    """A fresh schema in the local PostgreSQL for one test, dropped afterwards."""
    with pg_schema() as url:
        replay(url, pg_migration)
        db = open_database(url)
        try:
            yield db
        finally:
            db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database for processes: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailer.db'}"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test on both databases the mailer supports."""
    fixture = "sqlite_db" if request.param == "sqlite" else "pg_db"
    database: Database = request.getfixturevalue(fixture)
    return database


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpTestServer]:
    """The test SMTP server; ``@both_smtp_paths`` runs a test also with one offering PIPELINING."""
    server = SmtpTestServer(pipelining=getattr(request, "param", "plain") == "pipelining")
    server.start()
    yield server
    server.stop()
    if isinstance(server.handler, PipeliningHandler):  # the client did pipeline, every time
        assert server.handler.pipelined and all(server.handler.pipelined)


# The client pipelines whenever the server offers it (``[smtp] pipelining`` is on by default).
both_smtp_paths = pytest.mark.parametrize("smtp_server", ["plain", "pipelining"], indirect=True)

REPO = Path(__file__).resolve().parents[1]
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def make_settings(
    *,
    smtp_port: int = 25,
    base_url: str = "http://127.0.0.1:8000",
    templates: Path | None = None,
    **sections: dict[str, object],
) -> config.Settings:
    data: dict[str, dict[str, object]] = {
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout": 10.0},
        "sender": {"name": "Rapid Response", "address": "alerts@example.org"},
        "organization": {
            "name": "Rights Network",
            "postal_address": "1 Example Way\nOakland, CA 94600",
        },
        "web": {"base_url": base_url},
        "security": {"secret_key": TEST_SECRET},
        "templates": {"dir": str(templates or REPO / "templates")},
        # Retries within a test's lifetime: 50 ms, 100 ms, ...
        "sending": {"retry_base": 0.05, "control_interval": 0.2},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config.build(data, env={})


@pytest.fixture
def settings(smtp_server: SmtpTestServer) -> config.Settings:
    """Settings that send to the test SMTP server."""
    return make_settings(smtp_port=smtp_server.port)


# -- markers --------------------------------------------------------------------------------

PROCESS_STARTERS = frozenset({"run_mailer", "Popen", "SenderProcesses", "subprocess"})


def _names_in(code: types.CodeType) -> set[str]:
    """The global and attribute names ``code`` refers to, with those of the functions inside it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_in(const)
    return names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what follows from each test's fixtures, parameters and own code.

    ``postgresql``: the test uses ``pg_db``, has a parameter ``"postgresql"`` (the
    ``db`` and ``empty_url`` fixtures, or its own), or calls ``pg_schema`` itself.
    ``browser``: it uses the ``browser`` fixture (``page`` does). ``processes``: it
    calls ``run_mailer``, ``Popen``, ``SenderProcesses`` or ``subprocess`` itself; tests that start
    processes through a helper or fixture are marked in their files.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = list(callspec.params.values()) if callspec is not None else []
        function = getattr(item, "function", None)
        code = getattr(inspect.unwrap(function), "__code__", None) if function else None
        names = _names_in(code) if isinstance(code, types.CodeType) else set()
        if "pg_db" in fixtures or "postgresql" in params or "pg_schema" in names:
            item.add_marker(pytest.mark.postgresql)
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
        if names & PROCESS_STARTERS:
            item.add_marker(pytest.mark.processes)

"""Schema migrations: a database from before migrations is upgraded with every row kept.

The old database is built from a checked-in DDL file (``tests/legacy/``), the
schema exactly as ``create_all`` made it before migrations existed, so later
model changes cannot change what "the previous release" means here. The
upgrade runs as a real ``mailer db upgrade`` process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mailer.store import Database, migrate
from tests.conftest import pg_schema
from tests.processes import MAILER, mailer_env, run_mailer
from tests.processes import write_config as write_config_file

LEGACY = Path(__file__).with_name("legacy")


def mailer(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args, config=cwd / "mailer.toml")


def write_config(folder: Path, url: str) -> None:
    write_config_file(folder, database_url=url, smtp_port=None, organization_name=None)


def run_ddl(engine: sa.Engine, dialect: str) -> None:
    script = (LEGACY / f"schema-{dialect}.sql").read_text("utf-8")
    statements = [s.strip() for s in script.split(";")]
    with engine.begin() as conn:
        for statement in statements:
            body = "\n".join(ln for ln in statement.splitlines() if not ln.startswith("--"))
            if body.strip():
                conn.exec_driver_sql(body)


T0 = datetime(2025, 1, 20, 17, 0)  # naive UTC, as the old schema stores times


def fill(engine: sa.Engine) -> None:
    """Supporters, lists, a finished blast with deliveries, links, clicks, opens, events."""
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables

    def at(minutes: int) -> datetime:
        return T0.replace(minute=minutes)

    with engine.begin() as conn:
        conn.execute(
            t["supporter"].insert(),
            [
                {
                    "id": i,
                    "email": f"p{i}@example.org",
                    "first_name": name,
                    "last_name": "",
                    "zip": "94600",
                    "region": "CA",
                    "language": lang,
                    "custom": {"team": "east", "n": i},
                    "status": status,
                    "status_changed_at": at(i) if status != "active" else None,
                    "created_at": at(0),
                    "updated_at": at(0),
                }
                for i, name, lang, status in [
                    (1, "Ana", "es", "active"),
                    (2, "Bo", "en", "unsubscribed"),
                    (3, "Zoë", "en", "active"),
                ]
            ],
        )
        conn.execute(
            t["suppression"].insert(),
            [{"id": 1, "email": "x@example.org", "reason": "asked", "source": "old.csv"}],
        )
        conn.execute(t["mailing_list"].insert(), [{"id": 1, "name": "all", "created_at": at(0)}])
        conn.execute(
            t["membership"].insert(),
            [{"list_id": 1, "supporter_id": i, "added_at": at(0)} for i in (1, 2, 3)],
        )
        conn.execute(
            t["blast"].insert(),
            [
                {
                    "id": 1,
                    "name": "alert",
                    "template": "executive-orders",
                    "cta_url": "https://www.whitehouse.gov/contact/",
                    "sender_name": "Rapid Response",
                    "sender_address": "alerts@example.org",
                    "status": "done",
                    "segment": {"language": "es"},
                    "created_at": at(1),
                    "started_at": at(2),
                    "finished_at": at(3),
                    "last_error": "",
                    "checks_overridden": False,
                }
            ],
        )
        conn.execute(t["blast_list"].insert(), [{"blast_id": 1, "list_id": 1}])
        conn.execute(
            t["delivery"].insert(),
            [
                {
                    "id": i,
                    "blast_id": 1,
                    "supporter_id": i,
                    "state": state,
                    "attempts": 1,
                    "reply_code": code,
                    "reply_text": text,
                    "message_id": f"<1.{i}.x@example.org>",
                    "worker": "",
                    "created_at": at(2),
                    "updated_at": at(3),
                    "sent_at": at(3) if state == "sent" else None,
                }
                for i, state, code, text in [
                    (1, "sent", 250, "2.0.0 Ok"),
                    (2, "skipped", None, "unsubscribed"),
                    (3, "failed", 550, "5.1.1 no such user"),
                ]
            ],
        )
        conn.execute(
            t["link"].insert(),
            [{"id": 1, "blast_id": 1, "url": "https://www.whitehouse.gov/contact/", "is_cta": 1}],
        )
        conn.execute(
            t["click"].insert(),
            [
                {
                    "id": n,
                    "blast_id": 1,
                    "delivery_id": 1,
                    "link_id": 1,
                    "clicked_at": at(10 + n),
                    "suspected_bot": n == 1,
                    "ip": "",
                }
                for n in (1, 2)
            ],
        )
        conn.execute(
            t["open"].insert(), [{"id": 1, "blast_id": 1, "delivery_id": 1, "opened_at": at(9)}]
        )
        conn.execute(
            t["event"].insert(),
            [
                {
                    "id": 1,
                    "at": at(1),
                    "actor": "cli",
                    "action": "blast.created",
                    "blast_id": 1,
                    "detail": {"lists": ["all"], "segment": {"language": "es"}},
                }
            ],
        )


def every_row(
    engine: sa.Engine, like: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table but Alembic's own, in primary key order.

    With ``like`` (an earlier result), only its tables and columns: what later
    revisions added is left out of the comparison, what was there must be equal.
    """
    meta = sa.MetaData()
    meta.reflect(engine)
    rows = {}
    with engine.connect() as conn:
        for name, table in meta.tables.items():
            if name == "alembic_version" or (like is not None and name not in like):
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            found = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*order))]
            if like is not None and like[name]:
                keep = like[name][0].keys()
                found = [{k: r[k] for k in keep} for r in found]
            rows[name] = found
    return rows


@pytest.mark.processes
def test_an_old_database_is_upgraded_with_every_row_kept(empty_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(empty_url)
    try:
        run_ddl(engine, engine.dialect.name)
        fill(engine)
        before = every_row(engine)
        assert sum(len(r) for r in before.values()) == 18
        write_config(tmp_path, empty_url)
        assert mailer(tmp_path, "db", "current").stdout.startswith("none (no migrations recorded")

        done = mailer(tmp_path, "db", "upgrade")
        assert done.returncode == 0, done.stderr
        assert "recorded at revision 0001" in done.stdout
        assert every_row(engine, like=before) == before
        assert migrate.differences(engine) == []
        assert mailer(tmp_path, "db", "current").stdout.strip() == f"{migrate.head()} (newest)"

        again = mailer(tmp_path, "db", "upgrade")
        assert again.returncode == 0, again.stderr
        assert "nothing to do" in again.stdout and "recorded" not in again.stdout
        listing = mailer(tmp_path, "blast", "list")
        assert listing.returncode == 0, listing.stderr
        assert "alert" in listing.stdout and "done" in listing.stdout
        assert every_row(engine, like=before) == before
    finally:
        engine.dispose()


@pytest.mark.processes
def test_a_database_with_only_some_old_tables_is_refused_untouched(
    empty_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(empty_url)
    try:
        run_ddl(engine, engine.dialect.name)
        with engine.begin() as conn:
            conn.exec_driver_sql('DROP TABLE "open"')
        write_config(tmp_path, empty_url)
        done = mailer(tmp_path, "db", "upgrade")
        assert done.returncode == 1
        assert "open" in done.stderr and "alembic_version" in done.stderr
        assert "alembic_version" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.processes
def test_init_makes_the_newest_schema_and_upgrade_then_has_nothing_to_do(
    empty_url: str, tmp_path: Path
) -> None:
    write_config(tmp_path, empty_url)
    done = mailer(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    assert mailer(tmp_path, "db", "current").stdout.strip() == f"{migrate.head()} (newest)"
    again = mailer(tmp_path, "db", "upgrade")
    assert "nothing to do" in again.stdout, again.stderr


def test_migrations_at_head_match_the_models_exactly(db: Database) -> None:
    assert migrate.current(db.engine) == migrate.head()
    assert migrate.differences(db.engine) == []


def test_the_models_differ_from_a_schema_missing_an_index(db: Database) -> None:
    """The comparison above can fail: it sees a dropped index (and so a missing revision)."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_delivery_sent_at")
    diffs = migrate.differences(db.engine)
    assert [d[0] for d in diffs] == ["add_index"]
    assert diffs[0][1].name == "ix_delivery_sent_at"


def test_several_processes_upgrading_an_empty_postgresql_schema_at_once(
    tmp_path: Path,
) -> None:
    with pg_schema() as url:
        write_config(tmp_path, url)
        env = mailer_env(tmp_path / "mailer.toml")
        processes = [
            subprocess.Popen(
                [*MAILER, "db", "upgrade"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60) for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], outputs
        upgraded = [out for out, _ in outputs if "upgraded from empty" in out]
        assert len(upgraded) == 1, outputs


def test_a_new_revision_is_generated_from_a_model_change() -> None:
    """`make migration` writes the next numbered file with the change the models make."""
    from sqlmodel import SQLModel

    extra = sa.Table(
        "scratch_note",
        SQLModel.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.String(50), nullable=False),
    )
    path = None
    try:
        path = migrate.new_revision("add scratch note")
        text = path.read_text("utf-8")
        assert path.name.startswith(f"{int(migrate.head()):04d}_")
        assert f'down_revision: str | None = "{int(migrate.head()) - 1:04d}"' in text.replace(
            "'", '"'
        )
        assert 'op.create_table(\n        "scratch_note"' in text or "'scratch_note'" in text
    finally:
        SQLModel.metadata.remove(extra)
        if path is not None:
            path.unlink()

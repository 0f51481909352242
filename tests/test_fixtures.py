"""The database fixtures give each test the same database a real migration makes.

``sqlite_db`` copies a file migrated once per pytest process and ``pg_db`` runs
again, in a new schema, the SQL a migration of an empty schema ran (see
``tests/conftest.py``); here each is compared with a database migrated on the spot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailer.store import Database, migrate, open_database
from tests.conftest import Recorded, pg_schema

TABLES = {"supporter", "blast", "delivery", "alert_revision", "alembic_version"}


def contents(conn: sa.Connection, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted (the migrations may write rows too)."""
    return {
        table: sorted(tuple(row) for row in conn.exec_driver_sql(f'SELECT * FROM "{table}"'))
        for table in tables
    }


def clauses(sql: str | None) -> list[str]:
    """The lines of a CREATE statement, sorted: Alembic's batch rebuilds of SQLite tables
    write a table's constraints in an order that changes from run to run."""
    return sorted(line.strip().rstrip(",").strip() for line in (sql or "").splitlines())


def sqlite_catalog(db: Database) -> dict[str, Any]:
    with db.engine.connect() as conn:
        schema = sorted(
            (kind, name, table, clauses(sql))
            for kind, name, table, sql in conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
            )
        )
        tables = [name for kind, name, _, _ in schema if kind == "table"]
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        return {"schema": schema, "rows": contents(conn, tables), "journal": journal}


def test_sqlite_db_is_the_database_a_migration_makes(sqlite_db: Database, tmp_path: Path) -> None:
    fresh = open_database(f"sqlite:///{tmp_path / 'fresh.db'}", create=True)
    try:
        expected = sqlite_catalog(fresh)
    finally:
        fresh.dispose()
    assert {name for _, name, _, _ in expected["schema"]} >= TABLES
    assert sqlite_catalog(sqlite_db) == expected
    assert migrate.current(sqlite_db.engine) == migrate.head()


PG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, column_default,
               is_nullable, character_maximum_length, numeric_precision
        FROM information_schema.columns WHERE table_schema = current_schema()""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace""",
    "indexes": """
        SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '')
        FROM pg_indexes WHERE schemaname = current_schema()""",
    "sequences": """
        SELECT sequence_name, data_type, start_value, increment
        FROM information_schema.sequences WHERE sequence_schema = current_schema()""",
    "types": """
        SELECT t.typname, t.typtype FROM pg_type t
        WHERE t.typnamespace = current_schema()::regnamespace AND t.typtype IN ('e', 'd')""",
    "enum values": """
        SELECT t.typname, e.enumlabel, e.enumsortorder FROM pg_enum e
        JOIN pg_type t ON t.oid = e.enumtypid
        WHERE t.typnamespace = current_schema()::regnamespace""",
}


def pg_catalog(db: Database) -> dict[str, Any]:
    with db.engine.connect() as conn:
        found: dict[str, Any] = {
            name: sorted(tuple(row) for row in conn.exec_driver_sql(query))
            for name, query in PG_QUERIES.items()
        }
        tables = sorted({row[0] for row in found["columns"]})
        found["rows"] = contents(conn, tables)
        return found


def test_pg_db_is_the_database_a_migration_makes(pg_db: Database) -> None:
    with pg_schema() as url:
        fresh = open_database(url, create=True)
        try:
            expected = pg_catalog(fresh)
        finally:
            fresh.dispose()
    assert {row[0] for row in expected["columns"]} >= TABLES
    assert pg_catalog(pg_db) == expected
    assert migrate.current(pg_db.engine) == migrate.head()


def test_the_recorded_migration_creates_the_tables(pg_migration: Recorded) -> None:
    statements = " ".join(statement for statement, _, _ in pg_migration)
    assert all(f"CREATE TABLE {table}" in statements for table in TABLES - {"alembic_version"})

"""Schema migrations (Alembic), run in code on the mailer's own connection.

The environment lives in ``mailer/store/migrations/`` (``env.py`` and
``versions/``) and ships with the package; no ``alembic.ini`` is needed.
Revision ``0001`` is the schema of the first release, exactly as the models
made it with ``create_all``.

:func:`upgrade` brings a database to the newest revision. An empty database
gets every revision in turn. A database made before migrations existed
(the mailer's tables are there, Alembic's ``alembic_version`` is not) is
first recorded as being at ``0001``, then upgraded like any other. On
PostgreSQL the whole upgrade is one transaction under an advisory lock, so
several processes starting at once on an empty database upgrade it once.

APScheduler's job table (``apscheduler_jobs``) belongs to APScheduler, which
creates it itself; migrations leave it alone.

A new revision after a model change: ``make migration MSG="what changed"``
(``python -m mailer.store.migrate revision MSG``) compares the models with a
scratch database at the newest revision and writes the next numbered file
into ``versions/``, to be read and corrected by hand before it is committed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from mailer.errors import MailerError
from mailer.store.models import UTCDateTime

MIGRATIONS = Path(__file__).with_name("migrations")
FIRST = "0001"
# The tables of revision 0001: a database without a version table but with
# all of these was made by `create_all` before migrations existed.
FIRST_TABLES = frozenset(
    {
        "supporter",
        "suppression",
        "mailing_list",
        "membership",
        "blast",
        "blast_list",
        "delivery",
        "sender_worker",
        "service_instance",
        "link",
        "click",
        "open",
        "event",
    }
)
NOT_OURS = frozenset({"apscheduler_jobs", "alembic_version"})
_PG_UPGRADE_LOCK = "SELECT pg_advisory_xact_lock(hashtext('mailer.migrate:' || current_schema()))"


# Alembic tells at INFO which database it found and each step it runs; the mailer
# logs at INFO too, and those lines are noise there. Warnings still come through.
logging.getLogger("alembic").setLevel(logging.WARNING)


class MigrationError(MailerError):
    """The database cannot be brought to the schema this version of the mailer needs."""


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave tables the mailer's migrations do not own out of comparisons."""
    return not (type_ == "table" and name in NOT_OURS)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Write the models' own column types as the plain SQLAlchemy types they store as."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the package's migrations, on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this version of the mailer knows."""
    found = ScriptDirectory.from_config(config()).get_current_head()
    assert found is not None
    return found


@dataclass(frozen=True)
class Upgraded:
    before: str | None  # the revision before (None: an empty database)
    after: str
    adopted: bool  # a database from before migrations, recorded at 0001 first


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Any, revision: str = "head") -> Upgraded:
    """Bring the database of ``engine`` to ``revision`` (default: the newest)."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild SQLite tables (copy, drop, rename). SQLite's own
            # procedure for that turns foreign-key enforcement off around the change
            # (it cannot be switched inside a transaction) and checks the keys before
            # committing, so a table others refer to can be rebuilt.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                done = _upgrade(conn, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MigrationError(
                            f"the upgrade would leave {len(broken)} rows whose foreign keys "
                            f"point nowhere (first: {tuple(broken[0])}); nothing was changed"
                        )
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
    return done


def _upgrade(conn: Connection, revision: str) -> Upgraded:
    if conn.dialect.name == "postgresql":
        # One upgrader at a time per schema; the others wait, then find nothing to do.
        conn.execute(text(_PG_UPGRADE_LOCK))
    tables = set(inspect(conn).get_table_names())
    before = current_revision(conn) if "alembic_version" in tables else None
    adopted = False
    if before is None and tables & FIRST_TABLES:
        missing = FIRST_TABLES - tables
        if missing:
            raise MigrationError(
                "the database has some of the mailer's tables but not "
                f"{', '.join(sorted(missing))}, and no alembic_version table; "
                "it was made by a version older than the first release and cannot be upgraded"
            )
        command.stamp(config(conn), FIRST)
        before, adopted = FIRST, True
    command.upgrade(config(conn), revision)
    after = current_revision(conn)
    assert after is not None
    return Upgraded(before, after, adopted)


def current(engine: Any) -> str | None:
    """The revision the database is at (None: no migrations recorded)."""
    with engine.connect() as conn:
        return current_revision(conn)


def differences(engine: Any) -> list[Any]:
    """What the database's schema lacks or has beyond the models (empty when they match)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": include_name, "compare_type": True}
        )
        diffs: list[Any] = compare_metadata(context, SQLModel.metadata)
        return diffs


def new_revision(message: str) -> Path:
    """Write the next revision, autogenerated from the models' difference to the newest."""
    numbers = [int(p.name[:4]) for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'scratch.db'}")
        try:
            upgrade(engine)
            with engine.begin() as conn:
                script = command.revision(
                    config(conn), message=message, autogenerate=True, rev_id=rev_id
                )
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "revision":
        print('usage: python -m mailer.store.migrate revision "what changed"', file=sys.stderr)
        return 2
    print(new_revision(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Alembic's environment for the mailer: runs on the connection it is handed.

It is never run by the ``alembic`` command line with an ``alembic.ini``;
:mod:`mailer.store.migrate` builds the configuration in code and passes the
mailer's own connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel

from mailer.store import models  # noqa: F401  (registers the tables)
from mailer.store.migrate import include_name, render_item

connection: Any = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    include_name=include_name,
    # SQLite cannot ALTER most things; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()

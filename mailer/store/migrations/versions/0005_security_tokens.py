"""Security: click rows that count their replays; API tokens that expire.

Revision ID: 0005
Revises: 0004
Created: 2026-12-06 06:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("click") as batch:
        batch.add_column(sa.Column("clicks", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("last_clicked_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("click") as batch:
        batch.drop_column("last_clicked_at")
        batch.drop_column("clicks")

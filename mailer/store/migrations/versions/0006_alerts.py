"""Alerts kept in the database, with revisions; a blast may pin the revision it sends.

Existing databases gain four empty tables and a nullable column: no row changes,
and blasts made from template folders keep sending from them.

Revision ID: 0006
Revises: 0005
Created: 2026-12-06 06:15:49.626971
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("default_language", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "alert_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column(
            "format",
            sa.Enum("markdown", "folder", name="alertformat", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("default_language", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_id", "number", name="uq_alert_revision_number"),
    )
    op.create_table(
        "alert_file",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("content", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["alert_revision.id"],
        ),
        sa.PrimaryKeyConstraint("revision_id", "path"),
    )
    op.create_table(
        "alert_text",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("preheader", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["alert_revision.id"],
        ),
        sa.PrimaryKeyConstraint("revision_id", "language"),
    )
    with op.batch_alter_table("blast", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_revision_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_blast_alert_revision_id", "alert_revision", ["alert_revision_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("blast", schema=None) as batch_op:
        batch_op.drop_constraint("fk_blast_alert_revision_id", type_="foreignkey")
        batch_op.drop_column("alert_revision_id")

    op.drop_table("alert_text")
    op.drop_table("alert_file")
    op.drop_table("alert_revision")
    op.drop_table("alert")

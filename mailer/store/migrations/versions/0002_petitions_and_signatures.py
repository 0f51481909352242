"""Petitions and signatures; a blast may lead to a petition and follow up on "no action".

Revision ID: 0002
Revises: 0001
Created: 2026-11-28 11:45:41.219203
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "petition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("target_url", sa.String(), nullable=False),
        sa.Column("goal", sa.Integer(), nullable=False),
        sa.Column("texts", sa.JSON(), nullable=False),
        sa.Column("default_language", sa.String(length=16), nullable=False),
        sa.Column("opt_in_list", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("zip", sa.String(length=20), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("blast_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("opted_in", sa.Boolean(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petition.id"],
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"],
            ["supporter.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("petition_id", "email", name="uq_signature_petition_email"),
    )
    with op.batch_alter_table("signature", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signature_blast_id"), ["blast_id"], unique=False)
        batch_op.create_index(
            "ix_signature_petition_created", ["petition_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_signature_supporter_id"), ["supporter_id"], unique=False
        )

    with op.batch_alter_table("blast", schema=None) as batch_op:
        batch_op.add_column(sa.Column("petition_id", sa.Integer(), nullable=True))
        # existing blasts are follow-ups (if at all) of the only kind there was: no click
        batch_op.add_column(
            sa.Column("follow_up_audience", sa.String(length=16), nullable=False, server_default="")
        )
        batch_op.create_index(batch_op.f("ix_blast_petition_id"), ["petition_id"], unique=False)
        batch_op.create_foreign_key("fk_blast_petition_id", "petition", ["petition_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("blast", schema=None) as batch_op:
        batch_op.drop_constraint("fk_blast_petition_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_blast_petition_id"))
        batch_op.drop_column("follow_up_audience")
        batch_op.drop_column("petition_id")

    with op.batch_alter_table("signature", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signature_supporter_id"))
        batch_op.drop_index("ix_signature_petition_created")
        batch_op.drop_index(batch_op.f("ix_signature_blast_id"))

    op.drop_table("signature")
    op.drop_table("petition")

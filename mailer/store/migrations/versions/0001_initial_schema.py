"""The schema of the first release: every table as the models made it with create_all.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blast",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("cta_url", sa.String(), nullable=False),
        sa.Column("sender_name", sa.String(), nullable=False),
        sa.Column("sender_address", sa.String(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "scheduled",
                "sending",
                "paused",
                "done",
                "cancelled",
                "missed",
                name="blaststatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("segment", sa.JSON(), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.Column("follow_up_of", sa.Integer(), nullable=True),
        sa.Column("follow_up_after", sa.Integer(), nullable=True),
        sa.Column("checks_overridden", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["follow_up_of"],
            ["blast.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index(op.f("ix_blast_status"), "blast", ["status"], unique=False)

    op.create_table(
        "mailing_list",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "service_instance",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("web_url", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "supporter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("zip", sa.String(length=20), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "unsubscribed",
                "bounced",
                "complained",
                name="supporterstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("status_changed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_supporter_email"), "supporter", ["email"], unique=True)
    op.create_index(op.f("ix_supporter_status"), "supporter", ["status"], unique=False)

    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_suppression_email"), "suppression", ["email"], unique=True)

    op.create_table(
        "blast_list",
        sa.Column("blast_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["mailing_list.id"],
        ),
        sa.PrimaryKeyConstraint("blast_id", "list_id"),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blast_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "sending",
                "sent",
                "deferred",
                "failed",
                "bounced",
                "skipped",
                "unknown",
                name="deliverystate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("reply_code", sa.Integer(), nullable=True),
        sa.Column("reply_text", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("worker", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"],
            ["supporter.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("blast_id", "supporter_id", name="uq_delivery_blast_supporter"),
    )
    op.create_index(
        "ix_delivery_blast_state_id", "delivery", ["blast_id", "state", "id"], unique=False
    )
    op.create_index(op.f("ix_delivery_sent_at"), "delivery", ["sent_at"], unique=False)
    op.create_index(op.f("ix_delivery_supporter_id"), "delivery", ["supporter_id"], unique=False)

    op.create_table(
        "link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blast_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("is_cta", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("blast_id", "url", name="uq_link_blast_url"),
    )
    op.create_index(op.f("ix_link_blast_id"), "link", ["blast_id"], unique=False)

    op.create_table(
        "membership",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["mailing_list.id"],
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"],
            ["supporter.id"],
        ),
        sa.PrimaryKeyConstraint("list_id", "supporter_id"),
    )
    op.create_index(
        op.f("ix_membership_supporter_id"), "membership", ["supporter_id"], unique=False
    )

    op.create_table(
        "sender_worker",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("blast_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "click",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blast_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("clicked_at", sa.DateTime(), nullable=True),
        sa.Column("suspected_bot", sa.Boolean(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["link.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_click_blast_id"), "click", ["blast_id"], unique=False)
    op.create_index(op.f("ix_click_delivery_id"), "click", ["delivery_id"], unique=False)

    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("blast_id", sa.Integer(), nullable=True),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"],
            ["supporter.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_event_action"), "event", ["action"], unique=False)
    op.create_index(op.f("ix_event_at"), "event", ["at"], unique=False)
    op.create_index(op.f("ix_event_blast_id"), "event", ["blast_id"], unique=False)
    op.create_index(op.f("ix_event_supporter_id"), "event", ["supporter_id"], unique=False)

    op.create_table(
        "open",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blast_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["blast_id"],
            ["blast.id"],
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_open_blast_id"), "open", ["blast_id"], unique=False)
    op.create_index(op.f("ix_open_delivery_id"), "open", ["delivery_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_open_delivery_id"), table_name="open")
    op.drop_index(op.f("ix_open_blast_id"), table_name="open")

    op.drop_table("open")
    op.drop_index(op.f("ix_event_supporter_id"), table_name="event")
    op.drop_index(op.f("ix_event_blast_id"), table_name="event")
    op.drop_index(op.f("ix_event_at"), table_name="event")
    op.drop_index(op.f("ix_event_action"), table_name="event")

    op.drop_table("event")
    op.drop_index(op.f("ix_click_delivery_id"), table_name="click")
    op.drop_index(op.f("ix_click_blast_id"), table_name="click")

    op.drop_table("click")
    op.drop_table("sender_worker")
    op.drop_index(op.f("ix_membership_supporter_id"), table_name="membership")

    op.drop_table("membership")
    op.drop_index(op.f("ix_link_blast_id"), table_name="link")

    op.drop_table("link")
    op.drop_index(op.f("ix_delivery_supporter_id"), table_name="delivery")
    op.drop_index(op.f("ix_delivery_sent_at"), table_name="delivery")
    op.drop_index("ix_delivery_blast_state_id", table_name="delivery")

    op.drop_table("delivery")
    op.drop_table("blast_list")
    op.drop_index(op.f("ix_suppression_email"), table_name="suppression")

    op.drop_table("suppression")
    op.drop_index(op.f("ix_supporter_status"), table_name="supporter")
    op.drop_index(op.f("ix_supporter_email"), table_name="supporter")

    op.drop_table("supporter")
    op.drop_table("service_instance")
    op.drop_table("mailing_list")
    op.drop_index(op.f("ix_blast_status"), table_name="blast")

    op.drop_table("blast")

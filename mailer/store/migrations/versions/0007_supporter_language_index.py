"""An index on supporter (language, status), for audience counts and check samples.

The studio counts an audience by segment as its organizer types one, and the
pre-flight check picks a few recipients per language; both looked at every
supporter's row to find those of one language. Existing databases gain the
index; no row changes.

Revision ID: 0007
Revises: 0006
Created: 2026-12-06 09:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_supporter_language_status", "supporter", ["language", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_supporter_language_status", table_name="supporter")

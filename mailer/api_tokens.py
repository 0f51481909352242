"""API tokens as an admin manages them: listed (never shown again) and revoked one at a time.

Tokens are made by :func:`mailer.accounts.new_api_token`, optionally with an
expiry; a token past its ``expires_at`` no longer signs anyone in
(:func:`mailer.accounts.token_caller`). Disabling a user still ends all of
their tokens at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from mailer.errors import NotFound
from mailer.lifecycle import audit
from mailer.store import Database
from mailer.store.models import AdminUser, ApiToken


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: never the token or its hash."""

    id: int
    user: str
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None


def list_tokens(db: Database, user: str | None = None) -> list[TokenInfo]:
    """Every API token (of ``user`` when given), oldest first."""
    query = select(ApiToken, AdminUser.name).join(AdminUser, col(AdminUser.id) == ApiToken.user_id)
    if user is not None:
        query = query.where(AdminUser.name == user.strip().lower())
    with db.session() as session:
        rows = session.exec(query.order_by(col(ApiToken.id))).all()
    return [
        TokenInfo(t.id or 0, name, t.created_at, t.last_used_at, t.expires_at) for t, name in rows
    ]


def revoke_token(db: Database, token_id: int, *, actor: str, now: datetime) -> None:
    """End the API token ``token_id`` at once (the user's other tokens stay)."""
    with db.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"no API token {token_id} (`mailer user tokens` lists them)")
        user = session.get(AdminUser, row.user_id)
        session.delete(row)
        audit(
            session,
            "user.token_revoked",
            actor=actor,
            now=now,
            detail={"name": user.name if user else "", "token": token_id},
        )

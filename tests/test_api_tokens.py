"""API tokens: listed, revoked one at a time, and given an expiry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from mailer import accounts
from mailer.errors import NotFound
from mailer.store import Database, Event, open_database
from mailer.store.models import UserRole, utcnow
from tests import processes
from tests.admin_helpers import PASSWORD
from tests.conftest import TEST_SECRET


def test_a_token_with_an_expiry_stops_working_then(db: Database) -> None:
    now = utcnow()
    accounts.add_user(db, "bot", UserRole.VIEWER, PASSWORD, actor="t", now=now)
    token = accounts.new_api_token(db, "bot", actor="t", now=now, expires_in=timedelta(days=1))
    assert accounts.token_caller(db, token, now=now + timedelta(hours=23)) is not None
    assert accounts.token_caller(db, token, now=now + timedelta(days=1, seconds=1)) is None


def test_tokens_are_listed_and_revoked_one_at_a_time(db: Database) -> None:
    from mailer.api_tokens import list_tokens, revoke_token

    now = utcnow()
    accounts.add_user(db, "bot", UserRole.VIEWER, PASSWORD, actor="t", now=now)
    first = accounts.new_api_token(db, "bot", actor="t", now=now)
    second = accounts.new_api_token(db, "bot", actor="t", now=now, expires_in=timedelta(days=7))
    listed = list_tokens(db)
    assert [(t.user, t.expires_at is not None) for t in listed] == [("bot", False), ("bot", True)]
    revoke_token(db, listed[0].id, actor="t", now=now)
    assert accounts.token_caller(db, first, now=now) is None
    assert accounts.token_caller(db, second, now=now) is not None  # the other still works
    assert [t.id for t in list_tokens(db, "bot")] == [listed[1].id]
    with pytest.raises(NotFound, match="no API token 999"):
        revoke_token(db, 999, actor="t", now=now)
    with db.session() as session:
        (revoked,) = session.exec(select(Event).where(Event.action == "user.token_revoked")).all()
    assert revoked.detail == {"name": "bot", "token": listed[0].id}


def test_cli_lists_revokes_and_expires_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = processes.write_config(
        tmp_path,
        database_url=url,
        smtp_port=None,
        sections={"security": {"secret_key": TEST_SECRET}},
    )
    db = open_database(url, create=True)
    try:
        accounts.add_user(db, "bot", UserRole.VIEWER, PASSWORD, actor="t", now=utcnow())
        made = processes.run_mailer(
            tmp_path, "user", "token", "bot", "--expires-in-days", "30", config=config
        )
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        caller = accounts.token_caller(db, token, now=utcnow() + timedelta(days=29))
        assert caller is not None
        assert accounts.token_caller(db, token, now=utcnow() + timedelta(days=31)) is None
        listed = processes.run_mailer(tmp_path, "user", "tokens", config=config)
        assert listed.returncode == 0, listed.stderr
        token_id = listed.stdout.split()[0]
        assert "bot" in listed.stdout and token not in listed.stdout
        done = processes.run_mailer(tmp_path, "user", "revoke-token", token_id, config=config)
        assert done.returncode == 0, done.stderr
        assert accounts.token_caller(db, token, now=utcnow()) is None
    finally:
        db.dispose()

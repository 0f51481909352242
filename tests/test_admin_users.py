"""Admin accounts that cannot lock the last admin out: ids not spellings, `user enable`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mailer import accounts
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.store import Database, open_database
from mailer.store.models import AdminUser, UserRole, utcnow
from tests import processes
from tests.admin_helpers import PASSWORD, add_users, serve, sign_in
from tests.conftest import TEST_SECRET


def user(db: Database, name: str) -> AdminUser:
    with db.session() as session:
        return accounts.find_user(session, name)


@pytest.mark.parametrize("spelling", ["ADMIN", "Admin", "admin"])
def test_an_admin_cannot_disable_themself_by_any_spelling(
    sqlite_db: Database, settings: Settings, spelling: str
) -> None:
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "admin")
        done = client.post(f"/admin/users/{spelling}/disable", data={"csrf": csrf})
        assert done.status_code == 400 and "yourself" in done.text
        assert client.get("/admin/").status_code == 200  # still signed in
    assert not user(sqlite_db, "admin").disabled


def test_the_last_active_admin_cannot_be_disabled_or_demoted(db: Database) -> None:
    now = utcnow()
    for name in ("ann", "bob"):
        accounts.add_user(db, name, UserRole.ADMIN, PASSWORD, actor="t", now=now)
    accounts.add_user(db, "olga", UserRole.ORGANIZER, PASSWORD, actor="t", now=now)
    accounts.set_disabled(db, "bob", True, actor="t", now=now)  # ann is still an admin
    with pytest.raises(InvalidState, match="ann is the last active admin"):
        accounts.set_disabled(db, "ann", True, actor="t", now=now)
    with pytest.raises(InvalidState, match="ann is the last active admin"):
        accounts.set_role(db, "ann", UserRole.VIEWER, actor="t", now=now)
    assert not user(db, "ann").disabled and user(db, "ann").role is UserRole.ADMIN
    accounts.set_disabled(db, "olga", True, actor="t", now=now)  # not an admin: fine
    accounts.set_role(db, "bob", UserRole.VIEWER, actor="t", now=now)  # disabled: fine
    accounts.set_disabled(db, "bob", False, actor="t", now=now)
    accounts.set_role(db, "bob", UserRole.ADMIN, actor="t", now=now)
    accounts.set_role(db, "ann", UserRole.ORGANIZER, actor="t", now=now)  # bob is one now


def test_user_enable_command(tmp_path: Path) -> None:
    config = processes.write_config(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'm.db'}",
        smtp_port=None,
        sections={"security": {"secret_key": TEST_SECRET}},
    )
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", create=True)
    try:
        accounts.add_user(db, "admin", UserRole.ADMIN, PASSWORD, actor="t", now=utcnow())
        accounts.add_user(db, "viv", UserRole.VIEWER, PASSWORD, actor="t", now=utcnow())
        accounts.set_disabled(db, "viv", True, actor="t", now=utcnow())
        done = processes.run_mailer(tmp_path, "user", "enable", "VIV", config=config)
        assert done.returncode == 0, done.stderr
        assert "user viv enabled" in done.stdout
        assert not user(db, "viv").disabled
        refused = processes.run_mailer(tmp_path, "user", "disable", "admin", config=config)
        assert refused.returncode == 1 and "last active admin" in refused.stderr
    finally:
        db.dispose()


def test_the_users_page_still_disables_another_user(
    sqlite_db: Database, settings: Settings
) -> None:
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "admin")
        done = client.post("/admin/users/Viewer/disable", data={"csrf": csrf})
        assert done.status_code == 303
    assert user(sqlite_db, "viewer").disabled

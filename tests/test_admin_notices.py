"""Admin notices: only what the server said after an action, never text from a link."""

from __future__ import annotations

import httpx

from mailer.config import Settings
from mailer.store import Database
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import TEST_SECRET

PLANTED = "Your session expired: sign in again at evil.example"


def test_a_notice_in_the_link_is_not_shown(sqlite_db: Database, settings: Settings) -> None:
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client, "admin")
        for path in ("/admin/", "/admin/users", "/admin/suppressions"):
            page = client.get(path, params={"notice": PLANTED})
            assert page.status_code == 200 and "evil.example" not in page.text, path


def test_the_notice_of_an_action_is_shown_once(sqlite_db: Database, settings: Settings) -> None:
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "admin")
        done = client.post(
            "/admin/suppressions",
            data={"csrf": csrf, "email": "x@example.org"},
            follow_redirects=True,
        )
        assert done.status_code == 200 and "Address suppressed." in done.text
        assert "Address suppressed." not in client.get("/admin/suppressions").text


def test_a_sealed_notice_cannot_be_altered() -> None:
    from mailer.notices import seal, unseal

    sealed = seal(TEST_SECRET, "User bo disabled.")
    assert unseal(TEST_SECRET, sealed) == "User bo disabled."
    _, tag = sealed.split(".")
    assert unseal(TEST_SECRET, seal(TEST_SECRET, PLANTED).split(".")[0] + "." + tag) == ""
    assert unseal("another-secret-key-that-is-long-enough-0123", sealed) == ""
    assert unseal(TEST_SECRET, "not.a.notice") == unseal(TEST_SECRET, "") == ""

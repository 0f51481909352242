"""Issue 15, item 6: the sign-in lockout holds under concurrency, memory stays bounded,
and a lockout writes one audit event, not one per refused try."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

from sqlmodel import func, select

from mailer import accounts
from mailer.store import Database, Event
from mailer.store.models import UserRole, utcnow
from tests.admin_helpers import PASSWORD


def concurrently(db: Database, passwords: list[str]) -> list[accounts.SignIn]:
    """Every password tried for "ana" at the same moment, each on its own thread."""
    start = threading.Barrier(len(passwords))
    now = utcnow()
    results: list[accounts.SignIn | None] = [None] * len(passwords)

    def attempt(i: int) -> None:
        start.wait()
        results[i] = accounts.sign_in(db, "ana", passwords[i], now=now)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(passwords))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_concurrent_wrong_passwords_get_no_more_checks_than_the_policy_allows(
    db: Database,
) -> None:
    accounts.add_user(db, "ana", UserRole.ADMIN, PASSWORD, actor="t", now=utcnow())
    results = concurrently(db, ["wrong"] * 16)
    checked = [r for r in results if r.locked_until is None]  # answered "wrong password"
    assert len(checked) <= accounts.MAX_FAILURES
    assert all(r.user is None for r in results)
    with db.session() as session:
        failed = session.exec(select(func.count()).where(Event.action == "user.login_failed")).one()
    assert failed == len(checked)
    # The name is locked now: the right password is refused too.
    after = accounts.sign_in(db, "ana", PASSWORD, now=utcnow())
    assert after.user is None and after.locked_until is not None


def test_a_lockout_is_one_audit_event_however_many_tries_are_refused(db: Database) -> None:
    accounts.add_user(db, "ana", UserRole.ADMIN, PASSWORD, actor="t", now=utcnow())
    start = utcnow()
    for i in range(accounts.MAX_FAILURES):
        accounts.sign_in(db, "ana", "wrong", now=start + timedelta(seconds=i))
    at = start + timedelta(seconds=accounts.MAX_FAILURES)
    for i in range(200):
        refused = accounts.sign_in(db, "ana", "wrong", now=at + timedelta(milliseconds=i))
        assert refused.locked_until is not None
    with db.session() as session:
        actions = dict(
            session.exec(
                select(Event.action, func.count())
                .where(Event.actor == "ana")
                .group_by(Event.action)
            ).all()
        )
    assert actions == {"user.login_failed": accounts.MAX_FAILURES, "user.login_locked": 1}


def test_concurrent_sign_ins_do_not_each_take_argon2s_memory(tmp_path: Path) -> None:
    # A fresh process, so its peak RSS is about this and nothing else. Each argon2id
    # check takes 64 MiB; 16 at once would add about 1 GiB.
    script = textwrap.dedent(
        f"""
        import resource, threading
        from mailer import accounts
        from mailer.store import open_database
        from mailer.store.models import UserRole, utcnow

        db = open_database("sqlite:///{tmp_path / "m.db"}", create=True)
        accounts.add_user(db, "ana", UserRole.ADMIN, "x" * 12, actor="t", now=utcnow())
        accounts.sign_in(db, "ana", "x" * 12, now=utcnow())
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        barrier = threading.Barrier(16)

        def attempt(i):
            barrier.wait()
            accounts.sign_in(db, f"user{{i}}", "wrong", now=utcnow())

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    grown_mib = int(done.stdout.strip())
    assert grown_mib < 64 * (accounts.MAX_CONCURRENT_CHECKS + 3), grown_mib

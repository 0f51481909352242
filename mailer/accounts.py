"""People who use the web admin and the JSON API: users, roles, sign-in, tokens.

- Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's
  low-memory profile); only the hash is stored, and a hash made with weaker
  parameters is replaced at the next successful sign-in.
- A browser session is a random token in a cookie; the database keeps only
  its SHA-256, with the session's CSRF token and expiry, so signing out (or
  disabling a user) ends it at once.
- API tokens are random too and stored only as SHA-256; ``mailer user token``
  prints one once.
- Lockout: after :data:`MAX_FAILURES` failed sign-ins for one name within
  :data:`FAILURE_WINDOW` (and since its last success), the name is refused,
  even with the right password, for a wait that doubles with every further
  failure (:data:`FIRST_WAIT`, at most :data:`LONGEST_WAIT`). Unknown names
  are counted the same way and take as long to refuse, so the answers do
  not tell which names exist. A try is recorded before its password is
  checked, so concurrent tries cannot get past the count (:func:`sign_in`).

Roles are ordered: a viewer reads; an organizer also acts on blasts; an
admin also manages users, suppressions and supporters (:func:`allowed`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, text
from sqlmodel import Session, col, func, select

from mailer.errors import InvalidState, NotFound
from mailer.lifecycle import audit
from mailer.store import Database
from mailer.store.models import (
    AdminSession,
    AdminUser,
    ApiToken,
    LoginAttempt,
    UserRole,
    utcnow,
)

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
KEEP_ATTEMPTS = timedelta(days=1)
# argon2id takes 64 MiB per check: at most this many at once per process, and a try
# waits at most CHECK_QUEUE_WAIT seconds for its turn.
MAX_CONCURRENT_CHECKS = 2
CHECK_QUEUE_WAIT = 10.0
MIN_PASSWORD = 10

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_hasher = PasswordHasher()
_checks = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so that takes as long as a wrong password.

    Made on first use, not at import: every CLI command imports this module.
    """
    return _hasher.hash(secrets.token_urlsafe(16))


class Permission(StrEnum):
    READ = "read"  # dashboards, blast pages, send logs, supporters
    BLASTS = "blasts"  # create, test-send, schedule, pause, resume, cancel blasts
    MANAGE = "manage"  # users, suppressions, unsubscribing supporters


_GRANTS: dict[UserRole, frozenset[Permission]] = {
    UserRole.VIEWER: frozenset({Permission.READ}),
    UserRole.ORGANIZER: frozenset({Permission.READ, Permission.BLASTS}),
    UserRole.ADMIN: frozenset(Permission),
}


def allowed(role: UserRole, permission: Permission) -> bool:
    return permission in _GRANTS[role]


def digest(token: str) -> str:
    """What is stored of a session or API token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not _NAME.match(name):
        raise InvalidState(
            f"user name {name!r}: use 1-100 lowercase letters, digits, '.', '_' or '-'"
        )
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidState(f"a password needs at least {MIN_PASSWORD} characters")


def add_user(
    db: Database, name: str, role: UserRole, password: str, *, actor: str, now: datetime
) -> AdminUser:
    name = check_name(name)
    check_password(password)
    with db.session() as session:
        if session.exec(select(AdminUser).where(AdminUser.name == name)).first() is not None:
            raise InvalidState(f"a user named {name!r} exists already")
        user = AdminUser(name=name, role=role, password_hash=_hasher.hash(password), created_at=now)
        session.add(user)
        session.flush()
        audit(session, "user.added", actor=actor, now=now, detail={"name": name, "role": str(role)})
    return user


def find_user(session: Session, name: str) -> AdminUser:
    user = session.exec(select(AdminUser).where(AdminUser.name == name.strip().lower())).first()
    if user is None:
        raise NotFound(f"no user {name!r} (`mailer user list` shows them)")
    return user


def _keep_an_admin(session: Session, user: AdminUser, *, acting_id: int | None) -> None:
    """Refuse to take ``user`` out of the active admins when they are the last one, or when
    they are the one acting (compared by id, never by how the name was spelled)."""
    if acting_id is not None and user.id == acting_id:
        raise InvalidState("you cannot disable or demote yourself; ask another admin")
    if user.disabled or user.role != UserRole.ADMIN:
        return
    # Lock the active admins' rows (PostgreSQL) so that two admins taking each other out
    # at once cannot both succeed; SQLite runs one write transaction at a time.
    others = session.exec(
        select(AdminUser.id)
        .where(
            AdminUser.role == UserRole.ADMIN,
            col(AdminUser.disabled).is_(False),
            AdminUser.id != user.id,
        )
        .with_for_update()
    ).all()
    if not others:
        raise InvalidState(
            f"{user.name} is the last active admin; make another user an admin first"
        )


def set_role(
    db: Database,
    name: str,
    role: UserRole,
    *,
    actor: str,
    now: datetime,
    acting_id: int | None = None,
) -> None:
    """Change a user's role; never the last active admin's, nor the acting user's own."""
    with db.session() as session:
        user = find_user(session, name)
        if role != UserRole.ADMIN:
            _keep_an_admin(session, user, acting_id=acting_id)
        user.role = role
        session.add(user)
        audit(
            session,
            "user.role_changed",
            actor=actor,
            now=now,
            detail={"name": user.name, "role": str(role)},
        )


def set_disabled(
    db: Database,
    name: str,
    disabled: bool,
    *,
    actor: str,
    now: datetime,
    acting_id: int | None = None,
) -> None:
    """Disable (or enable again) a user; disabling ends their sessions and API tokens.

    The last active admin, and the acting user (``acting_id``), cannot be disabled.
    """
    with db.session() as session:
        user = find_user(session, name)
        if disabled:
            _keep_an_admin(session, user, acting_id=acting_id)
        user.disabled = disabled
        session.add(user)
        if disabled:
            session.execute(delete(AdminSession).where(col(AdminSession.user_id) == user.id))
            session.execute(delete(ApiToken).where(col(ApiToken.user_id) == user.id))
        audit(
            session,
            "user.disabled" if disabled else "user.enabled",
            actor=actor,
            now=now,
            detail={"name": user.name},
        )


def list_users(db: Database) -> list[AdminUser]:
    with db.session() as session:
        return list(session.exec(select(AdminUser).order_by(col(AdminUser.name))))


@dataclass(frozen=True)
class SignIn:
    user: AdminUser | None  # None: refused
    locked_until: datetime | None = None  # set when refused because of the lockout
    busy: bool = False  # refused because too many passwords were being checked at once


def locked_until(
    session: Session, name: str, now: datetime, *, exclude: int | None = None
) -> datetime | None:
    """When ``name`` may try again, or None when it is not locked out.

    ``exclude``: a try (by id) not to count, the one being decided.
    """
    last_ok = session.exec(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.name == name, col(LoginAttempt.ok).is_(True)
        )
    ).one()
    since = now - FAILURE_WINDOW
    if last_ok is not None and last_ok > since:
        since = last_ok
    failures = session.exec(
        select(func.count(), func.max(LoginAttempt.at)).where(
            LoginAttempt.name == name,
            col(LoginAttempt.ok).is_(False),
            col(LoginAttempt.at) > since,
            col(LoginAttempt.id) != (exclude if exclude is not None else -1),
        )
    ).one()
    count, latest = failures
    if count < MAX_FAILURES or latest is None:
        return None
    wait = min(FIRST_WAIT * 2 ** (count - MAX_FAILURES), LONGEST_WAIT)
    until: datetime = latest + wait
    return until if until > now else None


def _lock_name(session: Session, name: str) -> None:
    """Serialize the sign-in bookkeeping of one name until this transaction ends.

    PostgreSQL: a transaction-level advisory lock on the name. SQLite: the
    caller's transaction starts with a write, which takes the database's
    write lock, so nothing else is needed.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _failures_before(session: Session, name: str, attempt_id: int, now: datetime) -> int:
    """Failed (or still unverified) tries of ``name`` before ``attempt_id`` that count."""
    last_ok = session.exec(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.name == name, col(LoginAttempt.ok).is_(True)
        )
    ).one()
    since = now - FAILURE_WINDOW
    if last_ok is not None and last_ok > since:
        since = last_ok
    return session.exec(
        select(func.count()).where(
            LoginAttempt.name == name,
            col(LoginAttempt.ok).is_(False),
            col(LoginAttempt.at) > since,
            col(LoginAttempt.id) != attempt_id,
        )
    ).one()


def _verify(user: AdminUser | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False


def sign_in(db: Database, name: str, password: str, *, now: datetime) -> SignIn:
    """Check a name and password, with the lockout; every checked try is recorded.

    The try is recorded (as a failure) before the password is checked, under
    a lock on the name, so tries at the same moment see each other: however
    many arrive at once, at most :data:`MAX_FAILURES` get their password
    checked before the name is locked. A try refused by the lockout is not
    recorded and writes no audit event; the failure that starts a lockout
    writes one ``user.login_locked``. At most :data:`MAX_CONCURRENT_CHECKS`
    argon2 checks run at once in this process (each takes 64 MiB); a try that
    cannot get a turn within :data:`CHECK_QUEUE_WAIT` is refused as busy and
    not counted.
    """
    name = name.strip().lower()[:100]
    with db.session() as session:
        attempt = LoginAttempt(name=name, at=now, ok=False)
        session.add(attempt)
        session.flush()  # the write first: on SQLite this takes the write lock
        _lock_name(session, name)
        assert attempt.id is not None
        attempt_id = attempt.id
        until = locked_until(session, name, now, exclude=attempt_id)
        if until is not None:
            session.delete(attempt)
            return SignIn(None, locked_until=until)
        starts_lockout = _failures_before(session, name, attempt_id, now) >= MAX_FAILURES - 1
        session.execute(  # older tries no longer count; the audit log keeps them
            delete(LoginAttempt).where(
                col(LoginAttempt.name) == name, col(LoginAttempt.at) < now - KEEP_ATTEMPTS
            )
        )
        user = session.exec(select(AdminUser).where(AdminUser.name == name)).first()
    if not _checks.acquire(timeout=CHECK_QUEUE_WAIT):
        with db.session() as session:
            session.execute(delete(LoginAttempt).where(col(LoginAttempt.id) == attempt_id))
        return SignIn(None, busy=True)
    try:
        ok = _verify(user, password) and user is not None and not user.disabled
    finally:
        _checks.release()
    with db.session() as session:
        if not ok or user is None:
            audit(session, "user.login_failed", actor=name, now=now)
            if starts_lockout:
                until = locked_until(session, name, now)
                audit(
                    session,
                    "user.login_locked",
                    actor=name,
                    now=now,
                    detail={"until": until.isoformat() if until else None},
                )
            return SignIn(None)
        row = session.get(LoginAttempt, attempt_id)
        if row is not None:
            row.ok = True
            session.add(row)
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
            session.add(user)
        audit(session, "user.logged_in", actor=user.name, now=now)
        return SignIn(user)


def start_session(db: Database, user: AdminUser, *, now: datetime) -> tuple[str, str]:
    """A new browser session for ``user``: (cookie token, CSRF token)."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with db.session() as session:
        session.execute(delete(AdminSession).where(col(AdminSession.expires_at) < now))
        session.add(
            AdminSession(
                token_hash=digest(token),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return token, csrf


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the user, and (for a browser session) its CSRF token."""

    user: AdminUser
    csrf_token: str = ""  # empty for API tokens, which are not sent by browsers on their own

    @property
    def name(self) -> str:
        return self.user.name

    def may(self, permission: Permission) -> bool:
        return allowed(self.user.role, permission)


def session_caller(db: Database, token: str, *, now: datetime) -> Caller | None:
    if not token:
        return None
    with db.session() as session:
        row = session.get(AdminSession, digest(token))
        if row is None or row.expires_at is None or row.expires_at <= now:
            return None
        user = session.get(AdminUser, row.user_id)
        if user is None or user.disabled:
            return None
        return Caller(user, row.csrf_token)


def end_session(db: Database, token: str, *, actor: str, now: datetime) -> None:
    with db.session() as session:
        session.execute(delete(AdminSession).where(col(AdminSession.token_hash) == digest(token)))
        audit(session, "user.logged_out", actor=actor, now=now)


def new_api_token(
    db: Database,
    name: str,
    *,
    actor: str,
    now: datetime | None = None,
    expires_in: timedelta | None = None,
) -> str:
    """A new API token for user ``name``, valid for ``expires_in`` (None: until revoked);
    returned once, stored only as its hash."""
    now = now or utcnow()
    token = "mlr_" + secrets.token_urlsafe(32)
    expires_at = now + expires_in if expires_in is not None else None
    with db.session() as session:
        user = find_user(session, name)
        assert user.id is not None
        row = ApiToken(
            user_id=user.id, token_hash=digest(token), created_at=now, expires_at=expires_at
        )
        session.add(row)
        session.flush()
        audit(
            session,
            "user.token_created",
            actor=actor,
            now=now,
            detail={
                "name": user.name,
                "token": row.id,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return token


def token_caller(db: Database, token: str, *, now: datetime) -> Caller | None:
    if not token:
        return None
    with db.session() as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest(token))).first()
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            return None
        user = session.get(AdminUser, row.user_id)
        if user is None or user.disabled:
            return None
        row.last_used_at = now
        session.add(row)
        return Caller(user)

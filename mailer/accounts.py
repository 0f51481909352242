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
  not tell which names exist.

Roles are ordered: a viewer reads; an organizer also acts on blasts; an
admin also manages users, suppressions and supporters (:func:`allowed`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from mailer.errors import InvalidState, NotFound
from mailer.store import Database, Event
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
MIN_PASSWORD = 10

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_hasher = PasswordHasher()


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


def audit(
    session: Session,
    actor: str,
    action: str,
    now: datetime,
    *,
    blast_id: int | None = None,
    supporter_id: int | None = None,
    **detail: object,
) -> None:
    """One audit-log row; ``actor`` is the user name."""
    session.add(
        Event(
            at=now,
            actor=actor,
            action=action,
            blast_id=blast_id,
            supporter_id=supporter_id,
            detail=dict(detail),
        )
    )


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
        audit(session, actor, "user.added", now, name=name, role=str(role))
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
        audit(session, actor, "user.role_changed", now, name=user.name, role=str(role))


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
        audit(session, actor, "user.disabled" if disabled else "user.enabled", now, name=user.name)


def list_users(db: Database) -> list[AdminUser]:
    with db.session() as session:
        return list(session.exec(select(AdminUser).order_by(col(AdminUser.name))))


@dataclass(frozen=True)
class SignIn:
    user: AdminUser | None  # None: refused
    locked_until: datetime | None = None  # set when refused because of the lockout


def locked_until(session: Session, name: str, now: datetime) -> datetime | None:
    """When ``name`` may try again, or None when it is not locked out."""
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
        )
    ).one()
    count, latest = failures
    if count < MAX_FAILURES or latest is None:
        return None
    wait = min(FIRST_WAIT * 2 ** (count - MAX_FAILURES), LONGEST_WAIT)
    until: datetime = latest + wait
    return until if until > now else None


def sign_in(db: Database, name: str, password: str, *, now: datetime) -> SignIn:
    """Check a name and password, with the lockout; every try is recorded."""
    name = name.strip().lower()[:100]
    with db.session() as session:
        until = locked_until(session, name, now)
        if until is not None:
            audit(session, name, "user.login_locked", now, until=until.isoformat())
            return SignIn(None, locked_until=until)
        user = session.exec(select(AdminUser).where(AdminUser.name == name)).first()
        ok = False
        try:
            ok = _hasher.verify(user.password_hash if user else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            ok = False
        ok = ok and user is not None and not user.disabled
        session.add(LoginAttempt(name=name, at=now, ok=ok))
        session.execute(  # older tries no longer count; the audit log keeps them
            delete(LoginAttempt).where(
                col(LoginAttempt.name) == name, col(LoginAttempt.at) < now - KEEP_ATTEMPTS
            )
        )
        if not ok or user is None:
            audit(session, name, "user.login_failed", now)
            return SignIn(None)
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
            session.add(user)
        audit(session, user.name, "user.logged_in", now)
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
        audit(session, actor, "user.logged_out", now)


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
            actor,
            "user.token_created",
            now,
            name=user.name,
            token=row.id,
            expires_at=expires_at.isoformat() if expires_at else None,
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

"""Tables of the mailer, as SQLModel classes.

Times are stored as UTC (naive in the database, aware in Python: see
:class:`UTCDateTime`). The uniqueness constraints carry invariants:
``delivery (blast_id, supporter_id)`` makes a second send of one blast to one
supporter impossible by construction; ``supporter.email`` holds the normalized
address, so one person is one row however their address was spelled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Enum, Index, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC; returns them aware (tzinfo=UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; mailer stores aware UTC times only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def _state(enum: type[StrEnum], default: StrEnum, *, index: bool = False) -> Any:
    """A StrEnum column stored as its lowercase value in a VARCHAR (readable in plain SQL)."""
    column: Column[Any] = Column(
        Enum(enum, values_callable=lambda e: [m.value for m in e], native_enum=False, length=16),
        nullable=False,
        index=index,
    )
    return Field(default=default, sa_column=column)


def _time(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class SupporterStatus(StrEnum):
    ACTIVE = "active"  # receives alerts
    UNSUBSCRIBED = (
        "unsubscribed"  # asked to stop; never sent to again unless an organizer resubscribes
    )
    BOUNCED = "bounced"  # the address does not exist (permanent failure)
    COMPLAINED = "complained"  # reported an alert as spam
    PENDING = "pending"  # opted in on a public form, has not confirmed yet: not sent to


class BlastStatus(StrEnum):
    DRAFT = "draft"  # created, not started; template and audience may still change
    SCHEDULED = "scheduled"  # waiting for its start time
    SENDING = "sending"  # deliveries exist and are being worked on
    PAUSED = "paused"  # stopped on purpose or because the relay was down; resumable
    DONE = "done"  # every delivery reached a final state
    CANCELLED = "cancelled"  # stopped for good; queued deliveries were skipped
    MISSED = "missed"  # its time passed while no service ran (beyond the grace period); not sent


class DeliveryState(StrEnum):
    QUEUED = "queued"  # waiting to be sent
    SENDING = "sending"  # claimed by a worker, message being built or sent
    SENT = "sent"  # the relay accepted the message (2xx after DATA)
    DEFERRED = "deferred"  # temporary failure (4xx, dropped connection); will be retried
    FAILED = "failed"  # permanent failure (5xx) or retries exhausted
    BOUNCED = "bounced"  # accepted, then bounced back later
    SKIPPED = "skipped"  # not sent on purpose: supporter inactive at build time, blast cancelled
    UNKNOWN = "unknown"  # was in flight when the sender died; may or may not have arrived


FINAL_DELIVERY_STATES = frozenset(
    {DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.BOUNCED, DeliveryState.SKIPPED}
)


class Supporter(SQLModel, table=True):
    # Audience counts by language and the check's sample per language (migration 0007).
    __table_args__ = (Index("ix_supporter_language_status", "language", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)  # normalized by email-validator
    first_name: str = Field(default="", max_length=200)
    last_name: str = Field(default="", max_length=200)
    zip: str = Field(default="", max_length=20)
    region: str = Field(default="", max_length=100)
    language: str = Field(default="en", max_length=16)
    custom: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: SupporterStatus = _state(SupporterStatus, SupporterStatus.ACTIVE, index=True)
    status_changed_at: datetime | None = _time()
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class Suppression(SQLModel, table=True):
    """An address that must never be mailed, whether or not it is a supporter."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)  # normalized like Supporter.email
    reason: str = Field(default="", max_length=200)
    source: str = Field(default="", max_length=300)  # e.g. the file it was imported from
    created_at: datetime | None = _time()


class MailingList(SQLModel, table=True):
    __tablename__ = "mailing_list"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    created_at: datetime | None = _time()


class Membership(SQLModel, table=True):
    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)
    supporter_id: int = Field(foreign_key="supporter.id", primary_key=True, index=True)
    added_at: datetime | None = _time()


class Blast(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    template: str = Field(max_length=200)
    cta_url: str
    sender_name: str = ""
    sender_address: str = ""
    status: BlastStatus = _state(BlastStatus, BlastStatus.DRAFT, index=True)
    segment: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    scheduled_at: datetime | None = _time()
    created_at: datetime | None = _time()
    started_at: datetime | None = _time()
    finished_at: datetime | None = _time()
    last_error: str = ""
    follow_up_of: int | None = Field(default=None, foreign_key="blast.id")  # the original blast
    follow_up_after: int | None = None  # seconds after the original's finish
    checks_overridden: bool = False  # sent or scheduled with --force despite check errors
    petition_id: int | None = Field(default=None, foreign_key="petition.id", index=True)
    follow_up_audience: str = Field(default="", max_length=16)  # "" or "no-click"; "no-action"
    # The stored alert revision it sends (None: the template folder named in ``template``).
    alert_revision_id: int | None = Field(default=None, foreign_key="alert_revision.id")


class BlastList(SQLModel, table=True):
    """The lists a blast goes to (its audience, before any segment filter)."""

    __tablename__ = "blast_list"
    blast_id: int = Field(foreign_key="blast.id", primary_key=True)
    list_id: int = Field(foreign_key="mailing_list.id", primary_key=True)


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("blast_id", "supporter_id", name="uq_delivery_blast_supporter"),
        Index("ix_delivery_blast_state_id", "blast_id", "state", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    blast_id: int = Field(foreign_key="blast.id")
    supporter_id: int = Field(foreign_key="supporter.id", index=True)
    state: DeliveryState = _state(DeliveryState, DeliveryState.QUEUED)
    attempts: int = 0
    next_attempt_at: datetime | None = _time()
    reply_code: int | None = None
    reply_text: str = ""
    message_id: str = ""
    worker: str = ""
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()
    sent_at: datetime | None = _time(index=True)  # indexed: hourly/daily caps count by it


class SenderWorker(SQLModel, table=True):
    """A sending process, as long as it runs; deliveries it holds name it in ``worker``.

    The heartbeat tells the living from the dead: a worker whose heartbeat is
    stale, or whose process is gone from this host, holds nothing any more.
    """

    __tablename__ = "sender_worker"
    name: str = Field(primary_key=True, max_length=200)  # "host:pid:random"
    host: str = Field(max_length=200)
    pid: int
    blast_id: int | None = Field(default=None, foreign_key="blast.id")
    started_at: datetime | None = _time()
    heartbeat_at: datetime | None = _time()
    lease_until: datetime | None = _time()  # after this, what it holds may be taken back


class ServiceInstance(SQLModel, table=True):
    """A running `mailer run` service, for `mailer status`."""

    __tablename__ = "service_instance"
    name: str = Field(primary_key=True, max_length=200)  # "host:pid:random"
    host: str = Field(max_length=200)
    pid: int
    web_url: str = ""
    started_at: datetime | None = _time()
    heartbeat_at: datetime | None = _time()
    last_error: str = ""


class Link(SQLModel, table=True):
    """A link as written in a blast's template; tokens point here, never to a URL."""

    __table_args__ = (UniqueConstraint("blast_id", "url", name="uq_link_blast_url"),)
    id: int | None = Field(default=None, primary_key=True)
    blast_id: int = Field(foreign_key="blast.id", index=True)
    url: str
    is_cta: bool = False


class Click(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    blast_id: int = Field(foreign_key="blast.id", index=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    link_id: int = Field(foreign_key="link.id")
    clicked_at: datetime | None = _time()
    suspected_bot: bool = False  # came within tracking.scanner_window of sending
    ip: str = Field(default="", max_length=64)  # only with tracking.store_ip, and truncated
    # Clicks this row counts: replays of the same link by the same delivery, with the same
    # scanner flag, within tracking.click_dedup_window of clicked_at, add here, not a row each.
    clicks: int = 1
    last_clicked_at: datetime | None = _time()


class Open(SQLModel, table=True):
    """A fetch of a message's tracking pixel (only with tracking.opens)."""

    id: int | None = Field(default=None, primary_key=True)
    blast_id: int = Field(foreign_key="blast.id", index=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    opened_at: datetime | None = _time()


class Event(SQLModel, table=True):
    """The audit log: who did what to which blast, supporter or setting, and when."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime | None = _time(index=True)
    actor: str = Field(default="", max_length=200)  # "cli:<user>", "web:supporter", "system"
    action: str = Field(
        max_length=100, index=True
    )  # e.g. "blast.created", "supporter.unsubscribed"
    blast_id: int | None = Field(default=None, foreign_key="blast.id", index=True)
    supporter_id: int | None = Field(default=None, foreign_key="supporter.id", index=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Petition(SQLModel, table=True):
    """An action supporters take: their name and message, counted toward a goal.

    ``texts`` holds, per language, the title, introduction and suggested
    message read from the alert template's ``petition.toml`` when the petition
    was created (or refreshed), so the web app needs no template files.
    """

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    slug: str = Field(unique=True, max_length=100)  # the public page is /p/<slug>
    template: str = Field(max_length=200)  # the alert template folder holding petition.toml
    target_url: str  # where signers are handed on to (the White House contact page)
    goal: int = 0
    texts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    default_language: str = Field(default="en", max_length=16)
    opt_in_list: str = Field(default="", max_length=200)  # where public opt-ins are put
    created_at: datetime | None = _time()


class Signature(SQLModel, table=True):
    """One person's signature of a petition: one per address per petition.

    Signed from an alert (``source = "alert"``: supporter, blast and delivery
    set) or from the public page (``"public"``: a supporter only when they
    ticked the opt-in box). A second submission updates the row.
    """

    __table_args__ = (
        UniqueConstraint("petition_id", "email", name="uq_signature_petition_email"),
        Index("ix_signature_petition_created", "petition_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    petition_id: int = Field(foreign_key="petition.id")
    email: str = Field(max_length=320)  # normalized like Supporter.email
    first_name: str = Field(default="", max_length=200)
    last_name: str = Field(default="", max_length=200)
    zip: str = Field(default="", max_length=20)
    city: str = Field(default="", max_length=100)
    region: str = Field(default="", max_length=100)
    language: str = Field(default="en", max_length=16)
    message: str = ""  # plain text as typed; escaped wherever it is shown
    source: str = Field(default="public", max_length=16)  # "alert" or "public"
    supporter_id: int | None = Field(default=None, foreign_key="supporter.id", index=True)
    blast_id: int | None = Field(default=None, foreign_key="blast.id", index=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id")
    opted_in: bool = False  # ticked "send me future alerts" on the public page
    ip: str = Field(default="", max_length=64)  # only with tracking.store_ip, and truncated
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class SendRate(SQLModel, table=True):
    """A token bucket shared by every sender of a blast (the rate, or one domain's rate).

    Refilled by the time passed since ``stamp`` (seconds, the database's clock)
    and taken from by one ``UPDATE … RETURNING`` per grant.
    """

    __tablename__ = "send_rate"
    key: str = Field(primary_key=True, max_length=300)  # "blast:<id>" or "blast:<id>:<domain>"
    tokens: float = 0.0
    stamp: float = 0.0
    granted: int = 0  # the last grant, for RETURNING


# -- alerts kept in the database, with revisions -----------------------------------------


class AlertFormat(StrEnum):
    MARKDOWN = "markdown"  # bodies in Markdown, compiled into the shared layout once per revision
    FOLDER = "folder"  # bodies are a template folder's own Jinja files, kept exactly as they are


class Alert(SQLModel, table=True):
    """An alert organizers write and send; what it says lives in its revisions."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)  # what `blast create --template` names
    description: str = ""
    default_language: str = Field(default="en", max_length=16)
    created_at: datetime | None = _time()
    updated_at: datetime | None = _time()


class AlertRevision(SQLModel, table=True):
    """One save of an alert: never changed afterwards, so a blast can pin it."""

    __tablename__ = "alert_revision"
    __table_args__ = (UniqueConstraint("alert_id", "number", name="uq_alert_revision_number"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id")
    number: int  # 1, 2, ... per alert
    author: str = Field(default="", max_length=200)
    created_at: datetime | None = _time()
    format: AlertFormat = _state(AlertFormat, AlertFormat.MARKDOWN)
    description: str = ""  # the alert's description and default language as saved here
    default_language: str = Field(default="en", max_length=16)
    note: str = ""  # what the author said about this save


class AlertText(SQLModel, table=True):
    """What one revision says in one language, as plain text columns (diff-able)."""

    __tablename__ = "alert_text"
    revision_id: int = Field(foreign_key="alert_revision.id", primary_key=True)
    language: str = Field(primary_key=True, max_length=16)
    subject: str = ""  # Jinja, not HTML
    preheader: str = ""  # Jinja, not HTML
    body: str = ""  # Markdown (format markdown) or the folder's <language>.html
    text: str = ""  # the plain-text override ("": generated) or the folder's <language>.txt


class AlertFile(SQLModel, table=True):
    """Any other file of an imported template folder (template.toml as written,
    petition.toml, ...), kept so that exporting gives the folder back byte for byte."""

    __tablename__ = "alert_file"
    revision_id: int = Field(foreign_key="alert_revision.id", primary_key=True)
    path: str = Field(primary_key=True, max_length=200)
    content: str = ""


# -- the web admin: accounts, sessions, API tokens, login attempts ----------------------


class UserRole(StrEnum):
    VIEWER = "viewer"  # reads dashboards, blast pages, send logs and supporters
    ORGANIZER = "organizer"  # also creates, test-sends, schedules, pauses and cancels blasts
    ADMIN = "admin"  # also manages users, suppressions and supporters' status


class AdminUser(SQLModel, table=True):
    """A person who signs in to the web admin or calls the JSON API."""

    __tablename__ = "admin_user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    role: UserRole = _state(UserRole, UserRole.VIEWER)
    password_hash: str = Field(default="", max_length=200)  # argon2id, PHC string format
    disabled: bool = False
    created_at: datetime | None = _time()


class AdminSession(SQLModel, table=True):
    """A signed-in browser; the cookie holds a random token, this row only its SHA-256."""

    __tablename__ = "admin_session"
    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="admin_user.id", index=True)
    csrf_token: str = Field(max_length=64)  # compared with every form's hidden field
    created_at: datetime | None = _time()
    expires_at: datetime | None = _time(nullable=False)


class ApiToken(SQLModel, table=True):
    """A token for scripts (``Authorization: Bearer ...``); only its SHA-256 is kept."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="admin_user.id", index=True)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime | None = _time()
    last_used_at: datetime | None = _time()
    expires_at: datetime | None = _time()  # None: until revoked or the user is disabled


class LoginAttempt(SQLModel, table=True):
    """One sign-in try, kept to lock a name out after repeated failures."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_name_at", "name", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)  # as typed (lowercased), whether or not such a user exists
    at: datetime | None = _time(nullable=False)
    ok: bool = False


# The send log filters a blast's deliveries by reply code and pages through them by id.
Index(
    "ix_delivery_blast_reply_id",
    Delivery.__table__.c.blast_id,  # type: ignore[attr-defined]
    Delivery.__table__.c.reply_code,  # type: ignore[attr-defined]
    Delivery.__table__.c.id,  # type: ignore[attr-defined]
)

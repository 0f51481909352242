"""Settings, defined once as data.

Every setting is a field of one of the section dataclasses below; its metadata
carries the one-line description that ``config.example.toml`` repeats (a test
checks that the two agree). Values come from, in rising priority:

1. the defaults written here,
2. a TOML file (``--config PATH``, else ``$MAILER_CONFIG``, else ``./mailer.toml``
   when it exists),
3. environment variables named ``MAILER_<SECTION>_<KEY>`` — the way to pass
   secrets such as ``MAILER_SMTP_PASSWORD`` or ``MAILER_SECURITY_SECRET_KEY``.

Relative paths in a config file are taken relative to that file's folder.
Every problem raises :class:`mailer.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mailer.errors import ConfigError

TlsMode = Literal["none", "starttls", "tls"]

WHITE_HOUSE_CONTACT = "https://www.whitehouse.gov/contact/"


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(
        default="sqlite:///mailer.db",
        metadata=_doc("SQLAlchemy URL: sqlite:///PATH (embedded) or postgresql+psycopg://..."),
    )
    pool_size: int = field(
        default=5,
        metadata=_doc("PostgreSQL: connections each process keeps open (see docs/deployment.md)"),
    )
    max_overflow: int = field(
        default=10,
        metadata=_doc("PostgreSQL: connections a process may open beyond pool_size when busy"),
    )


@dataclass(frozen=True)
class SmtpSettings:
    host: str = field(default="localhost", metadata=_doc("SMTP relay host name or address"))
    port: int = field(
        default=25, metadata=_doc("SMTP relay port (25, 587 for starttls, 465 for tls)")
    )
    tls: TlsMode = field(
        default="none",
        metadata=_doc('"none" (plain), "starttls" (upgrade after EHLO) or "tls" (implicit TLS)'),
    )
    username: str = field(default="", metadata=_doc("AUTH user name; empty means no AUTH"))
    password: str = field(
        default="", metadata=_doc("AUTH password; better set MAILER_SMTP_PASSWORD")
    )
    timeout: float = field(
        default=30.0, metadata=_doc("seconds to wait for connect and for each SMTP reply")
    )
    ca_file: str = field(
        default="",
        metadata=_doc(
            "PEM file of CA certificates to trust for the relay's TLS; empty = the system's"
        ),
    )
    failover: list[str] = field(
        default_factory=list,
        metadata=_doc('more relays as "host:port", tried in order when the one above is down'),
    )
    helo_name: str = field(
        default="", metadata=_doc("name sent in EHLO/HELO; empty means this host's FQDN")
    )
    pipelining: bool = field(
        default=True,
        metadata=_doc(
            "send MAIL, RCPT and DATA at once (ESMTP PIPELINING, RFC 2920) if the relay offers it"
        ),
    )


@dataclass(frozen=True)
class SenderSettings:
    name: str = field(default="", metadata=_doc("display name in From:"))
    address: str = field(default="", metadata=_doc("From: address (required to send)"))
    reply_to: str = field(default="", metadata=_doc("Reply-To: address; empty for none"))
    verp: bool = field(
        default=False,
        metadata=_doc(
            "per-recipient envelope sender <local>+<token>@<domain> (VERP) naming the delivery;"
            " the List-Unsubscribe mailto address carries its token the same way"
        ),
    )
    return_path: str = field(
        default="", metadata=_doc("envelope sender (bounces go here); empty means the From address")
    )


@dataclass(frozen=True)
class OrganizationSettings:
    name: str = field(default="", metadata=_doc("organization name shown in the footer"))
    postal_address: str = field(
        default="",
        metadata=_doc("postal address in every footer, as CAN-SPAM requires (required to send)"),
    )


@dataclass(frozen=True)
class WebSettings:
    base_url: str = field(
        default="",
        metadata=_doc(
            "public base URL of the HTTP app; tracking and unsubscribe links start with it"
        ),
    )
    host: str = field(default="127.0.0.1", metadata=_doc("address `mailer web` listens on"))
    port: int = field(default=8000, metadata=_doc("port `mailer web` listens on"))
    trusted_proxies: str = field(
        default="",
        metadata=_doc(
            "reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, "
            'comma-separated addresses or networks (e.g. "127.0.0.1" or "10.0.0.0/8"); '
            "empty: none, the client is the connection's peer"
        ),
    )
    login_rate_limit: str = field(
        default="10/minute",
        metadata=_doc(
            "most sign-in posts one client (an IPv4 address or an IPv6 /64) may make, "
            'e.g. "10/minute"'
        ),
    )

    def __post_init__(self) -> None:
        from mailer.clients import ClientLimit, check_proxies

        check_proxies("web.trusted_proxies", self.trusted_proxies)
        ClientLimit("web.login_rate_limit", self.login_rate_limit)


@dataclass(frozen=True)
class SecuritySettings:
    secret_key: str = field(
        default="",
        metadata=_doc(
            "key that signs tracking and unsubscribe tokens, 32+ characters; "
            "better set MAILER_SECURITY_SECRET_KEY"
        ),
    )


@dataclass(frozen=True)
class BlastSettings:
    default_cta_url: str = field(
        default=WHITE_HOUSE_CONTACT,
        metadata=_doc("call-to-action URL of a blast created without --cta-url"),
    )
    list_unsubscribe_mailto: str = field(
        default="",
        metadata=_doc(
            "address for mailto: List-Unsubscribe; empty means unsubscribe@<sender domain>"
        ),
    )
    test_send_limit: int = field(
        default=10,
        metadata=_doc("most addresses one test send may go to (`blast test`, the studio's Test)"),
    )


@dataclass(frozen=True)
class ImportSettings:
    check_deliverability: bool = field(
        default=False,
        metadata=_doc(
            "also check each domain's DNS (MX) records while importing; off = syntax only"
        ),
    )
    upload_dir: str = field(
        default="var/uploads",
        metadata=_doc(
            "folder where files uploaded in the web admin are kept while they are imported"
        ),
    )
    max_upload_mb: int = field(
        default=100,
        metadata=_doc("largest supporter file the web admin accepts, in megabytes (MiB)"),
    )


@dataclass(frozen=True)
class SendingSettings:
    connections: int = field(
        default=0,
        metadata=_doc(
            "SMTP connections a sender process keeps open, each carrying many messages; the"
            " relay sees processes x connections from this host. 0 = 32 from the host in"
            " all, shared by the blast's sender processes, at most 16 each (16 each for 1 or"
            " 2 processes, 8 for 4, 4 for 8)"
        ),
    )
    processes: int = field(
        default=0,
        metadata=_doc(
            "sender processes `mailer blast send` (or the service) runs on one blast, to use"
            " more CPU cores;"
            " each keeps `connections` open. 0 = one per CPU core (at most 4 on SQLite, 8 on"
            " PostgreSQL; one per 2,000 messages to send, so a small blast uses one)"
        ),
    )
    batch_size: int = field(
        default=200, metadata=_doc("deliveries claimed from the database at a time")
    )
    rate: float = field(
        default=0.0, metadata=_doc("most messages per second overall; 0 = no limit")
    )
    hourly_limit: int = field(
        default=0, metadata=_doc("most messages in any 60 minutes (sliding window); 0 = no limit")
    )
    daily_limit: int = field(
        default=0, metadata=_doc("most messages in any 24 hours (sliding window); 0 = no limit")
    )
    domain_concurrency: int = field(
        default=0,
        metadata=_doc("most messages in flight at once to one recipient domain; 0 = no limit"),
    )
    domain_rate: float = field(
        default=0.0, metadata=_doc("most messages per second to one recipient domain; 0 = no limit")
    )
    max_attempts: int = field(
        default=5, metadata=_doc("attempts before a temporarily failing delivery is failed")
    )
    retry_base: float = field(
        default=300.0,
        metadata=_doc("seconds before the first retry; doubled for each further one, with jitter"),
    )
    max_retry_age: float = field(
        default=172800.0, metadata=_doc("seconds after which a delivery is not retried any more")
    )
    connect_attempts: int = field(
        default=3, metadata=_doc("failed connection tries before the blast is paused")
    )
    control_interval: float = field(
        default=1.0, metadata=_doc("seconds between checks for pause/cancel from other processes")
    )
    lease_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "seconds a sender's claim outlives its last heartbeat (at least 3 control "
            "intervals); then other senders take back what it held"
        ),
    )

    def __post_init__(self) -> None:
        if self.connections < 0:
            raise ConfigError(
                "sending.connections",
                f"must be 0 (automatic) or more, got {self.connections}",
            )


@dataclass(frozen=True)
class ScheduleSettings:
    timezone: str = field(
        default="UTC",
        metadata=_doc("IANA time zone that --at times are in and scheduled times are shown in"),
    )
    misfire_grace: float = field(
        default=3600.0,
        metadata=_doc(
            "seconds a blast may start late (service was down); later it is marked missed"
        ),
    )
    poll_interval: float = field(
        default=2.0,
        metadata=_doc("seconds between the service's checks for schedule changes made elsewhere"),
    )


@dataclass(frozen=True)
class TrackingSettings:
    scanner_window: float = field(
        default=10.0,
        metadata=_doc(
            "clicks this many seconds or less after sending are flagged as link scanners"
        ),
    )
    store_ip: Literal["none", "truncated"] = field(
        default="none",
        metadata=_doc('"none", or "truncated": IPv4 to /24, IPv6 to /48, with each click'),
    )
    opens: bool = field(
        default=False,
        metadata=_doc(
            "add an open-tracking pixel (unreliable: images are often blocked or preloaded)"
        ),
    )
    click_dedup_window: float = field(
        default=3600.0,
        metadata=_doc(
            "seconds: replays of one link by one recipient within this time of the first are"
            " counted on one stored row, not stored as a row each; 0 = a row per click"
        ),
    )


@dataclass(frozen=True)
class InboundSettings:
    host: str = field(default="127.0.0.1", metadata=_doc("address `mailer inbound` listens on"))
    port: int = field(default=2525, metadata=_doc("port `mailer inbound` listens on"))
    soft_bounce_limit: int = field(
        default=3,
        metadata=_doc(
            "soft bounces within soft_bounce_window_days that mark a supporter bounced; 0 = never"
        ),
    )
    soft_bounce_window_days: float = field(
        default=15.0, metadata=_doc("days over which soft bounces are counted")
    )
    soft_bounce_min_blasts: int = field(
        default=2,
        metadata=_doc(
            "different blasts the counted soft bounces must come from before a supporter is"
            " marked bounced (so one blast's trouble never stops anyone)"
        ),
    )
    complaint_senders: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "domains whose complaint reports (ARF) are trusted when they name a message only by"
            " its Message-ID, e.g. your mailbox providers' feedback loops; a complaint sent to"
            " a delivery's VERP address is trusted anyway"
        ),
    )


@dataclass(frozen=True)
class DkimSettings:
    private_key_file: str = field(
        default="",
        metadata=_doc("PEM private key (RSA 2048+ or Ed25519) to sign with; empty = no DKIM"),
    )
    domain: str = field(
        default="", metadata=_doc("signing domain (d=); empty means the sender address's domain")
    )
    selector: str = field(
        default="",
        metadata=_doc("selector (s=): the key is published at <selector>._domainkey.<domain>"),
    )
    second_private_key_file: str = field(
        default="",
        metadata=_doc(
            "a second PEM key for a second signature on every message, e.g. Ed25519 beside"
            " RSA (RFC 8463: receivers that know Ed25519 check it, the others check RSA);"
            " empty = one signature"
        ),
    )
    second_selector: str = field(
        default="",
        metadata=_doc("selector of the second key; required with it, and not `selector`"),
    )


@dataclass(frozen=True)
class PetitionsSettings:
    rate_limit: str = field(
        default="10/minute",
        metadata=_doc(
            'most signature submissions one client address may make, e.g. "10/minute", "50/hour"'
        ),
    )
    max_message_chars: int = field(
        default=2000, metadata=_doc("longest message a signer may write, in characters")
    )
    opt_in_expiry_hours: int = field(
        default=72,
        metadata=_doc(
            "hours a public opt-in waits for its confirmation link to be used; "
            "unconfirmed ones are removed after that"
        ),
    )

    def __post_init__(self) -> None:
        if self.opt_in_expiry_hours < 1:
            raise ConfigError(
                "petitions.opt_in_expiry_hours",
                f"must be at least 1, got {self.opt_in_expiry_hours}",
            )


@dataclass(frozen=True)
class TemplatesSettings:
    dir: str = field(default="templates", metadata=_doc("folder holding the email templates"))


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    sender: SenderSettings = field(default_factory=SenderSettings)
    organization: OrganizationSettings = field(default_factory=OrganizationSettings)
    web: WebSettings = field(default_factory=WebSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    blast: BlastSettings = field(default_factory=BlastSettings)
    import_: ImportSettings = field(default_factory=ImportSettings, metadata={"name": "import"})
    sending: SendingSettings = field(default_factory=SendingSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    inbound: InboundSettings = field(default_factory=InboundSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    templates: TemplatesSettings = field(default_factory=TemplatesSettings)
    petitions: PetitionsSettings = field(default_factory=PetitionsSettings)
    source: str = field(default="", metadata={"internal": "1"})

    def require(self, *keys: str) -> None:
        """Raise ConfigError for the first of ``keys`` (``"section.key"``) left empty."""
        for key in keys:
            value = self.get(key)
            if value in ("", None):
                raise ConfigError(
                    key, "is required for this command but not set", source=self.source or None
                )
        if "security.secret_key" in keys and len(self.security.secret_key) < 32:
            raise ConfigError(
                "security.secret_key",
                "must be at least 32 characters long",
                source=self.source or None,
            )

    def get(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(self, _attr(section)), name)

    def templates_path(self) -> Path:
        return Path(self.templates.dir)


def _attr(section: str) -> str:
    return "import_" if section == "import" else section


def sections() -> dict[str, type[Any]]:
    """Section name -> dataclass, in the order they are documented."""
    hints = typing.get_type_hints(Settings)
    out: dict[str, type[Any]] = {}
    for f in dataclasses.fields(Settings):
        if f.metadata.get("internal"):
            continue
        out[f.metadata.get("name", f.name)] = hints[f.name]
    return out


def all_keys() -> list[tuple[str, Any, str]]:
    """Every setting as (``section.key``, default, description)."""
    rows = []
    for section, cls in sections().items():
        for f in dataclasses.fields(cls):
            rows.append((f"{section}.{f.name}", _default(f), f.metadata["doc"]))
    return rows


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _coerce(key: str, value: Any, typ: Any, *, from_env: bool) -> Any:
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(key, f"must be one of {allowed}, got {value!r}")
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if (
            from_env
            and isinstance(value, str)
            and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off")
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(key, f"must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"must be a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"must be a string, got {value!r}")
    if origin is list:
        if from_env and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(key, f"must be a list of strings, got {value!r}")
    raise AssertionError(f"unsupported setting type {typ!r} for {key}")  # pragma: no cover


def _resolve_paths(values: dict[str, dict[str, Any]], base: Path) -> None:
    db = values.get("database", {}).get("url")
    if isinstance(db, str) and db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        path = Path(db[len("sqlite:///") :])
        if not path.is_absolute():
            values["database"]["url"] = "sqlite:///" + str(base / path)
    for section, key in (("templates", "dir"), ("smtp", "ca_file"), ("dkim", "private_key_file")):
        value = values.get(section, {}).get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            values[section][key] = str(base / value)


def build(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: str = "",
    base_dir: Path | None = None,
) -> Settings:
    """Validate ``data`` (parsed TOML) plus environment overrides into Settings."""
    env = os.environ if env is None else env
    known = sections()
    values: dict[str, dict[str, Any]] = {}
    for section, content in data.items():
        if section not in known:
            raise ConfigError(
                section, f"unknown section (known: {', '.join(known)})", source=source or None
            )
        if not isinstance(content, Mapping):
            raise ConfigError(section, "must be a table ([section])", source=source or None)
        cls = known[section]
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        values[section] = {}
        for key, value in content.items():
            dotted = f"{section}.{key}"
            if key not in names:
                raise ConfigError(
                    dotted,
                    f"unknown setting (known in [{section}]: {', '.join(sorted(names))})",
                    source=source or None,
                )
            try:
                values[section][key] = _coerce(dotted, value, hints[key], from_env=False)
            except ConfigError as exc:
                raise ConfigError(dotted, exc.problem, source=source or None) from None
    if base_dir is not None:
        _resolve_paths(values, base_dir)
    for section, cls in known.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            var = f"MAILER_{section.upper()}_{f.name.upper()}"
            if var in env:
                values.setdefault(section, {})[f.name] = _coerce(
                    f"{section}.{f.name} (from ${var})", env[var], hints[f.name], from_env=True
                )
    kwargs: dict[str, Any] = {}
    for section, given in values.items():
        try:
            kwargs[_attr(section)] = known[section](**given)
        except ConfigError as exc:  # a check across a section's values: name the file too
            raise ConfigError(exc.key, exc.problem, source=source or None) from None
    return Settings(**kwargs, source=source)


def load(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path``, ``$MAILER_CONFIG`` or ``./mailer.toml``; else defaults."""
    env = os.environ if env is None else env
    chosen: Path | None = None
    if path is not None:
        chosen = Path(path)
    elif env.get("MAILER_CONFIG"):
        chosen = Path(env["MAILER_CONFIG"])
    elif Path("mailer.toml").is_file():
        chosen = Path("mailer.toml")
    if chosen is None:
        return build({}, env=env)
    try:
        raw = chosen.read_bytes()
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {chosen}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("--config", f"{chosen} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{chosen} is not valid TOML: {exc}") from None
    return build(data, env=env, source=str(chosen), base_dir=chosen.resolve().parent)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


EXAMPLE_HEADER = """\
# mailer settings. Copy to mailer.toml (read from the current folder), or pass
# --config PATH, or set MAILER_CONFIG=PATH.
#
# Every key is shown with its default. Any key can also be set by an environment
# variable MAILER_<SECTION>_<KEY>, e.g. MAILER_SMTP_PASSWORD or
# MAILER_SECURITY_SECRET_KEY: the way to keep secrets out of this file.
# Relative paths are relative to this file's folder.
#
# This file is generated from mailer/config.py: python -m mailer.config > config.example.toml
"""


def example_toml() -> str:
    """The documented example configuration, generated from the settings above."""
    out = [EXAMPLE_HEADER]
    for section, cls in sections().items():
        out.append(f"\n[{section}]")
        for f in dataclasses.fields(cls):
            out.append(f"# {f.metadata['doc']}")
            out.append(f"{f.name} = {_toml_value(_default(f))}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(example_toml(), end="")

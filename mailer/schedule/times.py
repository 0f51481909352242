"""Times as organizers write them, in a named (IANA) time zone, and back.

Stored times are UTC. An organizer writes ``2026-12-01 09:00`` and a zone
(``America/Chicago``); the wall-clock time is checked against the zone's
daylight-saving rules: a time that does not exist (clocks jump forward over
it) is refused, and a time that exists twice (clocks go back) is refused too
unless an explicit offset (``2026-11-01 01:30-06:00``) says which one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.errors import InvalidState

FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


MAX_ZONE_NAME = 64  # the longest IANA name is 32 characters


def zone(name: str) -> ZoneInfo:
    # A long name would reach the file system (OSError: file name too long).
    try:
        if len(name) > MAX_ZONE_NAME:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidState(
            f"unknown time zone {name[:MAX_ZONE_NAME]!r}; "
            "use an IANA name such as America/Chicago or UTC"
        ) from None


def parse_local(text: str, tz_name: str) -> datetime:
    """``text`` (wall-clock time in ``tz_name``, or with an explicit offset) as UTC."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidState(
            f"cannot read the time {text!r}; write it like 2026-12-01 09:00"
        ) from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    tz = zone(tz_name)
    first = parsed.replace(tzinfo=tz, fold=0)
    second = parsed.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != parsed:
        raise InvalidState(
            f"{text} does not exist in {tz_name} (the clocks skip it when daylight saving "
            "time starts); choose another time"
        )
    if first.utcoffset() != second.utcoffset():
        options = " or ".join(f"{text}{_offset(t)}" for t in (first, second))
        raise InvalidState(
            f"{text} happens twice in {tz_name} (the clocks go back); say which: {options}"
        )
    return first.astimezone(UTC)


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def show(moment: datetime | None, tz_name: str) -> str:
    """A stored UTC time as the organizer reads it: ``2026-12-01 09:00 CST``."""
    if moment is None:
        return ""
    return moment.astimezone(zone(tz_name)).strftime("%Y-%m-%d %H:%M %Z")

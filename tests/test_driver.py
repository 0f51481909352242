"""The hot statements' own conversions of stored times (mailer/store/driver.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from mailer.store.driver import DriverSql

DIALECTS = [sqlite.dialect(), postgresql.dialect()]  # type: ignore[no-untyped-call]
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]
)
times = st.builds(
    lambda at, zone: at.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    zones,
)


@given(st.lists(times, min_size=1, max_size=6), st.lists(st.integers(0, 5), max_size=20))
def test_a_time_written_reads_back_as_the_same_moment_in_any_order_and_repeated(
    distinct: list[datetime], order: list[int]
) -> None:
    """The last time written is remembered; another time, or the same one again,
    must still give its own stored form."""
    for dialect in DIALECTS:
        driver = DriverSql.for_dialect(dialect)
        for index in order + list(range(len(distinct))):
            at = distinct[index % len(distinct)]
            stored = driver.write_time(at)
            assert driver.read_time(stored) == at.astimezone(UTC)
        assert driver.write_time(None) is None

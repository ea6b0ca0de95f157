"""`streams.core.timeutil.instant` is exactly `datetime.timestamp()`, only faster."""

from __future__ import annotations

import datetime as dt

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from streams.core.timeutil import instant

OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m)))


@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)), OFFSETS)
def test_instant_is_the_timestamp_in_any_fixed_offset(naive, tz):
    t = naive.replace(tzinfo=tz)
    assert instant(t) == t.timestamp()
    # The same zone as a different (equal) object, and UTC.
    other = naive.replace(tzinfo=dt.timezone(tz.utcoffset(None)))
    assert instant(other) == other.timestamp()
    utc = t.astimezone(dt.UTC)
    assert instant(utc) == utc.timestamp() == t.timestamp()


def test_instant_of_decoded_timestamps_and_other_zones():
    for raw in (b'"2020-08-01T09:00:00+09:00"', b'"2021-02-28T23:59:59.999999-03:30"',
                b'"1999-12-31T15:00:00Z"'):
        t = msgspec.json.decode(raw, type=dt.datetime)
        assert instant(t) == t.timestamp()
    t = dt.datetime(2021, 3, 28, 1, 30, tzinfo=_Summer())  # not a fixed offset: the plain path
    assert instant(t) == t.timestamp()


class _Summer(dt.tzinfo):
    """UTC+2 from April to September, else UTC+1."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=2 if d is not None and 4 <= d.month <= 9 else 1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

"""Japan Standard Time as plain numbers.

Every rule compares instants (seconds since the epoch, from the event's own `occurred_at`) or JST
calendar days (whole days since 1970-01-01 in JST). JST has had no daylight saving since 1951, so
UTC+9 is exact for the program's whole history.
"""

from __future__ import annotations

import datetime as dt

JST = dt.timezone(dt.timedelta(hours=9), "JST")
JST_OFFSET_SECONDS = 9 * 3600
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The epoch in each fixed-offset zone met so far (offsets are whole minutes: a bounded set).
_EPOCHS: dict[dt.tzinfo, dt.datetime] = {}


def instant(t: dt.datetime) -> float:
    """Seconds since the epoch, exactly `t.timestamp()`; `t` must be timezone-aware (the schemas
    guarantee it).

    `t.timestamp()` subtracts the UTC epoch, which asks both operands for their UTC offset; the
    epoch expressed in `t`'s own zone object subtracts without asking (a fixed offset cancels
    out), and both divide the same whole number of microseconds by 10**6: the same float, in
    about half the time. Decoders reuse one zone object per offset, so the cache stays small.
    """
    tz = t.tzinfo
    epoch = _EPOCHS.get(tz)  # type: ignore[arg-type]
    if epoch is None:
        if type(tz) is not dt.timezone:
            return t.timestamp()
        epoch = _EPOCHS[tz] = _UTC_EPOCH.astimezone(tz)
    return (t - epoch).total_seconds()


def jst_day(ts: float) -> int:
    """The JST calendar day of an instant, as a day number."""
    return int((ts + JST_OFFSET_SECONDS) // 86400)


def day_number(d: dt.date) -> int:
    return d.toordinal() - _EPOCH_ORDINAL


def day_to_date(day: int) -> dt.date:
    return dt.date.fromordinal(day + _EPOCH_ORDINAL)


def to_jst(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, JST)


def age_on(birth: dt.date, on: dt.date) -> int:
    """Completed years on the date `on` (the birthday itself counts as the new age).

    Under Japan's 年齢計算ニ関スル法律 a person gains a year at the end of the day before the
    birthday, so on any calendar day this gives the same answer; a 29 February birthday gains the
    year on 1 March in common years, as here.
    """
    years = on.year - birth.year
    if (on.month, on.day) < (birth.month, birth.day):
        years -= 1
    return years

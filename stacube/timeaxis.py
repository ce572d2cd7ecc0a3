"""Resolve a TOI (anything pandas indexes time with) to positions on a cube's time axis.

Every form of TOI becomes one or more time intervals, and a step is selected when its period
[t, t + freq) overlaps one of them. So ``"2024-01-15"`` on a monthly axis selects January,
``"2024-03"`` on a daily axis selects every day of March, and a slice selects every step whose
period meets [start of its first bound, end of its last bound], the way pandas reads partial dates.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, overload

import numpy as np
import pandas as pd

from .errors import TOIError

ClosedInterval = tuple[pd.Timestamp, pd.Timestamp]
"""A span of time with both ends inclusive (a TOI's pieces)."""
HalfOpenInterval = tuple[pd.Timestamp, pd.Timestamp]
"""A span of time [start, end): a time step's own span (``step_range``)."""
TimeLike = str | date | datetime | pd.Timestamp | np.datetime64
"""One time: an ISO string (a partial date stands for its whole period), a date, a datetime or a timestamp."""
TOI = TimeLike | slice | Sequence[TimeLike] | pd.DatetimeIndex
"""A time of interest: anything pandas indexes time with (one time, a slice of times, a list of them or a
``DatetimeIndex``). Where a TOI is optional, None means every step of the cube's time axis."""


def _describe(axis: pd.DatetimeIndex) -> str:
    return f"[{axis[0]:%Y-%m-%d %H:%M}, {axis[-1]:%Y-%m-%d %H:%M}] every {axis.freqstr}"


@overload
def naive_utc(value: pd.DatetimeIndex) -> pd.DatetimeIndex: ...
@overload
def naive_utc(value: Any) -> pd.Timestamp: ...
def naive_utc(value: Any) -> pd.Timestamp | pd.DatetimeIndex:
    """``value`` (anything ``pd.Timestamp`` reads, or a ``pd.DatetimeIndex``) as naive UTC, how a cube's
    time axis, the catalog and the parcel stores keep times: a tz-aware value is converted to UTC and its
    zone dropped; a naive one is taken as UTC already and kept as it is (NaT stays NaT).

    Parameters
    ----------
    value : Any
        A time (a string, a date, a datetime, a number of nanoseconds), or a ``pd.DatetimeIndex``.

    Returns
    -------
    pandas.Timestamp or pandas.DatetimeIndex
        ``value`` in naive UTC, of the same kind (a DatetimeIndex stays one).

    Raises
    ------
    ValueError
        If ``pd.Timestamp`` cannot read ``value`` as a time (``DateParseError`` is one).
    TypeError
        If ``value`` is of a type ``pd.Timestamp`` does not take (a list, a dict).
    """
    stamp = value if isinstance(value, pd.DatetimeIndex) else pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tz is not None else stamp


def aware_utc(value: Any) -> pd.Timestamp:
    """``value`` (anything ``pd.Timestamp`` reads) as a tz-aware UTC timestamp: a naive one is taken as
    UTC, an aware one converted (NaT stays NaT).

    Parameters
    ----------
    value : Any
        A time ``pd.Timestamp`` reads.

    Returns
    -------
    pandas.Timestamp
        ``value`` in UTC, tz-aware.

    Raises
    ------
    ValueError, TypeError
        If ``pd.Timestamp`` cannot read ``value`` (as for ``naive_utc``).
    """
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def stamp_or_none(value: Any) -> pd.Timestamp | None:
    """A recorded time (an Item's ``updated``: text or a timestamp) as an aware UTC Timestamp; None where it is
    absent or unreadable, so that a catalog and the duplicate rule read one value the same way.

    Parameters
    ----------
    value : Any
        The value as recorded.

    Returns
    -------
    pandas.Timestamp or None
        Aware, in UTC (a naive one is read as UTC); None.
    """
    try:
        blank = value is None or (isinstance(value, str) and not value.strip())
        stamp = None if blank else pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if stamp is None or pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def utc_now() -> pd.Timestamp:
    """Now, as naive UTC: how a cube's time axis keeps times, to compare a step with the present.

    Returns
    -------
    pandas.Timestamp
        The current time, naive, in UTC.
    """
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def _utc_offset(text: str) -> pd.Timedelta:
    """The UTC offset a time string states (0 when it states none: the cube's times are UTC)."""
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        return pd.Timedelta(0)
    return pd.Timedelta(stamp.utcoffset() or 0)


def _interval(value: TimeLike) -> ClosedInterval:
    """The instants a single TOI value stands for: a point for a timestamp, a period for a partial date."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("an empty string is no time (None leaves a slice's end open)")
        if value.strip().lower() in ("now", "today"):
            # pandas reads these as the local wall clock; a cube's times are UTC
            now = utc_now()
            return (now, now) if value.strip().lower() == "now" else _interval(now.date())
        try:
            period = pd.Period(value)
        except (ValueError, TypeError):
            stamp = naive_utc(value)  # e.g. an ISO string with a named time zone
            return stamp, stamp
        offset = _utc_offset(value)
        # pandas reads the wall time of "2021-06-03T01:00+05:00" and drops its offset: move it to UTC
        return period.start_time - offset, period.end_time - offset
    if isinstance(value, (pd.Timestamp, datetime, np.datetime64)):
        stamp = naive_utc(value)
        return stamp, stamp
    if isinstance(value, date):
        return pd.Timestamp(value), pd.Timestamp(value) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    raise TypeError(f"cannot read {value!r} as a time")


def toi_span(toi: TOI) -> ClosedInterval:
    """The earliest start and the latest end of a TOI's intervals: the period it spans.

    Parameters
    ----------
    toi : TOI
        Anything ``toi_intervals`` reads.

    Returns
    -------
    tuple[pandas.Timestamp, pandas.Timestamp]
        The earliest start and the latest end of its intervals, both inclusive, in naive UTC.

    Raises
    ------
    TOIError
        As ``toi_intervals`` raises it (also a ValueError), naming ``toi``.
    """
    intervals = toi_intervals(toi)
    return min(start for start, _ in intervals), max(end for _, end in intervals)


def toi_intervals(toi: TOI) -> list[ClosedInterval]:
    """A TOI as inclusive intervals; raises TOIError, naming ``toi``, for values that are not times.

    One interval per value (a list gives one for each); a partial date stands for its whole period, a
    slice for everything between the start of its first bound and the end of its last (an open bound:
    ``pd.Timestamp.min`` or ``max``).

    Parameters
    ----------
    toi : TOI
        A time, a slice of times, or a sequence of times.

    Returns
    -------
    list[tuple[pandas.Timestamp, pandas.Timestamp]]
        The intervals, both ends inclusive, in naive UTC, in the order given; none ends before it starts.

    Raises
    ------
    TOIError
        If a value is not a time pandas reads (a string it cannot parse, a number, None, a dict), the
        slice has a step or ends before it starts, or a sequence is empty. A TOIError is a ValueError.
    """
    try:
        intervals = _intervals(toi)
    except TOIError:
        raise
    except (TypeError, ValueError, OverflowError) as err:
        raise TOIError(f"TOI {toi!r} is not a time pandas understands: {err}") from err
    if any(start > end for start, end in intervals):
        raise TOIError(f"TOI {toi!r} ends before it starts")
    return intervals


def _intervals(toi: TOI) -> list[ClosedInterval]:
    if isinstance(toi, slice):
        if toi.step is not None:
            raise TOIError(f"TOI {toi!r}: a TOI slice takes no step")
        start = _interval(toi.start)[0] if toi.start is not None else pd.Timestamp.min
        end = _interval(toi.stop)[1] if toi.stop is not None else pd.Timestamp.max
        return [(start, end)]
    if isinstance(toi, (str, pd.Timestamp, datetime, date, np.datetime64)):
        return [_interval(toi)]
    if isinstance(toi, tuple) and toi:  # odc-stac and pystac-client read a pair as a range, a list as times
        raise TOIError(f"TOI {toi!r} is a tuple: give slice(start, end) for a range, or a list for those times")
    if isinstance(toi, Iterable) and not isinstance(toi, (dict, bytes)):
        intervals = [_interval(v) for v in toi]
        if not intervals:
            raise TOIError(f"TOI {toi!r} is empty and selects nothing; pass toi=None for every step")
        return intervals
    raise TypeError(f"cannot read {toi!r} as a time of interest")


def select_steps(axis: pd.DatetimeIndex | None, toi: TOI | None) -> list[int] | None:
    """Positions of the time steps whose periods a TOI meets; None for a spatial-only cube with no TOI.

    Where every TOI given to a cube is judged, so that a bad one fails before anything is planned or
    downloaded, with a TOIError naming it.

    Parameters
    ----------
    axis : pandas.DatetimeIndex or None
        The cube's time axis (regular, with a ``freq``); None for a cube without time.
    toi : TOI or None
        The time of interest; None: every step.

    Returns
    -------
    list[int] or None
        The positions, sorted, each once; None when ``axis`` is None (and so is ``toi``).

    Raises
    ------
    TOIError
        If ``toi`` is given for a cube without time, is empty, is not a time pandas reads (or a slice
        with a step), ends before it starts, or meets no step of the axis, or is a list of which some
        time meets no step (the message says when it lies past the axis's end, which
        ``Cube.extend_time`` can grow).
    """
    if axis is None:
        if toi is not None:
            raise TOIError(f"TOI {toi!r} given, but this cube has no time axis; pass toi=None")
        return None
    if toi is None:
        return list(range(len(axis)))
    intervals = toi_intervals(toi)
    starts = axis.values
    ends = (axis + axis.freq).values
    selected: set[int] = set()
    outside = []
    for start, end in intervals:
        hits = np.nonzero((starts <= end.to_datetime64()) & (ends > start.to_datetime64()))[0]
        selected.update(int(h) for h in hits)
        if not len(hits):
            outside.append(start)
    if outside:  # a list's time that meets no step is never dropped quietly while the others load
        hint = "; Cube.extend_time() grows the axis at its end" if max(outside) >= ends[-1] else ""
        named = f"TOI {toi!r} is" if not selected else \
            f"{len(outside)} of the TOI's {len(intervals)} times ({', '.join(str(t) for t in outside[:3])}) are"
        raise TOIError(f"{named} outside the time axis {_describe(axis)}{hint}")
    return sorted(selected)


def step_range(axis: pd.DatetimeIndex, step: int) -> HalfOpenInterval:
    """The half-open period [start, end) that time step ``step`` stands for.

    Parameters
    ----------
    axis : pandas.DatetimeIndex
        The cube's time axis (with a ``freq``).
    step : int
        A position on it.

    Returns
    -------
    tuple[pandas.Timestamp, pandas.Timestamp]
        The step's start, and the next step's start.

    Raises
    ------
    IndexError
        If ``step`` is past the axis's end.
    """
    start = axis[step]
    return start, start + axis.freq


# A bare number: pandas reads it as nanoseconds, which nobody means by an age.
_UNITLESS = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
# ISO 8601 months or years (before any T): pandas reads "P1M" as one minute and refuses "P1Y"; neither is
# a fixed duration.
_ISO_MONTHS = re.compile(r"\s*[-+]?P[^T]*[YM]", re.IGNORECASE)


def duration_problem(value: Any, positive: bool = False) -> tuple[pd.Timedelta | None, str | None]:
    """``value`` as a duration, or what is wrong with it: one rule for ``cutoff`` and the flows' durations.

    Parameters
    ----------
    value : Any
        A timedelta or anything ``pd.Timedelta`` reads with a unit (``"30D"``, ``"24h"``).
    positive : bool, optional
        Refuse 0 too.

    Returns
    -------
    tuple[pandas.Timedelta or None, str or None]
        The duration and None; or None and the problem: ``"has no unit"`` (a number, which pandas would read
        as nanoseconds), ``"is no duration pandas reads"``, ``"is no duration"`` (None, ``""``, NaT),
        ``"is negative"``, ``"must be more than 0"`` or ``"counts months or years"`` (ISO 8601 ``P1M``, which
        pandas reads as one minute).
    """
    bare_number = isinstance(value, numbers.Number) and not isinstance(value, bool | np.timedelta64)
    if bare_number or (isinstance(value, str) and _UNITLESS.fullmatch(value)):
        return None, "has no unit"
    if isinstance(value, str) and _ISO_MONTHS.match(value):
        return None, "counts months or years (pandas reads ISO 8601 'P1M' as one minute)"
    try:
        span = pd.Timedelta(value)
    except (ValueError, TypeError, OverflowError):
        return None, "is no duration pandas reads"
    if pd.isna(span):
        return None, "is no duration"
    if span < pd.Timedelta(0) or (positive and span == pd.Timedelta(0)):
        return None, "must be more than 0" if positive else "is negative"
    return span, None

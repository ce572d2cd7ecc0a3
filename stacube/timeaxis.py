"""Resolve a TOI (anything pandas indexes time with) to positions on a cube's time axis."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import TOIError


def _describe(axis: pd.DatetimeIndex) -> str:
    return f"[{axis[0]:%Y-%m-%d %H:%M}, {axis[-1]:%Y-%m-%d %H:%M}] every {axis.freqstr}"


def select_steps(axis: pd.DatetimeIndex | None, toi: Any) -> list[int] | None:
    """Positions of the time steps a TOI selects; None for a spatial-only cube with no TOI.

    A TOI is matched against each step's label the way pandas does (``"2024-03"`` selects every
    step in March); a Timestamp between labels selects the step whose period contains it.
    """
    if axis is None:
        if toi is not None:
            raise TOIError(f"TOI {toi!r} given, but this cube has no time axis; pass toi=None")
        return None
    if toi is None:
        return list(range(len(axis)))
    positions = pd.Series(np.arange(len(axis)), index=axis)
    try:
        if isinstance(toi, (pd.Timestamp, np.datetime64)) or hasattr(toi, "isoformat"):
            stamp = pd.Timestamp(toi)
            if stamp.tz is not None:
                stamp = stamp.tz_convert("UTC").tz_localize(None)
            step = axis.searchsorted(stamp, side="right") - 1
            if step < 0 or stamp >= axis[-1] + axis.freq:
                raise KeyError(stamp)
            return [int(step)]
        selected = positions.loc[toi]
    except (KeyError, TypeError, ValueError) as err:
        raise TOIError(f"TOI {toi!r} is not on the time axis {_describe(axis)}") from err
    steps = [int(selected)] if np.isscalar(selected) else [int(v) for v in np.asarray(selected)]
    if not steps:
        raise TOIError(f"TOI {toi!r} selects no step of the time axis {_describe(axis)}")
    return sorted(set(steps))


def step_range(axis: pd.DatetimeIndex, step: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The half-open period [start, end) that time step ``step`` stands for."""
    start = axis[step]
    return start, start + axis.freq

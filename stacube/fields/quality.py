"""Data-quality KPIs of an indices run, checked against thresholds: a breach must be seen, not logged.

Three figures per run, from the stored observations of the run's period and the parcels watched:
- ``parcels_covered``: the share of watched parcels with at least one usable acquisition in the period;
- ``cloud_free_fraction``: the share of observed parcel-acquisitions that were usable (rows without an
  acquisition, not downloaded, or of a parcel smaller than a pixel observed nothing and do not count);
- both are NaN, and not a breach, for a period without any observation (between two passes);
- ``stale_parcels``: the share of watched parcels without a usable acquisition in the last
  ``stale_weeks`` weeks up to the period's end (ever stored, not just this period).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import pandas as pd

from ..errors import SpecError


@dataclass(frozen=True)
class QualityThresholds:
    """Where a KPI breaches: below a minimum, or above a maximum."""

    min_parcels_covered: float = 0.5
    """Least share (0 to 1) of watched parcels with a usable acquisition in the period."""
    min_cloud_free_fraction: float = 0.2
    """Least share (0 to 1) of the period's parcel-acquisitions that were usable."""
    max_stale_parcels: float = 0.5
    """Greatest share (0 to 1) of watched parcels without a usable acquisition in the last ``stale_weeks``."""
    stale_weeks: int = 4
    """Weeks, up to the period's end, within which a parcel needs a usable acquisition not to be stale."""

    def __post_init__(self) -> None:
        """Refuse, naming it, a share outside 0 to 1 or a ``stale_weeks`` that is no whole number of 1 or more:
        a breach judged against such a threshold would mean nothing."""
        for name in ("min_parcels_covered", "min_cloud_free_fraction", "max_stale_parcels"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
                raise SpecError(f"{name} {value!r} must be a share from 0 to 1")
        weeks = self.stale_weeks
        if not isinstance(weeks, numbers.Integral) or isinstance(weeks, bool) or weeks < 1:
            raise SpecError(f"stale_weeks {weeks!r} must be a whole number of weeks, 1 or more")


UNOBSERVED = ("no acquisition", "not downloaded", "smaller than a pixel")
"""Reasons of rows that observed nothing: they never count for or against the period's KPIs' shares."""


def quality_report(observations: pd.DataFrame, watched: list[str], start: pd.Timestamp, end: pd.Timestamp,
                   thresholds: QualityThresholds | None = None) -> pd.DataFrame:
    """One row per KPI: name, value, threshold, whether it is within it, and a sentence saying so.

    Parameters
    ----------
    observations : pandas.DataFrame
        Stored statistics (``ParcelStore.observations``), at least ``stale_weeks`` back from ``end``.
    watched : list[str]
        The parcel ids watched; other parcels' rows are ignored.
    start, end : pd.Timestamp
        The run's period, both included.
    thresholds : QualityThresholds or None, optional
        Where each KPI breaches; None: ``QualityThresholds()``.

    Returns
    -------
    pandas.DataFrame
        Columns ``kpi``, ``value`` (a share, 0 to 1, rounded to 4 digits and judged so), ``threshold``, ``ok``
        and ``message``; rows ``parcels_covered``, ``cloud_free_fraction`` (among observed parcel-dates:
        ``UNOBSERVED`` rows left out) and ``stale_parcels``. A period without any observation gives NaN for
        the first two, not a breach.
    """
    thresholds = thresholds or QualityThresholds()
    watched_ids = set(map(str, watched))
    rows = observations[observations["parcel_id"].astype(str).isin(watched_ids)].copy()
    dates = pd.to_datetime(rows["date"])
    # rows are dated by day: a period starting at 04:00 holds its first day's acquisitions (that day's step
    # was computed), which a comparison with the instant would leave out
    first_day = pd.Timestamp(start).floor("D") if pd.Timestamp(start) > pd.Timestamp.min + pd.Timedelta(days=1) \
        else pd.Timestamp.min  # an open start: every row up to the end
    in_period = rows[(dates >= first_day) & (dates <= end)]
    # What was observed: not a day without acquisition, a patch not downloaded (a failure, reported by the
    # ingest, not a cloud) nor a parcel smaller than a pixel (never observable)
    observed = in_period[~in_period["reason"].isin(UNOBSERVED)]
    covered = in_period.loc[in_period["usable"].astype(bool), "parcel_id"].nunique()
    recent = rows[(dates > end - pd.Timedelta(weeks=thresholds.stale_weeks)) & (dates <= end)
                  & rows["usable"].astype(bool)]
    n = max(len(watched_ids), 1)
    nothing = float("nan")  # a period without a single observation: nothing to judge, not a breach
    figures = {
        "parcels_covered": (covered / n if len(observed) else nothing, thresholds.min_parcels_covered, "min"),
        "cloud_free_fraction": (float(observed["usable"].astype(bool).mean()) if len(observed) else nothing,
                                thresholds.min_cloud_free_fraction, "min"),
        "stale_parcels": ((len(watched_ids) - recent["parcel_id"].nunique()) / n, thresholds.max_stale_parcels,
                          "max"),
    }
    out = []
    for name, (value, limit, kind) in figures.items():
        value = round(value, 4)  # judged as stored, so that a stored value never contradicts its verdict
        relation = ("at least" if kind == "min" else "at most")
        if value != value:
            out.append({"kpi": name, "value": value, "threshold": limit, "ok": True,
                        "message": f"{name}: no acquisition observed in the period, nothing to judge"})
            continue
        ok = value >= limit if kind == "min" else value <= limit
        out.append({"kpi": name, "value": value, "threshold": limit, "ok": ok,
                    "message": f"{name} {value:.4g} {'meets' if ok else 'breaches'} {relation} {limit}"})
    return pd.DataFrame(out)

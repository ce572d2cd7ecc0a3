"""Parcel rows as the store keeps them and the KPIs count them: one row per parcel and day, and a period that
starts mid-day holds its first day."""

from __future__ import annotations

import pandas as pd

from stacube.fields.quality import quality_report
from stacube.fields.store import OBSERVATION_COLUMNS, observation_rows


def _rows(*stamps_and_ndvi):
    frame = pd.DataFrame([{c: None for c in OBSERVATION_COLUMNS} | {"parcel_id": "P1", "date": pd.Timestamp(when),
                           "ndvi_mean": ndvi, "usable": True, "reason": None, "valid_pixels": 10,
                           "total_pixels": 10, "valid_fraction": 1.0} for when, ndvi in stamps_and_ndvi])
    return frame[OBSERVATION_COLUMNS]


def test_two_steps_of_one_day_keep_the_later_as_the_days_row():
    kept = observation_rows(_rows(("2024-07-01T12:00", 0.9), ("2024-07-01T00:00", 0.1), ("2024-07-02", 0.5)))
    assert list(zip(kept.date.astype(str), kept.ndvi_mean, strict=True)) == [("2024-07-01", 0.9), ("2024-07-02", 0.5)]


def test_a_period_starting_mid_day_counts_its_first_days_acquisitions():
    stored = observation_rows(_rows(("2024-07-01T10:30", 0.7)))  # stored as the date 2024-07-01
    report = quality_report(stored, ["P1"], pd.Timestamp("2024-07-01T04:00"), pd.Timestamp("2024-07-08T04:00"))
    figures = report.set_index("kpi")["value"]
    assert figures["parcels_covered"] == 1.0 and figures["cloud_free_fraction"] == 1.0

"""KPIs and published series judged on what was observed, and files that say what they hold."""

import numpy as np
import pandas as pd
import pytest

from stacube.fields.quality import quality_report
from stacube.fields.store import OBSERVATION_COLUMNS

START, END = pd.Timestamp("2024-06-03"), pd.Timestamp("2024-06-09T23:59:59.999999")


def _rows(*rows):
    out = []
    for parcel, day, usable, reason in rows:
        row = dict.fromkeys(OBSERVATION_COLUMNS)
        value = 0.5 if usable else np.nan
        row.update(parcel_id=parcel, date=pd.Timestamp(day), ndvi_mean=value, ndmi_mean=value, usable=usable,
                   reason=reason, valid_pixels=9 if usable else 0, total_pixels=9, run_id="r")
        out.append(row)
    return pd.DataFrame(out, columns=OBSERVATION_COLUMNS)


def _kpis(rows, watched, start=START):
    return quality_report(rows, watched, start, END).set_index("kpi")


def test_a_period_without_any_acquisition_has_nothing_to_judge_not_a_breach():
    kpis = _kpis(_rows(("A", "2024-06-03", False, "no acquisition"), ("B", "2024-06-03", False, "no acquisition")),
                 ["A", "B"])
    assert kpis.loc["cloud_free_fraction", "value"] != kpis.loc["cloud_free_fraction", "value"]  # NaN; was 0.0
    assert kpis.ok[["parcels_covered", "cloud_free_fraction"]].all()  # before: both breached (stale: judged)
    assert "nothing to judge" in kpis.loc["parcels_covered", "message"]


def test_rows_that_observed_nothing_count_neither_for_nor_against_the_cloud_free_share():
    rows = _rows(("A", "2024-06-04", True, None), ("A", "2024-06-07", True, None),
                 ("B", "2024-06-04", False, "clouds"), ("B", "2024-06-07", True, None),
                 ("C", "2024-06-04", False, "not downloaded"), ("D", "2024-06-04", False, "smaller than a pixel"))
    assert _kpis(rows, ["A", "B", "C", "D"]).loc["cloud_free_fraction", "value"] == 0.75  # was 0.5


def test_an_open_start_and_a_value_on_its_threshold_are_judged_as_stored():
    rows = _rows(("A", "2024-06-04", True, None), ("B", "2024-06-04", False, "clouds"))
    kpis = _kpis(rows, ["A", "B"], start=pd.Timestamp.min)  # before: OutOfBoundsDatetime
    assert kpis.loc["parcels_covered", "value"] == 0.5 and kpis.loc["parcels_covered", "ok"]
    thirds = _rows(("A", "2024-06-04", True, None), ("B", "2024-06-04", False, "clouds"),
                   ("C", "2024-06-04", False, "clouds"))
    stored = quality_report(thirds, ["A", "B", "C"], START, END, None).set_index("kpi").loc["parcels_covered"]
    assert stored.value == 0.3333 and stored.ok == (stored.value >= 0.5)


def test_an_empty_series_keeps_its_column_types_and_an_export_never_writes_a_row_without_its_parcel(tmp_path):
    import geopandas as gpd
    import shapely

    from stacube.errors import ParcelError
    from stacube.fields.publish import export_series, weekly_series

    empty = weekly_series(_rows(("A", "2024-06-04", False, "clouds")))
    assert empty.empty and str(empty.week.dtype).startswith("datetime64") and empty.filled.dtype == bool
    series = weekly_series(_rows(("17", "2024-06-04", True, None)))
    parcels = gpd.GeoDataFrame({"parcel_id": [18]}, geometry=[shapely.box(12, 47, 12.001, 47.001)], crs="EPSG:4326")
    with pytest.raises(ParcelError, match="not among the parcels"):  # before: a row with a null geometry
        export_series(series, parcels, tmp_path)
    written = export_series(series, parcels.assign(parcel_id=[17]), tmp_path)
    assert gpd.read_parquet(written["geoparquet"]).geometry.notna().all()

"""The DuckDB parcel store keeps its times in UTC whatever the machine's time zone."""

import os
import subprocess
import sys

import pandas as pd

SCRIPT = """
import sys
import geopandas as gpd
import pandas as pd
from shapely.geometry import box
from stacube.fields.duckdb_store import DuckDBParcelStore
from stacube.fields.store import OBSERVATION_COLUMNS

store = DuckDBParcelStore(sys.argv[1])
parcels = gpd.GeoDataFrame({"parcel_id": ["P"], "group_id": ["g"], "utm_zone": [33]},
                           geometry=[box(12.0, 47.0, 12.001, 47.001)], crs="EPSG:4326")
store.add_parcels(parcels)
row = {c: None for c in OBSERVATION_COLUMNS}
row.update(parcel_id="P", date=pd.Timestamp("2024-06-01").date(), valid_pixels=1, total_pixels=1,
           valid_fraction=1.0, usable=True)
store.write_observations(pd.DataFrame([row]))
store.watch(["P"], False)
now = pd.Timestamp.now(tz="UTC").tz_localize(None)
print(store.purge_unwatched(now - pd.Timedelta("1h")), store.purge_unwatched(now + pd.Timedelta("1min")))
"""


def test_a_purge_west_of_utc_keeps_parcels_unwatched_moments_ago(tmp_path):
    """In UTC-11, DuckDB's now() used to be stored 11 hours behind UTC: a cutoff of one hour ago then
    purged the series of a parcel unwatched a moment ago."""
    env = {**os.environ, "TZ": "Pacific/Pago_Pago"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "parcels.duckdb")], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "1"]  # one hour ago: too recent; a minute ahead: its one observation
    assert pd.Timestamp.now(tz="Pacific/Pago_Pago").utcoffset() == pd.Timedelta("-11h")  # the zone the test is in

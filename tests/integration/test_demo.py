"""`make demo` runs `python -m stacube.demo`: the whole walk-through, its outputs and figures."""

from __future__ import annotations

import re

import pandas as pd

from stacube import Cube
from stacube.demo import main


def test_the_demo_walks_the_mission_and_writes_every_output(prefect_api, tmp_path, capsys):
    main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    for line in ("catalog sync: 16 Items", "rolled back (9 patches)", "identical values", "Prefect flow run",
                 "speed-up warm vs cold", "offline load after the servers stopped: identical", "parcels: 25 imported"):
        assert line in printed, line
    assert "Prefect flow run" in printed and "1 patches written" in printed
    # stacube's run id named as stacube's, the flow run's id (a UUID) from the flow's result
    flow_run = re.search(r"Prefect flow run ([0-9a-f-]{36}) \(.+\): stacube run ([0-9a-f]{32}), ", printed)
    assert flow_run, printed
    history = Cube.open(tmp_path / "dem.icechunk").history()
    assert flow_run[2] in set(history.run_id) and flow_run[1] not in set(history.run_id)
    assert all(re.search(rf"(?<!\S){snapshot}(?!\S)", printed) for snapshot in history.snapshot)  # whole ids
    for name in ("dem.icechunk", "tile_dem.tif", "tile_dem.png", "state.geojson", "state.png", "state.html",
                 "fields.duckdb", "parcel-ndvi.csv", "parcel-ndvi.parquet", "parcel-ndvi.png"):
        assert (tmp_path / name).exists(), name
    series = pd.read_csv(tmp_path / "parcel-ndvi.csv")
    assert series.parcel_id.nunique() == 25 and series.filled.any() and series.ndvi.between(0, 1).all()

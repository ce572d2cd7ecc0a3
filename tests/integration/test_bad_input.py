"""One table of bad inputs across the Python API and the CLI.

Each row gets a clear error that names the bad value, and afterwards the cubes and the catalog
hold exactly the files they held before (nothing written, nothing synced, no snapshot).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from typer.testing import CliRunner

from stacube import Cube, CubeSpec, StacSource, StacubeError, Variable
from stacube.cli import app

from .conftest import dem_spec


@dataclass
class World:
    """A spatial cube with some patches, a cube with a time axis, their catalog, and files to spoil."""

    dem: Cube
    series: Cube
    dem_url: str
    series_url: str
    catalog: Path
    zone: GeoBox
    api_url: str
    tmp: Path

    def bbox(self, y0: int, y1: int, x0: int, x1: int) -> str:
        return ",".join(repr(v) for v in self.zone[y0:y1, x0:x1].extent.boundingbox)

    def cli(self, *args: Any) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exit_code == 0:
            return ""  # the row's pytest.raises fails: the command accepted the bad input
        assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, not a stack dump
        raise CliFailed(result.stderr.strip())


class CliFailed(Exception):
    """The CLI's one-line error, raised so that CLI rows read like API rows."""


def files_under(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def world(servers, time_servers, sample_layout, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    catalog = tmp / "catalog"
    zone = sample_layout.extent_geobox()
    dem = Cube.create(tmp / "dem.icechunk", dem_spec(servers[1].url, sample_layout), catalog_dir=catalog)
    dem.download(zone[0:300, 0:300])
    from ..conftest import TIME_LAYOUT

    series_zone = TIME_LAYOUT.extent_geobox()
    series = Cube.create(tmp / "series.icechunk", CubeSpec(
        name="series", zones=[series_zone], chunks=(256, 256), time=pd.date_range("2021-06-01", periods=7, freq="D"),
        variables={"dem": Variable("float32")},
        source=StacSource(api_url=time_servers[1].url, collection="sample-series", assets={"dem": "dem"})),
        catalog_dir=catalog)
    (tmp / "parcels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]]}}]}))
    (tmp / "not-a-key.json").write_text("this is not JSON")
    (tmp / "spec-bad-dtype.json").write_text(json.dumps({**dem.spec.to_json(), "name": "other"}).replace(
        '"float32"', '"float33"'))
    return World(dem, series, str(tmp / "dem.icechunk"), str(tmp / "series.icechunk"), catalog, zone,
                 servers[1].url, tmp)


def spec_with(w: World, **overrides) -> CubeSpec:
    args = dict(name="dem", zones=[w.zone], chunks=(256, 256), source=source_with(w),
                variables={"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)})
    args.update(overrides)
    return CubeSpec(**args)


def source_with(w: World, **overrides) -> StacSource:
    args = dict(api_url=w.api_url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"})
    args.update(overrides)
    return StacSource(**args)


def parcels_import(w: World, path: Any, *extra: str) -> str:
    return w.cli("parcels", "import", path, "--id-column", "name", "--store",
                 f"duckdb:///{w.tmp / 'fields.duckdb'}", *extra)


far_away = box(0, 0, 1000, 1000, "EPSG:32633")

# (label, call, the text the error must contain: the bad value, as the user gave it)
CASES: list[tuple[str, Any, str]] = [
    # ROIs
    ("roi outside every zone", lambda w: w.dem.load(far_away), "outside every zone"),
    ("roi geobox without crs", lambda w: w.dem.load(GeoBox((10, 10), w.zone.transform, None)), "has no CRS"),
    ("roi geometry without crs", lambda w: w.dem.load(Geometry(far_away.geom, None)), "has no CRS"),
    ("roi of the wrong type", lambda w: w.dem.load((0, 0, 10, 10)), "(0, 0, 10, 10)"),
    ("roi empty geometry", lambda w: w.dem.download(Geometry(far_away.geom.buffer(-1e6), "EPSG:32633")), "empty"),
    ("cli bbox of three numbers", lambda w: w.cli("cube", "download", w.dem_url, "--bbox", "1,2,3"), "'1,2,3'"),
    ("cli bbox min above max", lambda w: w.cli("cube", "download", w.dem_url, "--bbox", "3,2,1,4"), "'3,2,1,4'"),
    ("cli bbox not numbers", lambda w: w.cli("cube", "load", w.dem_url, "--bbox", "a,b,c,d"), "'a,b,c,d'"),
    ("cli unknown crs", lambda w: w.cli("cube", "download", w.dem_url, "--bbox", "1,2,3,4", "--crs", "EPSG:999999"),
     "'EPSG:999999'"),
    ("cli bbox outside the cube", lambda w: w.cli("cube", "download", w.dem_url, "--bbox", "100,10,101,11"),
     "(100.0, 10.0, 101.0, 11.0)"),
    ("cli negative resolution", lambda w: w.cli("cube", "load", w.dem_url, "--bbox", w.bbox(0, 64, 0, 64), "--crs",
                                                "EPSG:3413", "--resolution", "-10"), "-10"),
    # TOIs
    ("toi on a cube without time", lambda w: w.dem.load(w.zone[0:10, 0:10], toi="2024-01-01"), "'2024-01-01'"),
    ("toi outside the time axis", lambda w: w.series.load(w.series.spec.zones["epsg3413"][0:10, 0:10],
                                                          toi="2030-01"), "2030-01"),
    ("toi not a time", lambda w: w.series.download(w.series.spec.zones["epsg3413"][0:10, 0:10], toi="soonish"),
     "soonish"),
    ("toi reversed", lambda w: w.series.download(w.series.spec.zones["epsg3413"][0:10, 0:10],
                                                 toi=slice("2021-06-05", "2021-06-02")), "2021-06-05"),
    ("cli time not a date", lambda w: w.cli("cube", "download", w.series_url, "--bbox", "1,2,3,4", "--time",
                                            "not-a-date"), "not-a-date"),
    ("extend_time to no time", lambda w: w.series.extend_time("whenever"), "'whenever'"),
    # specs
    ("unknown dtype", lambda w: Variable("float33"), "'float33'"),
    ("string dtype", lambda w: Variable("str"), "'str'"),
    ("nodata outside the dtype", lambda w: Variable("uint8", nodata=300), "300"),
    ("integer without nodata", lambda w: Variable("int16"), "int16"),
    ("unknown resampling", lambda w: Variable("float32", resampling="fancy"), "'fancy'"),
    ("cube name with a slash", lambda w: spec_with(w, name="dem/../x"), "'dem/../x'"),
    ("variable name with ..", lambda w: spec_with(w, variables={"..dem": Variable("float32")}), "'..dem'"),
    ("chunks too small", lambda w: spec_with(w, chunks=(8, 0)), "(8, 0)"),
    ("irregular time axis", lambda w: spec_with(w, time=pd.DatetimeIndex(["2021-01-01", "2021-01-05", "2021-01-06"])),
     "regular"),
    ("zone without crs", lambda w: spec_with(w, zones=[GeoBox((10, 10), w.zone.transform, None)]), "has no CRS"),
    ("asset for an unknown variable", lambda w: spec_with(w, source=source_with(w, assets={"dem": "dem",
                                                                                       "slope": "slope"})),
     "'slope'"),
    ("variable without an asset", lambda w: spec_with(w, source=source_with(w, assets={"dem": "dem"})),
     "'datamask'"),
    ("unknown variable asked", lambda w: w.dem.load(w.zone[0:10, 0:10], variables=["dem", "slope"]), "'slope'"),
    ("cli spec file with a bad dtype", lambda w: w.cli("cube", "create", w.tmp / "other", "--spec",
                                                       w.tmp / "spec-bad-dtype.json"), "'float33'"),
    ("cli spec file missing", lambda w: w.cli("cube", "create", w.tmp / "other", "--spec", w.tmp / "nope.json"),
     "nope.json"),
    # URLs
    ("api url not http", lambda w: source_with(w, api_url="ftp://127.0.0.1/stac"), "'ftp://127.0.0.1/stac'"),
    ("cube url of an unknown scheme", lambda w: Cube.open("gs://bucket/cube"), "gs://bucket/cube"),
    ("cube url with no cube", lambda w: Cube.open(w.tmp / "no-cube-here"), "no-cube-here"),
    ("create over an existing cube", lambda w: Cube.create(w.dem_url, w.dem.spec), "dem.icechunk"),
    ("s3 url without a bucket", lambda w: Cube.open("s3:///cube"), "s3:///cube"),
    ("cli rollback to an unknown snapshot", lambda w: w.cli("cube", "rollback", w.dem_url, "NOSUCHSNAPSHOT"),
     "NOSUCHSNAPSHOT"),
    ("load at an unknown tag", lambda w: w.dem.load(w.zone[0:10, 0:10], at="no-such-tag"), "no-such-tag"),
    ("tag name with a slash", lambda w: w.dem.tag("a/b"), "'a/b'"),
    # catalog files
    ("corrupt catalog part", lambda w: corrupt_catalog_part(w), "part-"),
    # parcel files
    ("parcel file missing", lambda w: parcels_import(w, w.tmp / "no-parcels.gpkg"), "no-parcels.gpkg"),
    ("parcel id column missing", lambda w: w.cli("parcels", "import", w.tmp / "parcels.geojson", "--id-column",
                                                 "field_id", "--store", f"duckdb:///{w.tmp / 'fields.duckdb'}"),
     "'field_id'"),
    ("parcel store url unknown", lambda w: w.cli("parcels", "import", w.tmp / "parcels.geojson", "--id-column",
                                                 "name", "--store", "mysql://nowhere/db"), "mysql://nowhere/db"),
    # credentials
    ("ee key file missing", lambda w: ee_with_key(w.tmp / "missing-key.json"), "missing-key.json"),
    ("ee key file not json", lambda w: ee_with_key(w.tmp / "not-a-key.json"), "not-a-key.json"),
]


def corrupt_catalog_part(w: World) -> Any:
    """A copy of the catalog whose Item file was cut off: searching it names the file."""
    import shutil

    from stacube.catalog import LocalCatalog

    copy = w.tmp / "catalog-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(w.catalog, copy)
    catalog = LocalCatalog(copy, w.api_url, "sample-dem")
    part = next(catalog.folder.glob("items/part-*.parquet"))
    part.write_bytes(part.read_bytes()[:200])
    return catalog.search()


def ee_with_key(path: Path) -> Any:
    import os

    from stacube.ee_client import initialize

    saved = os.environ.get("STACUBE_EE_KEY_FILE")
    os.environ["STACUBE_EE_KEY_FILE"] = str(path)
    try:
        return initialize("http://127.0.0.1:9", None)
    finally:
        if saved is None:
            os.environ.pop("STACUBE_EE_KEY_FILE")
        else:
            os.environ["STACUBE_EE_KEY_FILE"] = saved


def test_the_table_is_at_least_thirty_rows_long():
    assert len(CASES) >= 30 and len({label for label, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("label", "call", "named"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_an_error_naming_the_value_and_changes_nothing(world, label, call, named):
    before = files_under(Path(world.dem_url), Path(world.series_url), world.catalog)
    with pytest.raises(Exception) as caught:
        call(world)
    message = str(caught.value)
    assert named in message, f"{label}: {type(caught.value).__name__}: {message}"
    # The API raises stacube's own errors (catchable as one family); the CLI prints one line.
    assert isinstance(caught.value, (StacubeError, CliFailed)), f"{label}: {type(caught.value).__name__}: {message}"
    assert files_under(Path(world.dem_url), Path(world.series_url), world.catalog) == before, label
    assert not re.search(r"Traceback", message)

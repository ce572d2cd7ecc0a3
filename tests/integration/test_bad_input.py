"""One table of bad inputs across the Python API and the CLI.

Each row gets a clear error that names the bad value, and afterwards the cubes and the catalog
hold exactly the files they held before (nothing written, nothing synced, no snapshot).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from typer.testing import CliRunner

from stacube import CatalogError, Cube, CubeSpec, ItemError, ROIError, StacSource, StacubeError, StorageError, Variable
from stacube.catalog import LocalCatalog
from stacube.cli import app
from stacube.testing.generate import publish_items
from stacube.testing.servers import start_stac_api

from .conftest import dem_spec
from .test_permanent_failures import read_only_view


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
    items: list[dict[str, Any]] = field(default_factory=list)  # the sample's Items, as the API serves them
    bad_items_url: str = ""  # a cube over an API serving an Item without a time
    read_only_catalog: Path | None = None  # a copy of the catalog on a read-only mount (None: cannot mount)

    def bbox(self, y0: int, y1: int, x0: int, x1: int) -> str:
        return ",".join(repr(v) for v in self.zone[y0:y1, x0:x1].extent.boundingbox)

    def folders(self) -> list[Path]:
        """What no bad input may change: the cubes and the catalog."""
        return [Path(self.dem_url), Path(self.series_url), self.catalog, Path(self.bad_items_url)]

    def cli(self, *args: Any) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exit_code == 0:
            return ""  # the row's pytest.raises fails: the command accepted the bad input
        assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, not a stack dump
        raise CliFailed(result.stderr.strip())


class CliFailed(Exception):
    """The CLI's one-line error, raised so that CLI rows read like API rows."""

    @property
    def kind(self) -> str:
        """The error type the line names: ``error: ROIError: ...`` gives ROIError."""
        return str(self).removeprefix("error: ").split(":", 1)[0]


def files_under(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def world(servers, time_servers, sample_layout, sample_dir, tmp_path_factory):
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
    (tmp / "a-file").write_text("a file where a catalog folder is expected")
    items = json.loads(publish_items(sample_dir, servers[0].url, tmp / "items.json").read_text())["features"]
    without_time = json.loads(json.dumps({"type": "FeatureCollection", "features": items}))
    without_time["features"][0]["properties"]["datetime"] = None  # tile_r0_c0: no time at all
    (tmp / "items-without-time.json").write_text(json.dumps(without_time))
    bad_api = start_stac_api(tmp / "items-without-time.json")
    Cube.create(tmp / "bad-items.icechunk", dem_spec(bad_api.url, sample_layout), catalog_dir=catalog)
    shutil.copytree(catalog, tmp / "read-only-source")
    read_only = None
    with contextlib.ExitStack() as mounted:
        try:
            read_only = mounted.enter_context(read_only_view(tmp / "read-only-source", tmp / "read-only-catalog"))
        except pytest.skip.Exception:
            pass  # the rows that need it are skipped
        try:
            yield World(dem, series, str(tmp / "dem.icechunk"), str(tmp / "series.icechunk"), catalog, zone,
                        servers[1].url, tmp, items, str(tmp / "bad-items.icechunk"), read_only)
        finally:
            bad_api.stop()


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

    from stacube.sources.earthengine.client import initialize

    # the key file alone: a token an earlier test's flow run left in this process would come first
    names = ("STACUBE_EE_KEY_FILE", "STACUBE_EE_TOKEN")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ["STACUBE_EE_KEY_FILE"] = str(path)
    try:
        return initialize("http://127.0.0.1:9", None)
    finally:
        for name in names:
            os.environ.pop(name, None)
            if saved[name] is not None:
                os.environ[name] = saved[name]


# --- rows that also say which stacube error they expect ------------------------------------------
ERROR_OF: dict[str, type[Exception]] = {}


def typed(error: type[Exception], label: str, call: Any, named: str) -> tuple[str, Any, str]:
    ERROR_OF[label] = error
    return label, call, named


NOT_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
CORNERS = ("minx", "miny", "maxx", "maxy")


def spoilt_bounds(w: World, corner: int, value: float) -> tuple[float, ...]:
    bounds = list(w.zone[600:664, 600:664].extent.boundingbox)
    bounds[corner] = value
    return tuple(bounds)


def box_polygon(bounds: tuple[float, ...], crs: str = "EPSG:3413") -> Geometry:
    """A box as a polygon whose ring starts at a corner of finite numbers, so that it closes whatever
    else is NaN (a ring starting at NaN never equals its end)."""
    x0, y0, x1, y1 = bounds
    corners = [(x1, y1), (x0, y1), (x0, y0), (x1, y0)]
    start = next(i for i, (x, y) in enumerate(corners) if math.isfinite(x) and math.isfinite(y))
    ring = corners[start:] + corners[:start]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely's "invalid value encountered": the point
        return Geometry(shapely.Polygon([*ring, ring[0]]), crs)


def spoilt_geobox(w: World, index: int, value: float) -> GeoBox:
    """A 64 x 64 GeoBox in the zone whose transform has ``value`` at ``index`` (a, b, c, d, e, f)."""
    numbers = list(w.zone[600:664, 600:664].transform)[:6]
    numbers[index] = value
    return GeoBox((64, 64), Affine(*numbers), "EPSG:3413")


def fresh_copy(w: World) -> Path:
    """A copy of the world's catalog that a row may spoil."""
    copy = w.tmp / "copies" / uuid.uuid4().hex[:8]
    shutil.copytree(w.catalog, copy)
    return copy


def dem_catalog(root: Path, w: World) -> LocalCatalog:
    return LocalCatalog(root, w.api_url, "sample-dem")


def spoilt_windows(w: World, content: bytes | None) -> Path:
    """A copy of the catalog whose windows file holds ``content`` (None: a folder in its place)."""
    root = fresh_copy(w)
    windows = dem_catalog(root, w).folder / "windows.json"
    windows.unlink()
    if content is None:
        windows.mkdir()
    else:
        windows.write_bytes(content)
    return root


def collection_folder_is_a_file(w: World) -> Path:
    root = w.tmp / "copies" / uuid.uuid4().hex[:8]
    root.mkdir(parents=True)
    dem_catalog(root, w).folder.write_text("not a folder")
    return root


def needs_read_only(w: World) -> Path:
    if w.read_only_catalog is None:
        pytest.skip("no read-only mount here")
    return w.read_only_catalog


def appended(w: World, *bad: Any) -> int:
    """Append a good new Item and ``bad`` to a copy of the catalog; none of them may land."""
    root = fresh_copy(w)
    catalog = dem_catalog(root, w)
    before = files_under(root)
    good = {**json.loads(json.dumps(w.items[0])), "id": "a-good-new-item"}
    try:
        return catalog.append([good, *bad])
    finally:
        assert files_under(root) == before, "the catalog was changed"


def item_with(w: World, name: str | None, properties: Any = ..., drop: tuple[str, ...] = (), **changes: Any) -> Any:
    """One of the sample's Items under id ``name`` (None: no id), its properties changed, dropped or replaced."""
    item = json.loads(json.dumps(w.items[1]))
    item["id"] = name
    if name is None:
        item.pop("id")
    for key in drop:
        item["properties"].pop(key)
    item["properties"].update(changes)
    if properties is not ...:
        item["properties"] = properties
    return item


def bbox_with(corner: int, text: str) -> str:
    """A lon/lat bbox over the sample (Greenland) with ``text`` at one corner."""
    values = ["-47.8", "71.5", "-47.3", "71.7"]
    values[corner] = text
    return ",".join(values)


UNCOVERED = (600, 900, 600, 900)  # rows of the dem zone no run has filled and no sync has covered
GARBAGE_WINDOWS: dict[str, bytes | None] = {
    "empty": b"",
    "blank": b"  \n",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
    "utf-16": '{"windows": []}'.encode("utf-16"),
    "truncated json": b'{"source": "http://127.0.0.1", "collection": "sample-dem", "windows": [{"bbox": [-47.8, 71.5',
    "a json list": b"[]",
    "json null": b"null",
    "a json string": b'"windows"',
    "no windows key": b'{"source": "http://127.0.0.1"}',
    "windows not a list": b'{"windows": 5}',
    "a window not an object": b'{"windows": [[-180, -90, 180, 90]]}',
    "a bbox of letters": b'{"windows": [{"bbox": "abcd"}]}',
    "a bbox of three numbers": b'{"windows": [{"bbox": [0, 0, 1]}]}',
    "a nan bbox": b'{"windows": [{"bbox": [NaN, -90, 180, 90]}]}',
    "a start that is not a time": b'{"windows": [{"bbox": [-180, -90, 180, 90], "start": "not a time", '
                                  b'"end": "2021-01-01T00:00:00"}]}',
    "a folder": None,
}
BAD_ITEMS: dict[str, tuple[Any, str]] = {  # label: (how to spoil the Item, the text the error must name)
    "null datetime": (lambda w: item_with(w, "bad-null-datetime", datetime=None), "'bad-null-datetime'"),
    "no datetime": (lambda w: item_with(w, "bad-no-datetime", drop=("datetime",)), "'bad-no-datetime'"),
    "only a start": (lambda w: item_with(w, "bad-only-start", datetime=None, start_datetime="2021-06-01T00:00:00Z"),
                     "'bad-only-start'"),
    "datetime a word": (lambda w: item_with(w, "bad-word", datetime="soon"), "'soon'"),
    "datetime a date only": (lambda w: item_with(w, "bad-date", datetime="2021-06-01"), "'2021-06-01'"),
    "datetime a number": (lambda w: item_with(w, "bad-number", datetime=12345), "12345"),
    "datetime month 13": (lambda w: item_with(w, "bad-month", datetime="2021-13-01T00:00:00Z"),
                          "'2021-13-01T00:00:00Z'"),
    "end not a time": (lambda w: item_with(w, "bad-end", datetime=None, start_datetime="2021-06-01T00:00:00Z",
                                           end_datetime="x"), "'bad-end'"),
    "null properties": (lambda w: item_with(w, "bad-null-properties", properties=None), "'bad-null-properties'"),
    "properties a list": (lambda w: item_with(w, "bad-list-properties", properties=[]), "'bad-list-properties'"),
    "no id": (lambda w: item_with(w, None), "has id None"),
    "empty id": (lambda w: item_with(w, ""), "has id ''"),
    "not an object": (lambda w: "tile_r9_c9", "'tile_r9_c9'"),
}
CLI_BBOX_COMMANDS = (("cube", "download"), ("cube", "load"), ("catalog", "sync"))

CASES += [
    # ROIs with NaN or infinite numbers: each corner of a box, each number of a GeoBox's transform
    *[typed(ROIError, f"roi geometry {CORNERS[i]} {text}",
            lambda w, i=i, v=v: (w.dem.load if i % 2 else w.dem.download)(box_polygon(spoilt_bounds(w, i, v))),
            f"[{text}]")
      for i in range(4) for text, v in NOT_FINITE.items()],
    *[typed(ROIError, f"roi geobox transform {'abcdef'[i]} {text}",
            lambda w, i=i, v=v: w.dem.load(spoilt_geobox(w, i, v)), f"[{text}]")
      for i in (0, 2, 4, 5) for text, v in NOT_FINITE.items()],
    typed(ROIError, "roi area nan", lambda w: w.dem.load(w.zone[600:664, 600:664],
                                                         area=box_polygon(spoilt_bounds(w, 2, math.nan))), "[nan]"),
    typed(ROIError, "roi area inf", lambda w: w.dem.load(w.zone[600:664, 600:664],
                                                         area=box_polygon(spoilt_bounds(w, 3, math.inf))), "[inf]"),
    *[typed(ROIError, f"cli {' '.join(CLI_BBOX_COMMANDS[i % 3])} bbox {CORNERS[i]} {text}",
            lambda w, i=i, text=text: w.cli(*CLI_BBOX_COMMANDS[i % 3], w.dem_url, f"--bbox={bbox_with(i, text)}",
                                            "--catalog-dir", w.catalog),
            f"'{bbox_with(i, text)}'")
      for i in range(4) for text in NOT_FINITE],
    *[typed(ROIError, f"cli bbox spelt {text}",
            lambda w, text=text: w.cli("cube", "download", w.dem_url, "--bbox", f"1,{text},3,4"), f"'1,{text},3,4'")
      for text in ("NaN", "Infinity", "1e999")],
    typed(ROIError, "cli bbox -inf after a space", lambda w: w.cli("cube", "load", w.dem_url, "--bbox", "-inf,2,3,4"),
          "'-inf,2,3,4'"),
    *[typed(ROIError, f"cli resolution {text}",
            lambda w, text=text: w.cli("cube", "load", w.dem_url, "--bbox", w.bbox(600, 664, 600, 664), "--crs",
                                       "EPSG:3413", "--resolution", text), text)
      for text in ("nan", "inf")],
    # the catalog's windows file spoilt: named, with how to resync
    *[typed(CatalogError, f"windows file {name}",
            lambda w, content=content, n=n: (Cube.open(w.dem_url, catalog_dir=spoilt_windows(w, content)).load
                                             if n % 2 else
                                             Cube.open(w.dem_url, catalog_dir=spoilt_windows(w, content)).download)(
                w.zone[UNCOVERED[0]:UNCOVERED[1], UNCOVERED[2]:UNCOVERED[3]]), "windows.json")
      for n, (name, content) in enumerate(GARBAGE_WINDOWS.items())],
    *[typed(CatalogError, f"cli windows file {name}",
            lambda w, content=content: w.cli("catalog", "sync", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs",
                                             "EPSG:3413", "--catalog-dir", spoilt_windows(w, content)),
            "windows.json")
      for name, content in GARBAGE_WINDOWS.items()],
    typed(CatalogError, "cli catalog info windows file binary",
          lambda w: w.cli("catalog", "info", w.dem_url, "--catalog-dir", spoilt_windows(w, b"\xff\x00\x01")),
          "windows.json"),
    typed(CatalogError, "cli cube download windows file truncated",
          lambda w: w.cli("cube", "download", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs", "EPSG:3413",
                          "--catalog-dir", spoilt_windows(w, b'{"windows": [')), "windows.json"),
    typed(CatalogError, "windows file names how to resync",
          lambda w: dem_catalog(spoilt_windows(w, b"{"), w).windows(), "delete it and sync again"),
    # a catalog folder that cannot be written: a file in its place, a read-only mount
    typed(StorageError, "catalog dir is a file",
          lambda w: Cube.open(w.dem_url, catalog_dir=w.tmp / "a-file").download(w.zone[600:900, 600:900]), "a-file"),
    typed(StorageError, "catalog dir inside a file",
          lambda w: Cube.open(w.dem_url, catalog_dir=w.tmp / "a-file" / "catalogs").load(w.zone[600:900, 600:900]),
          "a-file"),
    typed(StorageError, "catalog collection folder is a file",
          lambda w: Cube.open(w.dem_url, catalog_dir=collection_folder_is_a_file(w)).download(
              w.zone[600:900, 600:900]), "sample-dem-"),
    typed(StorageError, "catalog dir read-only",
          lambda w: Cube.open(w.dem_url, catalog_dir=needs_read_only(w)).download(w.zone[600:900, 600:900]),
          "read-only-catalog"),
    typed(StorageError, "catalog dir read-only names the cause",
          lambda w: Cube.open(w.dem_url, catalog_dir=needs_read_only(w)).load(w.zone[600:900, 600:900]),
          "Read-only file system"),
    typed(StorageError, "cli catalog sync into a file",
          lambda w: w.cli("catalog", "sync", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs", "EPSG:3413",
                          "--catalog-dir", w.tmp / "a-file"), "a-file"),
    typed(StorageError, "cli cube download with the catalog in a file",
          lambda w: w.cli("cube", "download", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs", "EPSG:3413",
                          "--catalog-dir", w.tmp / "a-file" / "catalogs"), "a-file"),
    typed(StorageError, "cli catalog collection folder is a file",
          lambda w: w.cli("catalog", "sync", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs", "EPSG:3413",
                          "--catalog-dir", collection_folder_is_a_file(w)), "sample-dem-"),
    typed(StorageError, "cli catalog sync read-only",
          lambda w: w.cli("catalog", "sync", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs", "EPSG:3413",
                          "--catalog-dir", needs_read_only(w)), "read-only-catalog"),
    typed(StorageError, "cli cube load read-only catalog",
          lambda w: w.cli("cube", "load", w.dem_url, "--bbox", w.bbox(*UNCOVERED), "--crs", "EPSG:3413",
                          "--catalog-dir", needs_read_only(w)), "Read-only file system"),
    # Items the catalog cannot hold: refused by name, and none of the batch lands
    *[typed(ItemError, f"item {name}", lambda w, spoil=spoil: appended(w, spoil(w)), named)
      for name, (spoil, named) in BAD_ITEMS.items()],
    typed(ItemError, "item without a time from the api (download)",
          lambda w: Cube.open(w.bad_items_url, catalog_dir=w.catalog).download(w.zone[0:100, 0:100]), "'tile_r0_c0'"),
    typed(ItemError, "item without a time from the api (load)",
          lambda w: Cube.open(w.bad_items_url, catalog_dir=w.catalog).load(w.zone[0:100, 0:100]), "'tile_r0_c0'"),
    typed(ItemError, "cli catalog sync of an item without a time",
          lambda w: w.cli("catalog", "sync", w.bad_items_url, "--bbox", w.bbox(0, 100, 0, 100), "--crs", "EPSG:3413",
                          "--catalog-dir", w.catalog), "'tile_r0_c0'"),
    typed(ItemError, "cli cube download of an item without a time",
          lambda w: w.cli("cube", "download", w.bad_items_url, "--bbox", w.bbox(0, 100, 0, 100), "--crs",
                          "EPSG:3413", "--catalog-dir", w.catalog), "'tile_r0_c0'"),
]


def test_the_table_is_at_least_thirty_rows_long():
    assert len(CASES) >= 120 and len({label for label, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("label", "call", "named"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_an_error_naming_the_value_and_changes_nothing(world, label, call, named):
    before = files_under(*world.folders())
    with pytest.raises(Exception) as caught:
        call(world)
    message = str(caught.value)
    assert named in message, f"{label}: {type(caught.value).__name__}: {message}"
    # The API raises stacube's own errors (catchable as one family); the CLI prints one line.
    assert isinstance(caught.value, (StacubeError, CliFailed)), f"{label}: {type(caught.value).__name__}: {message}"
    expected = ERROR_OF.get(label)
    if expected is not None:  # rows that say which error: the API raises it, the CLI line names it
        kinds = {expected.__name__} | {k.__name__ for k in _subclasses(expected)}
        got = caught.value.kind if isinstance(caught.value, CliFailed) else type(caught.value).__name__
        assert isinstance(caught.value, CliFailed) or isinstance(caught.value, expected), f"{label}: {got}: {message}"
        assert got in kinds, f"{label}: {got}: {message}"
    assert files_under(*world.folders()) == before, label
    assert not re.search(r"Traceback", message)


def _subclasses(kind: type) -> set[type]:
    return {sub for direct in kind.__subclasses__() for sub in {direct, *_subclasses(direct)}}

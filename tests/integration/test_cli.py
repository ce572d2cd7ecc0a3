"""The `stacube` command line against a real cube over the sample collection served on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import xarray as xr
from odc.geo.geom import box
from typer.testing import CliRunner

from stacube import Cube
from stacube.cli import app

from .conftest import dem_spec

COMMANDS = [["demo"], ["catalog", "sync"], ["catalog", "search"], ["catalog", "info"], ["cube", "create"],
            ["cube", "info"], ["cube", "download"], ["cube", "load"], ["cube", "state"], ["cube", "history"],
            ["cube", "tag"], ["cube", "rollback"], ["cube", "expire"], ["parcels", "import"], ["parcels", "run"]]


def run(*args: str, ok: bool = True) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok and result.exit_code != 0:
        raise AssertionError(f"stacube {' '.join(map(str, args))} exited {result.exit_code}: {result.stderr}"
                             f"{result.exception!r}")
    return result.exit_code, result.stdout, result.stderr


def as_json(*args: str) -> dict:
    return json.loads(run(*args, "--json")[1])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    _, out, _ = run(*command, "--help")
    assert "Example:" in out and "Usage: stacube " + " ".join(command) in " ".join(out.split())


@pytest.fixture
def cli_cube(servers, sample_layout, tmp_path):
    """A cube made with `stacube cube create` from a spec file, and the options every call needs."""
    spec = dem_spec(servers[1].url, sample_layout)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_json()))
    url, catalog = str(tmp_path / "dem"), str(tmp_path / "catalog")
    created = as_json("cube", "create", url, "--spec", tmp_path / "spec.json", "--catalog-dir", catalog)
    assert created["spec"] == spec.to_json() and created["snapshots"] == 2
    return url, catalog


def _bbox(sample_layout, rows: slice, cols: slice) -> tuple[str, tuple[float, ...]]:
    values = tuple(sample_layout.extent_geobox()[rows, cols].extent.boundingbox)
    return ",".join(repr(v) for v in values), values


def test_download_history_load_in_three_formats_tag_and_rollback(cli_cube, sample_layout, tmp_path):
    url, catalog = cli_cube
    text, values = _bbox(sample_layout, slice(0, 512), slice(0, 512))
    where = ["--bbox", text, "--crs", "EPSG:3413", "--catalog-dir", catalog]
    report = as_json("cube", "download", url, *where, "--quiet")
    assert report["patches_written"] == 4 and report["snapshot_id"] and not report["patches_failed"]
    history = as_json("cube", "history", url, "--catalog-dir", catalog)
    assert history[0]["snapshot"] == report["snapshot_id"] and history[0]["patches_written"] == 4
    expected = Cube.open(url, catalog_dir=catalog).load(box(*values, "EPSG:3413"), offline=True)

    loaded = as_json("cube", "load", url, *where, "--offline", "--out", tmp_path / "tile.tif")
    assert loaded["written"] == [str(tmp_path / f"tile_{v}.tif") for v in ("dem", "datamask")]
    assert loaded["snapshot"] == report["snapshot_id"] and loaded["missing_patches"] == []
    for name in ("dem", "datamask"):
        with rasterio.open(tmp_path / f"tile_{name}.tif") as cog:
            assert cog.dtypes[0] == str(expected[name].dtype) and cog.crs.to_epsg() == 3413
            np.testing.assert_array_equal(cog.read(1), expected[name].values)
    lazy = as_json("cube", "load", url, *where, "--offline", "--chunks", "200", "--out", tmp_path / "lazy.tif")
    assert lazy["written"] == [str(tmp_path / f"lazy_{v}.tif") for v in ("dem", "datamask")]  # a cube without time
    for name in ("dem", "datamask"):
        with rasterio.open(tmp_path / f"lazy_{name}.tif") as cog:  # streamed chunk by chunk: the same COG values
            assert cog.crs.to_epsg() == 3413 and cog.transform == expected.odc.geobox.transform
            np.testing.assert_array_equal(cog.read(1), expected[name].values)
    as_json("cube", "load", url, *where, "--offline", "--out", tmp_path / "tile.nc")
    as_json("cube", "load", url, *where, "--offline", "--out", tmp_path / "tile.zarr", "--variables", "dem")
    with xr.open_dataset(tmp_path / "tile.nc", engine="h5netcdf") as nc:  # CF-decoded: nodata masked
        decoded = xr.decode_cf(expected)
        np.testing.assert_array_equal(nc.dem.values, decoded.dem.values)
        np.testing.assert_array_equal(nc.datamask.values, decoded.datamask.values)
        assert np.isnan(nc.datamask.values).any() and nc.datamask.encoding["_FillValue"] == 0
    with rasterio.open(f"netcdf:{tmp_path / 'tile.nc'}:dem") as nc:  # GDAL finds the grid mapping
        assert nc.crs.to_epsg() == 3413 and nc.transform == expected.odc.geobox.transform
        np.testing.assert_array_equal(nc.read(1), expected.dem.values)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "failed to open consolidated metadata"
        with xr.open_zarr(tmp_path / "tile.zarr") as zarr_tile:
            assert list(zarr_tile.data_vars) == ["dem"]
            np.testing.assert_array_equal(zarr_tile.dem.values, expected.dem.values)
    assert loaded["crs"] == "EPSG:3413"  # not its WKT

    tagged = as_json("cube", "tag", url, "first", "--catalog-dir", catalog)
    assert tagged == {"tag": "first", "snapshot": report["snapshot_id"]}
    more, _ = _bbox(sample_layout, slice(512, 1024), slice(0, 512))
    as_json("cube", "download", url, "--bbox", more, "--crs", "EPSG:3413", "--catalog-dir", catalog, "--quiet")
    assert len(as_json("cube", "state", url, "--catalog-dir", catalog)) == 8
    assert as_json("cube", "rollback", url, "first", "--catalog-dir", catalog) == {
        "rolled_back_to": report["snapshot_id"]}
    state = as_json("cube", "state", url, "--catalog-dir", catalog)
    assert len(state) == 4 and {row["snapshot"] for row in state} == {report["snapshot_id"]}


def test_catalog_sync_search_and_info(cli_cube):
    url, catalog = cli_cube
    synced = as_json("catalog", "sync", url, "--catalog-dir", catalog)
    assert synced["items_added"] == 16 and synced["items_held"] == 16
    assert as_json("catalog", "sync", url, "--catalog-dir", catalog)["items_added"] == 0  # nothing new
    info = as_json("catalog", "info", url, "--catalog-dir", catalog)
    assert info["items"] == 16 and info["collection"] == "sample-dem" and len(info["windows"]) == 1
    everything = as_json("catalog", "search", url, "--catalog-dir", catalog)
    assert everything["matched"] == 16
    one = everything["items"][0]
    west, south, east, north = one["bbox"]
    x, y = (west + east) / 2, (south + north) / 2
    inside = f"{x},{y},{x + 1e-4},{y + 1e-4}"
    found = as_json("catalog", "search", url, "--bbox", inside, "--catalog-dir", catalog)
    assert one["id"] in [item["id"] for item in found["items"]] and found["matched"] < 16
    cql = json.dumps({"op": "=", "args": [{"property": "id"}, one["id"]]})
    assert [i["id"] for i in as_json("catalog", "search", url, "--filter", cql, "--catalog-dir",
                                      catalog)["items"]] == [one["id"]]


def test_bad_input_prints_one_line_naming_the_value_and_leaves_the_cube_alone(cli_cube, sample_layout):
    url, catalog = cli_cube
    before = Cube.open(url, catalog_dir=catalog).repo.lookup_branch("main")
    code, out, err = run("cube", "download", url, "--bbox", "100,10,101,11", "--catalog-dir", catalog, ok=False)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ROIError: the ROI (bounds (100.0, 10.0, 101.0, 11.0)") and "Traceback" not in err
    code, _, err = run("--verbose", "cube", "download", url, "--bbox", "100,10,101,11", "--catalog-dir", catalog,
                       ok=False)
    assert code == 1 and "Traceback" in err and "ROIError" in err
    for args, named in [(["--bbox", "1,2,3"], "'1,2,3'"), (["--bbox", "3,2,1,4"], "'3,2,1,4'"),
                        (["--bbox", "1,2,3,4", "--crs", "EPSG:999999"], "'EPSG:999999'"),
                        (["--bbox", "1,2,3,4", "--time", "not-a-date"], "not-a-date")]:
        code, _, err = run("cube", "download", url, *args, "--catalog-dir", catalog, ok=False)
        assert code == 1 and named in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run("cube", "info", str(sample_layout) + "-nowhere", ok=False)
    assert code == 1 and "no cube at" in err
    code, _, err = run("cube", "load", url, "--bbox", _bbox(sample_layout, slice(0, 8), slice(0, 8))[0], "--crs",
                       "EPSG:3413", "--out", "tile.xyz", "--catalog-dir", catalog, ok=False)
    assert code == 1 and "unknown output format 'xyz'" in err  # refused before the load downloads anything
    code, _, err = run("cube", "state", url, "--png", "state.png", "--color-by", "colour", "--catalog-dir", catalog,
                       ok=False)
    assert code == 1 and "color_by must be 'snapshot' or 'time', got 'colour'" in err
    assert Cube.open(url, catalog_dir=catalog).repo.lookup_branch("main") == before


def test_the_installed_script_runs_and_fails_with_an_exit_code():
    script = [sys.executable, "-m", "stacube.cli"]
    done = subprocess.run([*script, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "catalog" in done.stdout and "parcels" in done.stdout
    failed = subprocess.run([*script, "cube", "info", "/nonexistent/cube"], capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 1 and failed.stderr.startswith("error: CubeNotFoundError: no cube at")


def shown(*args: str, columns: int) -> str:
    """What a person sees on a terminal ``columns`` wide."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, f"{result.stderr}{result.exception!r}"
    return result.stdout


def whole(word: str, text: str) -> bool:
    """``word`` appears in ``text`` as one unbroken word (nothing cut, folded or glued to it)."""
    return re.search(rf"(?<![^\s│┃]){re.escape(word)}(?![^\s│┃])", text) is not None


@pytest.mark.parametrize("columns", [60, 200])
def test_tables_show_every_id_whole_on_any_terminal(cli_cube, sample_layout, tmp_path, columns):
    url, catalog = cli_cube
    where = ["--crs", "EPSG:3413", "--catalog-dir", catalog]
    first = shown("cube", "download", url, "--bbox", _bbox(sample_layout, slice(0, 512), slice(0, 512))[0], *where,
                  "--quiet", columns=columns)
    assert re.search(r"MB written \(uncompressed\)[\s│]+\d+\.\d\b", first), first  # MB, named for what they count
    as_json("cube", "download", url, "--bbox", _bbox(sample_layout, slice(512, 1024), slice(0, 512))[0], *where,
            "--quiet")
    history = as_json("cube", "history", url, "--catalog-dir", catalog)
    state = as_json("cube", "state", url, "--catalog-dir", catalog)
    items = as_json("catalog", "search", url, "--catalog-dir", catalog)["items"]

    for text, ids in [(shown("cube", "history", url, "--catalog-dir", catalog, columns=columns),
                       [r["snapshot"] for r in history] + [r["run_id"] for r in history if r["run_id"]]),
                      (shown("cube", "state", url, "--catalog-dir", catalog, columns=columns),
                       [r["id"] for r in state] + [r["snapshot"] for r in state]),
                      (shown("catalog", "search", url, "--catalog-dir", catalog, columns=columns),
                       [i["id"] for i in items]),
                      (shown("cube", "tag", url, "v1", "--catalog-dir", catalog, columns=columns),
                       [history[0]["snapshot"]]),
                      (shown("cube", "rollback", url, "v1", "--catalog-dir", catalog, columns=columns),
                       [history[0]["snapshot"]])]:
        assert len(ids) >= 1 and all(whole(i, text) for i in ids), text
        assert max(len(line) for line in text.splitlines()) <= columns, text  # and all of it on the screen
        assert "…" not in text


def test_cube_state_png_is_zoomed_to_the_patches_and_names_the_files_it_wrote(cli_cube, sample_layout, tmp_path):
    url, catalog = cli_cube
    as_json("cube", "download", url, "--bbox", _bbox(sample_layout, slice(0, 256), slice(0, 512))[0], "--crs",
            "EPSG:3413", "--catalog-dir", catalog, "--quiet")
    png, html = tmp_path / "pictures" / "state.png", tmp_path / "pictures" / "state.html"
    text = shown("cube", "state", url, "--png", png, "--html", html, "--catalog-dir", catalog, columns=80)
    assert f"wrote {png}" in text and f"wrote {html}" in text and png.stat().st_size and html.stat().st_size
    state = as_json("cube", "state", url, "--catalog-dir", catalog)
    assert len(state) == 2 and all(whole(row["id"], text) for row in state)
    _, out, err = run("cube", "state", url, "--png", png, "--json", "--catalog-dir", catalog)
    assert json.loads(out) == state and f"wrote {png}" in err  # stdout stays JSON

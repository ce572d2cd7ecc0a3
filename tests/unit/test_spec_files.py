"""Specs in one line: CubeSpec.save/load, and `stacube spec <dataset>` writing what `cube create` reads."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from stacube import CubeSpec, SpecError
from stacube.cli import app
from stacube.datasets import alphaearth_spec, arcticdem_spec, sentinel2_l2a_spec, tctrend_spec


@pytest.mark.parametrize("spec", [
    arcticdem_spec(10),
    sentinel2_l2a_spec((11.0, 47.0, 11.2, 47.1), "2024-04-01", "2024-04-30", bands=("B04", "B08", "SCL")),
    alphaearth_spec((11.0, 47.0, 11.2, 47.1), years=range(2020, 2022)),
    tctrend_spec(),
], ids=["arcticdem", "sentinel2", "alphaearth", "tctrend"])
def test_a_saved_spec_loads_as_the_same_spec(spec, tmp_path):
    path = spec.save(tmp_path / "spec.json")
    assert json.loads(path.read_text()) == spec.to_json()  # plain JSON, readable by anything
    assert CubeSpec.load(path).to_json() == spec.to_json()


@pytest.mark.parametrize(("content", "named"), [
    (None, "no such file"), ("", "not JSON"), ("{", "not JSON"), (b"\xff\xfe\x00", "not JSON"),
    ("[1, 2]", "JSON object"), ('{"name": "x"}', "lacks"),
])
def test_a_bad_spec_file_is_a_spec_error_naming_the_file(tmp_path, content, named):
    path = tmp_path / "spec.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SpecError, match=named) as raised:
        CubeSpec.load(path)
    assert str(path) in str(raised.value)


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(("args", "expected"), [
    (["arcticdem", "--resolution", "10"], arcticdem_spec(10)),
    (["arcticdem", "--resolution", "2", "--chunks", "1024", "--api-url", "http://127.0.0.1:9/stac"],
     arcticdem_spec(2, chunks=(1024, 1024), api_url="http://127.0.0.1:9/stac")),
    (["sentinel2", "--bbox", "11.0,47.0,11.2,47.1", "--start", "2024-04-01", "--end", "2024-04-30",
      "--bands", "B04,B08,SCL", "--max-cloud-cover", "20"],
     sentinel2_l2a_spec((11.0, 47.0, 11.2, 47.1), "2024-04-01", "2024-04-30", bands=("B04", "B08", "SCL"),
                        max_cloud_cover=20)),
    (["alphaearth", "--bbox", "11.0,47.0,11.2,47.1", "--years", "2020,2022", "--chunks", "256"],
     alphaearth_spec((11.0, 47.0, 11.2, 47.1), years=range(2020, 2023), chunks=(256, 256))),
    (["tctrend"], tctrend_spec()),
])
def test_stacube_spec_prints_the_datasets_spec(args, expected):
    result = _cli("spec", *args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == expected.to_json()


def test_stacube_spec_writes_a_file_that_cube_create_reads_and_summarises(tmp_path):
    out = tmp_path / "dem.json"
    assert _cli("spec", "arcticdem", "--resolution", "32", "--out", str(out)).exit_code == 0
    result = _cli("cube", "create", str(tmp_path / "cube"), "--spec", str(out), "--catalog-dir", str(tmp_path / "c"))
    assert result.exit_code == 0, result.stderr
    assert "arcticdem-32m" in result.stdout and "EPSG:3413" in result.stdout
    assert "PROJCRS" not in result.stdout and "crs_wkt" not in result.stdout  # a summary, not the spec's WKT
    shown = _cli("cube", "info", str(tmp_path / "cube"), "--json", "--catalog-dir", str(tmp_path / "c"))
    assert json.loads(shown.stdout)["spec"] == CubeSpec.load(out).to_json()  # --json keeps the whole spec


@pytest.mark.parametrize(("args", "named"), [
    (["arcticdem", "--resolution", "7"], "7"),
    (["sentinel2", "--bbox", "1,2,3"], "'1,2,3'"),
    (["sentinel2", "--bbox", "11,47,11.2,47.1", "--bands", "B04,B99"], "B99"),
    (["sentinel2", "--bbox", "11,47,11.2,47.1", "--provider", "nasa"], "'nasa'"),
    (["alphaearth", "--bbox", "11,47,11.2,47.1", "--years", "2020"], "'2020'"),
])
def test_stacube_spec_refuses_bad_arguments_in_one_line_naming_them(args, named):
    result = _cli("spec", *args)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert named in result.stderr

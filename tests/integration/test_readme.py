"""Every code block of the README runs here, as printed, against loopback stand-ins for the real world.

A block that names a real service (Earth Search, a Prefect server) runs with that one value replaced
by a loopback one; each replacement must still match the README's text, so a README edit that
drifts from what is tested fails here. Names a block takes from its context (``cube``, ``roi``,
``s2_cube``) are given by the test, from the bundled samples.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

import stacube
from stacube import Cube
from stacube.testing.generate import SampleLayout

from .conftest import dem_spec

README = Path(__file__).resolve().parents[2] / "README.md"
S2_ROI = GeoBox.from_bbox((11.99, 46.995, 12.01, 47.005), "EPSG:4326", resolution=0.0001)  # the season's fields


def blocks(section: str, language: str = "python") -> list[str]:
    """The code blocks of one README section."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def run_block(section: str, index: int, namespace: dict, edits: tuple[tuple[str, str], ...] = ()) -> dict:
    code = blocks(section)[index]
    for old, new in edits:
        assert old in code, f"the README's {section!r} block {index} no longer says {old!r}"
        code = code.replace(old, new)
    env = {name: getattr(stacube, name) for name in stacube.__all__}
    env.update(namespace)
    exec(compile(code, f"README.md: {section} #{index}", "exec"), env)
    return env


def test_every_block_is_run_by_a_test():
    tested = {"Quickstart": 1, "The command line": 1, "Pictures of a cube": 1, "The API": 2,
              "Several zones (UTM) and growing time axes": 2, "Versions: history, tags, rollback, expiry": 1,
              "Earth Engine sources": 1, "Field pipelines: parcels, NDVI and NDMI per acquisition": 1,
              # the python block here; its deployment walk-through (bash) is what test_deployment.py does
              # step by step against a real `prefect server` (with `worker --run-once` for `worker start`)
              "Prefect: ad hoc runs, deployments, scale-out": 2}
    sections = re.findall(r"^## (.+)$", README.read_text(), flags=re.M)
    found = {s: len(blocks(s)) + len(blocks(s, "bash")) for s in sections}
    assert {s: n for s, n in found.items() if n} == tested  # the `make demo` / `make test` block on top: CI


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STACUBE_CATALOG_DIR", str(tmp_path / "catalogs"))
    return tmp_path


@pytest.fixture
def dem_cube(servers, sample_layout, in_tmp):
    """A sample DEM cube with one run in it, and that run's ROI."""
    cube = Cube.create(in_tmp / "dem.icechunk", dem_spec(servers[1].url, sample_layout))
    roi = sample_layout.extent_geobox()[0:512, 0:512]
    cube.load(roi)
    return cube, roi


def s2_spec(api_url: str, **kwargs):
    from stacube.datasets import sentinel2_l2a_spec

    return sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-06-30", api_url=api_url,
                              chunks=(256, 256), **kwargs)


def test_the_quickstart_runs_as_pasted_and_leaves_the_cube_it_describes(tmp_path):
    (block,) = blocks("Quickstart")
    assert "cube.load(roi, offline=True)" in block
    script = tmp_path / "quickstart.py"
    script.write_text(block)
    env = {"STACUBE_CATALOG_DIR": str(tmp_path / "catalogs"), "PATH": "", "HOME": str(tmp_path),
           "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cube = Cube.open(tmp_path / "cubes" / "dem.icechunk", catalog_dir=tmp_path / "catalogs")
    state = cube.state()
    assert re.search(r"missing_patches: +\[\]", done.stdout) and all(patch in done.stdout for patch in state.id)
    assert cube.spec.source.collection == "sample-dem" and cube.spec.name == "arcticdem-10m"
    roi = SampleLayout().extent_geobox()[200:1400, 300:1500]
    assert len(state) == len(cube.plan(roi).patches) == 6  # the global grid's 1024-px patches under the ROI
    assert len(cube.history()) == 3  # init, create, one run
    tile = cube.load(roi, offline=True)
    assert np.isfinite(tile.dem.values).all() and (tile.datamask.values > 0).all()  # every pixel held


def test_the_command_line_block(servers, sample_layout, season_api, in_tmp):
    import json

    from stacube.testing.season import season_parcels

    (block,) = blocks("The command line", "bash")
    (in_tmp / "dem-spec.json").write_text(json.dumps(dem_spec(servers[1].url, sample_layout).to_json()))
    Cube.create(in_tmp / "cubes" / "s2", s2_spec(season_api.url))
    season_parcels().to_file(in_tmp / "fields.gpkg")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", block], cwd=in_tmp, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (in_tmp / "dem_dem.tif").is_file() and (in_tmp / "dem.png").is_file()
    assert (in_tmp / "state.png").stat().st_size > 10_000 and "L.geoJson(" in (in_tmp / "state.html").read_text()


def test_the_pictures_block(season_api, in_tmp):
    cube = Cube.create(in_tmp / "s2", s2_spec(season_api.url))
    tile = cube.load(S2_ROI, "2024-06-06")
    run_block("Pictures of a cube", 0, {"cube": cube, "tile": tile})
    assert all((in_tmp / name).stat().st_size > 10_000 for name in ("state.png", "rgb.png", "state.html"))


def test_the_api_blocks(season_api, in_tmp):
    from stacube.datasets import arcticdem_spec

    spelled = run_block("The API", 0, {})["spec"]
    assert spelled.to_json() == arcticdem_spec(32).to_json()  # the ready-made spec is exactly this
    env = run_block("The API", 1, {"path_or_s3_url": str(in_tmp / "api.icechunk"), "spec": s2_spec(season_api.url),
                                   "roi": S2_ROI, "aoi": S2_ROI})
    assert env["tile"].sizes["time"] == 8 and env["report"].patches_already_filled > 0  # season: 8 acquisitions
    assert len(env["gdf"]) > 0 and len(env["df"]) == 3
    assert env["cube"].spec.time[-1] == np.datetime64("2025-12-31")
    assert env["lazy"].B04.dims == env["tile"].B04.dims and env["lazy"].B04.chunks is not None
    zones = env["ds"] if isinstance(env["ds"], dict) else {"only": env["ds"]}
    assert len(zones) == len(env["cube"].spec.zones) and all("filled" not in z.variables for z in zones.values())


def test_the_zones_blocks(season_api, in_tmp):
    env = run_block("Several zones (UTM) and growing time axes", 0, {},
                    edits=(('end="2024-06-30")', f'end="2024-06-30", api_url={season_api.url!r})'),))
    tile = env["tile"]
    assert tile.sizes["time"] == 4 and set(tile.data_vars) >= {"B04", "B08", "SCL"}  # four June acquisitions
    assert env["cube"].spec.time[-1] == np.datetime64("2024-07-31")
    env = run_block("Several zones (UTM) and growing time axes", 1, {})
    assert [g.crs.epsg for g in env["spec"].zones.values()] == [32632, 32633]


def test_the_versions_block(dem_cube):
    cube, roi = dem_cube
    run_block("Versions: history, tags, rollback, expiry", 0, {"cube": cube, "roi": roi})
    assert "before-reprocessing" in cube.repo.list_tags()


def test_the_earth_engine_block():
    env = run_block("Earth Engine sources", 0, {})
    assert len(env["source"].assets) == 64 and env["source"].project == "my-cloud-project"


def test_the_field_pipelines_block(season_api, in_tmp):
    from stacube.testing.season import season_parcels

    season_parcels().to_file(in_tmp / "parcels.gpkg")
    s2_cube = Cube.create(in_tmp / "s2", s2_spec(season_api.url))
    env = run_block("Field pipelines: parcels, NDVI and NDMI per acquisition", 0, {"s2_cube": s2_cube})
    observed = env["store"].observations(["P03"])
    env["store"].close()
    assert list(observed.date.dt.strftime("%m-%d")) == ["05-02", "05-07"]  # the week's two acquisitions


def test_the_prefect_block(dem_cube, sample_layout, prefect_api):
    cube, _ = dem_cube
    env = run_block("Prefect: ad hoc runs, deployments, scale-out", 0,
                    {"cube": cube, "aoi": sample_layout.extent_geobox()[512:1024, 0:512]})
    assert env["report"].runner == "prefect" and len(env["report"].patches_written) == 4

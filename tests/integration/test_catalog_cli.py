"""`stacube catalog search`: CQL2 text or JSON, --time only where the cube has time, and an empty
answer that says what was searched."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from stacube.cli import app

from .conftest import dem_spec


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_search_takes_cql2_text_or_json_and_says_what_an_empty_search_searched(servers, sample_layout, tmp_path):
    _, api = servers
    spec = tmp_path / "spec.json"
    dem_spec(api.url, sample_layout).save(spec)
    cube, catalog = tmp_path / "cube", tmp_path / "catalog"
    assert _run("cube", "create", cube, "--spec", spec, "--catalog-dir", catalog).exit_code == 0
    assert _run("catalog", "sync", cube, "--catalog-dir", catalog).exit_code == 0
    as_text = _run("catalog", "search", cube, "--filter", "\"proj:code\" = 'EPSG:3413'", "--json",
                   "--catalog-dir", catalog)
    as_json = _run("catalog", "search", cube, "--json", "--catalog-dir", catalog, "--filter",
                   json.dumps({"op": "=", "args": [{"property": "proj:code"}, "EPSG:3413"]}))
    assert as_text.exit_code == 0, as_text.stderr
    found = json.loads(as_text.stdout)
    assert found["matched"] == 16 and found == json.loads(as_json.stdout)
    none = _run("catalog", "search", cube, "--filter", "\"proj:code\" = 'EPSG:4326'", "--json",
                "--catalog-dir", catalog)
    assert none.exit_code == 0 and json.loads(none.stdout)["matched"] == 0
    assert "EPSG:4326" in none.stderr and "holds 16 Items" in none.stderr and "bbox" in none.stderr
    timeless = _run("catalog", "search", cube, "--time", "2020-07", "--catalog-dir", catalog)
    assert timeless.exit_code == 1 and "TOIError" in timeless.stderr and "drop --time" in timeless.stderr
    bad = _run("catalog", "search", cube, "--filter", "proj:code <<< 3", "--catalog-dir", catalog)
    assert bad.exit_code == 1 and "'proj:code <<< 3'" in bad.stderr and "CQL2" in bad.stderr


def test_other_tools_read_and_search_the_catalog_folder_offline(servers, sample_layout, tmp_path):
    """The catalog is a folder of stac-geoparquet parts: geopandas reads the folder, DuckDB globs it, and
    rustac searches it offline with the DuckDB client stacube ships (no extension download)."""
    import duckdb
    import geopandas
    import pystac

    from stacube import Cube
    from stacube.catalog import duckdb_client

    _, api = servers
    cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
    zone = sample_layout.extent_geobox()
    cube.download(zone[0:300, 0:300])  # a first part
    cube.download(zone)  # a second part: the rest of the Items
    items = cube.catalog.folder / "items"
    assert len(list(items.glob("part-*.parquet"))) == 2
    frame = geopandas.read_parquet(items)
    assert len(frame) == 16 and frame.crs.to_string() == "OGC:CRS84"  # GeoParquet's default: lon/lat
    assert set(frame["id"]) == {i.id for i in cube.catalog.search()}
    rows = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{items}/part-*.parquet')").fetchall()[0]
    assert rows == (16, 16)
    corner = tuple(zone[0:10, 0:10].to_crs("EPSG:4326").extent.boundingbox)
    found = duckdb_client().search(str(items / "part-*.parquet"), bbox=list(corner))
    expected = {i.id for i in cube.catalog.search(bbox=corner)}
    assert {d["id"] for d in found} == expected and expected  # the same answer as stacube's own search
    assert pystac.Item.from_dict(found[0]).assets["dem"].href.startswith(servers[0].url)

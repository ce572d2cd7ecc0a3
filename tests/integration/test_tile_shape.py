"""A Tile is shaped as odc-stac shapes a load on the same GeoBox: dims, coordinates and CRS, not only values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import odc.stac
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox

from stacube import Cube, CubeSpec, StacSource, Variable

from .test_load import items_of


def _series_cube(api_url: str, tmp_path: Path, names: list[str]) -> Cube:
    """A daily cube over the served sample series (06-01 to 06-07) holding ``names`` of dem and datamask."""
    from ..conftest import TIME_LAYOUT

    variables = {"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)}
    spec = CubeSpec(name="series", zones=[TIME_LAYOUT.extent_geobox()], chunks=(256, 256),
                    variables={n: variables[n] for n in names}, time=pd.date_range("2021-06-01", periods=7, freq="D"),
                    source=StacSource(api_url=api_url, collection="sample-series", assets={n: n for n in names}))
    return Cube.create(tmp_path / "series", spec, catalog_dir=tmp_path / "cat")


def _same_shape(tile: xr.Dataset, ref: xr.Dataset) -> None:
    """Dims in order, every coordinate's values, and the CRS odc-geo reads, as odc-stac has them."""
    assert tile.dem.dims == ref.dem.dims
    assert set(tile.coords) == set(ref.coords)
    for name in ref.coords:
        if name == "time":  # the cube's steps are its axis labels; odc-stac's, the Items' own times
            assert (tile.time.dt.floor("D").values == ref.time.dt.floor("D").values).all()
        elif name == "spatial_ref":
            assert tile.odc.crs == ref.odc.crs and int(tile.spatial_ref) == int(ref.spatial_ref)
        else:
            np.testing.assert_array_equal(tile[name].values, ref[name].values, err_msg=name)
    assert tile.odc.geobox == ref.odc.geobox


@pytest.mark.parametrize("crs, resolution", [("EPSG:3413", 20.0), ("EPSG:4326", 0.0002)])
def test_a_spatial_tile_has_odc_geos_dims_and_coordinates(servers, make_cube, sample_layout, crs, resolution):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    roi = GeoBox.from_bbox(zone[300:700, 300:800].extent.to_crs(crs).boundingbox, crs, resolution=resolution)
    tile = cube.load(roi)
    ref = odc.stac.load(items_of(api.url), bands=["dem"], geobox=roi, groupby=lambda *_: 0).isel(time=0, drop=True)
    _same_shape(tile, ref)
    spatial = ("latitude", "longitude") if crs == "EPSG:4326" else ("y", "x")
    assert tile.dem.dims == spatial and set(tile.sizes) == set(spatial)  # two dimensions, not four
    y, x = (float(tile[d][len(tile[d]) // 2]) for d in spatial)
    point = tile.sel({spatial[0]: y, spatial[1]: x})  # .sel by the coordinates odc-geo names
    assert point.dem.shape == ()
    assert np.isfinite(tile.dem.values).mean() > 0.5


def test_a_tile_with_time_on_a_geographic_grid_has_odc_stacs_dims(time_servers, tmp_path):
    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    cube = _series_cube(api.url, tmp_path, ["dem"])
    extent = TIME_LAYOUT.extent_geobox()[100:600, 100:600].extent.to_crs("EPSG:4326").boundingbox
    roi = GeoBox.from_bbox(extent, "EPSG:4326", resolution=0.0003)
    tile = cube.load(roi, toi=["2021-06-03", "2021-06-05"])
    ref = odc.stac.load(items_of(api.url, "sample-series"), bands=["dem"], geobox=roi, groupby="time")
    ref = ref.sel(time=ref.time.dt.strftime("%m-%d").isin(["06-03", "06-05"]))
    assert tile.dem.dims == ("time", "latitude", "longitude")
    _same_shape(tile, ref)
    cold = tile.dem.values
    again = cube.load(roi, toi=["2021-06-03", "2021-06-05"], offline=True)
    xr.testing.assert_identical(again.drop_attrs(), tile.drop_attrs())
    assert np.isfinite(cold).mean() > 0.5


def test_the_cube_as_a_lazy_dataset_per_zone(servers, make_cube, sample_layout):
    """``to_xarray``: the zone's grid, odc-geo's accessor, CF attributes, Dask arrays, no filled record."""
    from stacube import ROIError

    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    first = cube.load(zone[0:512, 0:512])
    old = cube.history().snapshot.iloc[0]
    cube.load(zone[512:1024, 0:512])
    ds = cube.to_xarray()
    assert ds.odc.geobox == zone and ds.odc.crs.epsg == 3413
    assert set(ds.data_vars) == {"dem", "datamask"} and "filled" not in ds.variables
    assert ds.dem.dims == ("y", "x") and ds.dem.chunks == ((256,) * 7 + (zone.shape.y - 7 * 256,),
                                                           (256,) * 7 + (zone.shape.x - 7 * 256,))
    assert ds.dem.attrs["units"] == "m" and np.isnan(ds.dem.attrs["_FillValue"])
    assert ds.datamask.attrs["_FillValue"] == 0 and ds.datamask.dtype == np.uint8
    np.testing.assert_array_equal(ds.dem[0:512, 0:512].values, first.dem.values)
    assert np.isnan(ds.dem[:, 1024:].values).all()  # never filled: nodata
    decoded = xr.decode_cf(ds)
    assert np.isnan(decoded.datamask[:, 1024:].values).all()  # CF masking works on it
    before = cube.to_xarray(at=old)
    assert np.isnan(before.dem[600:700, 0:100].values).all() and not np.isnan(ds.dem[600:700, 0:100].values).all()
    assert before.attrs["stacube_snapshot"] == old
    with pytest.raises(ROIError, match="has no zone 'nowhere'"):
        cube.to_xarray("nowhere")


def test_a_time_series_cube_as_a_dataset_has_its_time_axis(time_servers, tmp_path):
    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    cube = _series_cube(api.url, tmp_path, ["dem"])
    spec = cube.spec
    roi = TIME_LAYOUT.extent_geobox()[0:256, 0:256]
    tile = cube.load(roi, toi="2021-06-03")
    ds = cube.to_xarray()
    assert ds.dem.dims == ("time", "y", "x") and ds.dem.chunks[0] == (1,) * 7
    assert (ds.time.values == spec.time.values).all()
    np.testing.assert_array_equal(ds.dem.sel(time="2021-06-03")[0:256, 0:256].values, tile.dem.values[0])


@pytest.mark.parametrize("crs, resolution", [(None, None), ("EPSG:3413", 25.0), ("EPSG:4326", 0.0002)])
def test_a_lazy_tile_equals_the_eager_one(servers, make_cube, sample_layout, crs, resolution):
    """``chunks=``: Dask arrays with the eager Tile's dims, coordinates, attributes and values."""
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    window = zone[100:900, 200:1000]
    roi = window if crs is None else GeoBox.from_bbox(window.extent.to_crs(crs).boundingbox, crs,
                                                      resolution=resolution)
    y, x = roi.dimensions
    lazy = cube.load(roi, chunks={x: 256, y: 300})
    assert lazy.dem.chunks is not None and lazy.dem.chunks[0][0] == 300 and lazy.dem.chunks[1][0] == 256
    eager = cube.load(roi, offline=True)
    computed = lazy.compute()
    if crs == "EPSG:4326":  # warped block by block: GDAL's approximate transformer (within 1/8 px, fitted
        # per warp) picks the neighbouring source pixel where a pixel centre falls that close to an edge
        from pyproj import Transformer

        stored = cube.to_xarray()
        to_zone = Transformer.from_crs(roi.crs.proj, zone.crs.proj, always_xy=True)
        for name in ("dem", "datamask"):
            got, want = computed[name].values, eager[name].values
            differ = (got != want) & ~(np.isnan(got) & np.isnan(want))
            assert differ.mean() < 0.005, (name, differ.mean())
            source = np.pad(stored[name].values, 1, mode="edge")
            for i, j in np.argwhere(differ):  # each one is a source pixel next to the exact position
                col, row = ~zone.transform * to_zone.transform(*(roi.transform * (j + 0.5, i + 0.5)))
                r, c = int(row), int(col)
                assert got[i, j] in source[r : r + 3, c : c + 3], (name, i, j)
        xr.testing.assert_identical(computed.drop_vars(list(computed.data_vars)).drop_attrs(),
                                    eager.drop_vars(list(eager.data_vars)).drop_attrs())
        return
    xr.testing.assert_identical(computed.drop_attrs(), eager.drop_attrs())
    assert lazy.attrs["missing_patches"] == [] and np.isfinite(eager.dem.values).mean() > 0.5


def test_a_lazy_tile_with_time_equals_the_eager_one(time_servers, tmp_path):
    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    cube = _series_cube(api.url, tmp_path, ["dem", "datamask"])
    roi = TIME_LAYOUT.extent_geobox()[50:600, 80:500]
    lazy = cube.load(roi, toi=slice("2021-06-02", "2021-06-05"), chunks={"time": 1, "x": 200, "y": 200})
    eager = cube.load(roi, toi=slice("2021-06-02", "2021-06-05"), offline=True)
    assert lazy.dem.dims == ("time", "y", "x") and lazy.sizes["time"] == 2
    xr.testing.assert_identical(lazy.compute().drop_attrs(), eager.drop_attrs())


def test_an_eager_tile_larger_than_free_memory_is_refused_before_any_download(servers, make_cube, sample_layout,
                                                                              monkeypatch):
    import stacube.lazy
    from stacube import ROIError

    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[0:1000, 0:1000]
    monkeypatch.setattr(stacube.lazy, "available_memory", lambda: 4_000_000)  # 4 MB free; the Tile needs 5 MB
    before = cube.history()
    with pytest.raises(ROIError, match=r"1000 x 1000 px.*would take 0\.00 GiB.*chunks=\{'x': 2048, 'y': 2048\}"):
        cube.load(roi)
    assert cube.history().equals(before)  # nothing downloaded
    assert cube.load(roi, chunks={"x": 500, "y": 500}).dem.shape == (1000, 1000)  # lazily it is fine


def test_a_lazy_roi_bigger_than_its_chunks_is_written_to_a_cog_with_memory_flat_in_its_size(servers, tmp_path,
                                                                                            sample_layout):
    """A 12,000 x 12,000 px ROI (576 MB of float32 as an eager Tile) over a cube holding a corner of it:
    written lazily its peak memory stays well under the Tile's size (measured: the child's import
    baseline 221 MB, the lazy write 441 MB; an eager load and write of the same ROI peaked at 2,950 MB).
    Peaks are VmHWM, which starts afresh at exec (ru_maxrss carries the forking pytest process's)."""
    import json
    import os
    import subprocess
    import sys

    import rasterio
    from affine import Affine

    from .conftest import dem_spec

    _, api = servers
    zone = sample_layout.extent_geobox()
    big = GeoBox((12_000, 12_000), zone.transform * Affine.translation(-5_000, -5_000), zone.crs)
    cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout, zones=[big], chunks=(1024, 1024)),
                       catalog_dir=tmp_path / "catalog")
    corner = big[5_000:5_000 + zone.shape.y, 5_000:5_000 + zone.shape.x]
    cube.load(corner)
    box = {"bbox": list(big.extent.boundingbox), "crs": "EPSG:3413", "resolution": 10.0}
    assert GeoBox.from_bbox(box["bbox"], "EPSG:3413", resolution=10.0) == big

    def child(mode: str) -> float:
        done = subprocess.run([sys.executable, "-m", "tests.integration.lazy_child", str(tmp_path / "cube"),
                               str(tmp_path / "catalog"), str(tmp_path / f"{mode}.tif"), mode, json.dumps(box)],
                              capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
        return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]

    baseline, lazy = child("baseline"), child("lazy")
    if os.environ.get("STACUBE_SHOW_PEAKS"):
        print(f"peak RSS: baseline {baseline:.0f} MB, lazy {lazy:.0f} MB, eager {child('eager'):.0f} MB")
    assert lazy - baseline < 350, (baseline, lazy)  # the Tile alone is 576 MB
    with rasterio.open(tmp_path / "lazy.tif") as cog:
        assert cog.shape == (12_000, 12_000) and cog.transform == big.transform and cog.crs.to_epsg() == 3413
        assert cog.overviews(1)  # a real COG
        inside = cog.read(1, window=((5_100, 5_300), (5_100, 5_300)))
    np.testing.assert_array_equal(inside, cube.load(big[5_100:5_300, 5_100:5_300], offline=True).dem.values)

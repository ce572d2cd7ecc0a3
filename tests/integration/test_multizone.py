"""Cubes over several UTM zones: each zone on its native grid, one Tile back, checked against odc-stac."""

from __future__ import annotations

import json

import numpy as np
import odc.stac
import pytest
import zarr
from odc.geo.geobox import GeoBox

from stacube import Cube, CubeSpec, StacSource, Variable
from stacube.sample.generate import DEM_NODATA, SampleLayout, generate_sample
from stacube.sample.servers import serve_sample

# Tiles of a DEM distributed per UTM zone, on both sides of 12 E near 47 N (zones 32N and 33N).
DEM_LAYOUTS = {"z32": SampleLayout(crs="EPSG:32632", origin=(724_000.0, 5_212_000.0), tile_size=256, overlap=32,
                                   rows=2, cols=2),
               "z33": SampleLayout(crs="EPSG:32633", origin=(269_000.0, 5_212_000.0), tile_size=256, overlap=32,
                                   rows=2, cols=2)}


def _one_folder(root):
    """Both zones' tiles in one served folder (names prefixed by zone) and one items.json."""
    features = []
    for prefix, layout in DEM_LAYOUTS.items():
        part = generate_sample(root / prefix, layout, collection="utm-dem")
        for feature in json.loads((part / "items.json").read_text())["features"]:
            feature["id"] = f"{prefix}_{feature['id']}"
            for asset in feature["assets"].values():
                (part / asset["href"]).rename(root / f"{prefix}_{asset['href']}")
                asset["href"] = f"{prefix}_{asset['href']}"
            features.append(feature)
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


@pytest.fixture(scope="module")
def dem_servers(tmp_path_factory):
    with serve_sample(_one_folder(tmp_path_factory.mktemp("utm-dem"))) as (_files, api):
        yield api


def _dem_spec(api_url: str) -> CubeSpec:
    zones = [layout.extent_geobox() for layout in DEM_LAYOUTS.values()]
    return CubeSpec(name="utm-dem", zones=zones, chunks=(128, 128),
                    variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
                    source=StacSource(api_url=api_url, collection="utm-dem",
                                      assets={"dem": "dem", "datamask": "datamask"}))


def _odc(items, geobox: GeoBox, band: str, dtype: str) -> np.ndarray:
    loaded = odc.stac.load(items, bands=[band], geobox=geobox, groupby=lambda item, parsed, index: 0,
                           dtype=dtype, resampling="nearest")[band].values[0]
    return np.where(loaded == DEM_NODATA, np.nan, loaded).astype(dtype) if band == "dem" else loaded


def _items(api_url: str):
    import pystac_client

    return sorted(pystac_client.Client.open(api_url).search(collections=["utm-dem"]).items(),
                  key=lambda item: (item.datetime, item.id))


def test_a_dem_per_utm_zone_keeps_each_zone_native_and_reads_back_one_tile(dem_servers, tmp_path):
    cube = Cube.create(tmp_path / "dem", _dem_spec(dem_servers.url), catalog_dir=tmp_path / "catalog")
    z32, z33 = cube.spec.zones.values()
    roi = GeoBox.from_bbox((11.985, 46.995, 12.012, 47.005), "EPSG:4326", resolution=0.0001)  # across 12 E
    tile = cube.load(roi)
    state = cube.state()
    assert set(state.zone) == {"epsg32632", "epsg32633"} and state.has_data.all()  # patches in both zones
    items = _items(dem_servers.url)
    by_zone = {crs: [i for i in items if i.properties["proj:code"] == crs] for crs in ("EPSG:32632", "EPSG:32633")}
    # Each zone on its own grid holds exactly what odc-stac reads from that zone's Items (no resampling).
    for zone in (z32, z33):
        cube.download(zone)  # the rest of both zones
    stored = zarr.open_group(cube.repo.readonly_session(branch="main").store, mode="r")
    for zone, name, crs in ((z32, "epsg32632", "EPSG:32632"), (z33, "epsg32633", "EPSG:32633")):
        window = (slice(40, 200), slice(60, 300))
        np.testing.assert_array_equal(stored[name]["dem"][window], _odc(by_zone[crs], zone[window], "dem", "float32"))
    # The Tile: each zone reprojected onto the ROI, the first zone winning where both hold data.
    expected = _odc(by_zone["EPSG:32632"], roi, "dem", "float32")
    east = _odc(by_zone["EPSG:32633"], roi, "dem", "float32")
    np.copyto(expected, east, where=np.isnan(expected))
    got = tile.dem.values
    assert not np.isnan(got).all() and (np.isnan(got) == np.isnan(expected)).mean() > 0.995
    both = ~np.isnan(got) & ~np.isnan(expected)
    assert (got[both] == expected[both]).mean() > 0.995  # nearest neighbour, up to GDAL's approximate warp
    west_half, east_half = got[:, : roi.shape.x // 3], got[:, -roi.shape.x // 3 :]
    assert (~np.isnan(west_half)).mean() > 0.5 and (~np.isnan(east_half)).mean() > 0.5

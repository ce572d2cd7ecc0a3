"""Cubes over several UTM zones: each zone on its native grid, one Tile back, checked against odc-stac."""

from __future__ import annotations

import json

import numpy as np
import odc.stac
import pandas as pd
import pytest
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.xr import rasterize

from stacube import Cube, CubeSpec, StacSource, Variable
from stacube.testing.generate import DEM_NODATA, SampleLayout, generate_sample
from stacube.testing.servers import serve_sample

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


# --- Sentinel-2 L2A-like granules in UTM 32N/33N/34N and across the antimeridian (60N/1N) -------------

S2_BANDS = ("B04", "B11", "SCL")  # a 10 m band (nearest), a 20 m band (bilinear), the classes (nearest)


@pytest.fixture(scope="module")
def s2_api(tmp_path_factory):
    from stacube.testing.granules import antimeridian_granules, border_granules, generate_sentinel2

    folder = generate_sentinel2(tmp_path_factory.mktemp("s2"), border_granules() + antimeridian_granules())
    with serve_sample(folder) as (_files, api):
        yield api


def _s2_cube(tmp_path, api_url: str, bbox, max_cloud_cover=60.0) -> Cube:
    from stacube.datasets import sentinel2_l2a_spec

    spec = sentinel2_l2a_spec(bbox, "2024-06-01", "2024-06-30", api_url=api_url, chunks=(64, 64),
                              max_cloud_cover=max_cloud_cover, bands=S2_BANDS)
    return Cube.create(tmp_path / "s2", spec, catalog_dir=tmp_path / "catalog")


def _s2_items(api_url: str, max_cloud_cover: float = 60.0):
    import pystac_client

    items = pystac_client.Client.open(api_url).search(collections=["sentinel-2-l2a"]).items()
    return sorted((i for i in items if i.properties["eo:cloud_cover"] < max_cloud_cover),
                  key=lambda item: (item.datetime, item.id))


def _solar_date(item, parsed, index):
    """The documented rule, restated: UTC time + the Item's centroid longitude / 15 h, truncated to whole hours."""
    import shapely

    hours = int(shapely.geometry.shape(item.geometry).centroid.x / 15)
    return (item.datetime + pd.Timedelta(hours=hours)).date()


def _s2_expected(cube: Cube, items, roi: GeoBox) -> dict[str, dict[str, np.ndarray]]:
    """odc-stac's load of each zone's Items onto the ROI (solar days), the zones mosaicked in spec order:
    day -> variable -> pixels."""
    import shapely

    from stacube.datasets.sentinel2 import BANDS

    area = roi.extent.to_crs("EPSG:4326", wrapdateline=True).geom
    out: dict[str, dict[str, np.ndarray]] = {}
    for zone in cube.spec.zones.values():  # the Items of each zone under the ROI (odc-stac adds a step per day given)
        mine = [i for i in items if i.properties["proj:code"] == str(zone.crs)
                and shapely.geometry.shape(i.geometry).intersects(area)]
        if not mine:
            continue
        assets = {BANDS[name][0]: name for name in S2_BANDS}
        loaded = odc.stac.load(mine, bands=list(assets), geobox=roi, groupby=_solar_date, fail_on_error=True,
                               resampling={a: cube.spec.variables[n].resampling for a, n in assets.items()},
                               dtype={a: cube.spec.variables[n].dtype for a, n in assets.items()})
        # A zone's grid ends at its UTM zone's edge: granule pixels beyond it belong to the next zone.
        inside = rasterize(zone.extent.to_crs(roi.crs), roi).values
        # odc-stac labels a group with its first Item's time: name the day by the Item's solar date instead
        solar = {np.datetime64(i.datetime.replace(tzinfo=None), "ns"): str(_solar_date(i, None, 0)) for i in mine}
        for index, when in enumerate(loaded.time.values):
            day = solar[np.datetime64(when, "ns")]
            for asset, name in assets.items():
                values = np.where(inside, loaded[asset].values[index], 0)
                if name != "SCL":  # flagged granules hold DN - 1000; the cube stores ESA's DN (offset -0.1)
                    values = np.where(values != 0, values.astype("int32") + 1000, 0).astype(values.dtype)
                if name not in out.setdefault(day, {}):
                    out[day][name] = values.copy()
                else:  # a later zone fills only what earlier zones left empty
                    np.copyto(out[day][name], values, where=out[day][name] == 0)
    return out


def _compare(tile, expected, exact: bool) -> dict[str, float]:
    """Check a Tile against the reference day by day; returns the worst share of differing pixels per variable."""
    assert [str(np.datetime64(t, "D")) for t in tile.time.values] == sorted(expected)
    worst: dict[str, float] = {}
    for index, day in enumerate(sorted(expected)):
        for name in S2_BANDS:
            got, want = tile[name].values[index], expected[day][name]
            assert (got != 0).any(), f"{name} on {day} holds no data"
            if exact:
                np.testing.assert_array_equal(got, want, err_msg=f"{name} on {day}")
                continue
            assert ((got == 0) != (want == 0)).mean() < 0.01, f"{name} on {day}: nodata differs"
            both = (got != 0) & (want != 0)
            if cube_resampling(name) == "nearest":
                worst[name] = max(worst.get(name, 0.0), float((got[both] != want[both]).mean()))
            else:
                gap = np.abs(got[both].astype("int32") - want[both].astype("int32"))
                worst[name] = max(worst.get(name, 0.0), float((gap > 8).mean()))
    return worst


def cube_resampling(name: str) -> str:
    return "bilinear" if name in ("B11", "B12") else "nearest"


def test_sentinel2_across_a_utm_border_in_a_geographic_roi_matches_odc_stac(s2_api, tmp_path):
    cube = _s2_cube(tmp_path, s2_api.url, (11.98, 46.98, 12.02, 47.01))
    assert list(cube.spec.zones) == ["epsg32632", "epsg32633"]
    roi = GeoBox.from_bbox((11.988, 46.989, 12.012, 47.0), "EPSG:4326", resolution=0.0001)  # across 12 E
    tile = cube.load(roi, toi="2024-06")
    assert set(cube.state().zone) == {"epsg32632", "epsg32633"}
    # the whole object, as odc-stac shapes a load on this GeoBox: dims, coordinates, CRS
    ref = odc.stac.load(_s2_items(s2_api.url)[:1], bands=["red"], geobox=roi)
    assert tile.B04.dims == ("time", "latitude", "longitude") == ref.red.dims
    for name in ("latitude", "longitude"):
        np.testing.assert_array_equal(tile[name].values, ref[name].values)
    assert tile.odc.geobox == ref.odc.geobox == roi and int(tile.spatial_ref) == int(ref.spatial_ref) == 4326
    lazy = cube.load(roi, toi="2024-06", chunks={"latitude": 100, "longitude": 100})
    assert lazy.B04.dims == tile.B04.dims and lazy.B04.chunks is not None
    xr.testing.assert_identical(lazy.drop_vars(list(lazy.data_vars)).drop_attrs(),
                                tile.drop_vars(list(tile.data_vars)).drop_attrs())
    worst = _compare(tile, _s2_expected(cube, _s2_items(s2_api.url), roi), exact=False)
    assert _compare(lazy.compute(), _s2_expected(cube, _s2_items(s2_api.url), roi), exact=False)["B04"] < 0.02
    # Nearest neighbour through each zone's grid vs. straight from the granule: GDAL's approximate warp
    # (1/8 px) picks the neighbouring pixel at a few places; bilinear bands within 8 DN almost everywhere.
    assert worst["B04"] < 0.01 and worst["SCL"] < 0.01 and worst["B11"] < 0.02, worst
    assert tile.B04.values[0, :, : roi.shape.x // 3].any() and tile.B04.values[0, :, -roi.shape.x // 3 :].any()


def test_sentinel2_on_a_zone_grid_equals_odc_stac_with_cloudy_granules_left_out(s2_api, tmp_path):
    cube = _s2_cube(tmp_path, s2_api.url, (17.98, 46.98, 18.02, 47.01))
    zone33 = cube.spec.zones["epsg32633"]
    across = GeoBox.from_bbox((17.99, 46.989, 18.01, 46.999), "EPSG:4326", resolution=0.0001).extent
    roi = GeoBox.from_bbox(across.to_crs(zone33.crs).boundingbox, zone33.crs, resolution=10.0)  # 33N's grid
    tile = cube.load(roi, toi=slice("2024-06-01", "2024-06-20"))
    expected = _s2_expected(cube, _s2_items(s2_api.url), roi)
    assert sorted(expected) == ["2024-06-05", "2024-06-15"]  # 06-15: only 34N's granule is under 60 % cloud
    worst = _compare(tile, expected, exact=False)
    assert worst["B04"] < 0.01 and worst["SCL"] < 0.01 and worst["B11"] < 0.02, worst
    cloudy = _s2_cube(tmp_path / "all", s2_api.url, (17.98, 46.98, 18.02, 47.01), max_cloud_cover=None)
    assert cloudy.load(roi, toi="2024-06-15").B04.values.astype(bool).sum() > tile.B04.values[1].astype(bool).sum()


def test_two_granules_of_one_pass_mosaic_like_odc_stac_and_days_without_data_are_left_out(s2_api, tmp_path):
    cube = _s2_cube(tmp_path, s2_api.url, (14.98, 46.98, 15.02, 47.01))
    zone = cube.spec.zones["epsg32633"]
    items = [i for i in _s2_items(s2_api.url) if i.id.startswith(("S2B_33TVN", "S2B_33TWN"))]
    footprint = GeoBox.from_bbox((14.99, 46.989, 15.01, 46.999), "EPSG:4326", resolution=0.0001).extent
    roi = GeoBox.from_bbox(footprint.to_crs(zone.crs).boundingbox, zone.crs, resolution=10.0)  # the zone's grid
    tile = cube.load(roi, toi="2024-06")
    expected = _s2_expected(cube, items, roi)
    assert sorted(expected) == ["2024-06-10", "2024-06-15"]
    _compare(tile, expected, exact=True)  # on the zone's own grid: pasted, pixel for pixel odc-stac's mosaic
    assert cube.load(roi, toi=["2024-06-07", "2024-06-08"]).sizes["time"] == 0  # no acquisition: empty axis


def test_sentinel2_across_the_antimeridian_matches_odc_stac(s2_api, tmp_path):
    cube = _s2_cube(tmp_path, s2_api.url, (179.97, 51.98, -179.97, 52.01))
    assert sorted(cube.spec.zones) == ["epsg32601", "epsg32660"]
    from odc.geo.geom import unary_union

    from stacube.testing.granules import antimeridian_granules

    both = unary_union([g.geobox().extent.to_crs("EPSG:3832") for g in antimeridian_granules()[:2]])
    roi = GeoBox.from_bbox(both.boundingbox, "EPSG:3832", resolution=10.0)  # Pacific-centred, across 180
    assert roi.extent.to_crs("EPSG:4326", wrapdateline=True).geom.geom_type == "MultiPolygon"
    tile = cube.load(roi, toi="2024-06")
    worst = _compare(tile, _s2_expected(cube, _s2_items(s2_api.url), roi), exact=False)
    assert worst["B04"] < 0.01 and worst["SCL"] < 0.01 and worst["B11"] < 0.02, worst
    west, east = tile.B04.values[0, :, : roi.shape.x // 3], tile.B04.values[0, :, -roi.shape.x // 3 :]
    assert west.any() and east.any()  # both sides of 180 degrees
    # The pass at 23:00 UTC on 06-20 is 10:00 on 06-21 at 180 degrees: its solar day, not its UTC day.
    assert [str(np.datetime64(t, "D")) for t in tile.time.values] == ["2024-06-05", "2024-06-12", "2024-06-21"]


def test_a_zone_keeps_what_its_granules_hold_past_its_meridian_where_the_neighbours_granule_is_filtered_out(
        s2_api, tmp_path):
    """At 18 E on 2024-06-05 34N's granule (55 % cloud) is filtered out by max_cloud_cover=40, while 33N's
    granule reaches 380 m past the meridian. A Tile there on 34N's own grid takes 33N's pixels (as
    odc-stac reads that granule); with zones stopped at their meridians it came back empty."""
    from stacube.datasets import sentinel2_l2a_spec

    bbox = (17.98, 46.98, 18.02, 47.01)
    zone34 = sentinel2_l2a_spec(bbox, "2024-06-01", "2024-06-30", bands=S2_BANDS).zones["epsg32634"]
    east = GeoBox.from_bbox((18.0005, 46.989, 18.0035, 46.999), "EPSG:4326", resolution=0.0001).extent
    roi = GeoBox.from_bbox(east.to_crs(zone34.crs).boundingbox, zone34.crs, resolution=10.0)  # just east of 18 E
    items = [i for i in _s2_items(s2_api.url, 40.0) if i.id == "S2A_33TYN_20240605_0_L2A"]
    assert len(items) == 1 and not [i for i in _s2_items(s2_api.url, 40.0) if i.id.startswith("S2A_34TCT_20240605")]
    want = odc.stac.load(items, bands=["red"], geobox=roi, resampling="nearest", dtype="uint16")["red"].values[0]
    want = np.where(want != 0, want.astype("int32") + 1000, 0)  # published shifted; the cube holds ESA's DN
    assert (want != 0).mean() > 0.5  # the granule covers most of the ROI
    for reach, filled in ((None, True), (0.0, False)):
        spec = sentinel2_l2a_spec(bbox, "2024-06-01", "2024-06-30", api_url=s2_api.url, chunks=(64, 64),
                                  max_cloud_cover=40.0, bands=S2_BANDS, **({} if reach is None else {"reach": reach}))
        cube = Cube.create(tmp_path / f"reach-{reach}", spec, catalog_dir=tmp_path / f"catalog-{reach}")
        tile = cube.load(roi, toi="2024-06-05", empty_steps=True)
        got = tile.B04.values[0]
        if not filled:  # the old zones: most of what lies past the meridian was nobody's
            assert ((want != 0) & (got == 0)).mean() > 0.3, ((want != 0) & (got == 0)).mean()
            continue
        both = (got != 0) & (want != 0)
        assert ((got != 0) != (want != 0)).mean() < 0.02 and both.mean() > 0.5
        assert (got[both] == want[both]).mean() > 0.97  # 33N's own pixels, warped once onto 34N's grid

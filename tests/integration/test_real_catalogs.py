"""Values from Items recorded from the real services (tests/data, sources in tests/data/SOURCES.md), with
COGs written on each asset's real grid and served on loopback: one convention per cube, reprocessed
copies left out, grids as the source has them, ArcticDEM at the edge of its published tiles."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging

import numpy as np
import odc.stac
import pandas as pd
import pystac
import pytest
import shapely.geometry
import xarray as xr
from odc.geo import xy_
from odc.geo.geobox import GeoBox
from odc.geo.geom import point

from stacube import Cube, CubeSpec, StacSource, Variable
from stacube.alignment import anchor_of
from stacube.datasets import arcticdem_spec, sentinel2_l2a_spec
from stacube.testing.servers import serve_sample

from .real_items import Window, asset_grid, localize, recorded, reflectance_field, window_geobox, write_collection

ES_KEYS = {"B04": "red", "B08": "nir", "B11": "swir16", "SCL": "scl"}
PC_KEYS = {"B04": "B04", "B08": "B08", "B11": "B11", "SCL": "SCL"}
SEEDS = {"B04": 0.0, "B08": 1.3, "B11": 2.1}


def truth(box: GeoBox, band: str) -> np.ndarray:
    """ESA's reflectance in hundredths of a percent (what DN * 0.0001 means), the same in every Item."""
    return np.round(reflectance_field(box, SEEDS[band]) * 10000)


def pixels_as(published: str, keys: dict[str, str]):
    """Pixels as a provider publishes them: "esa" (baseline 04.00 on: DN = 10000 * reflectance + 1000),
    "old" (before 04.00: no offset) or "shifted" (Element 84: the offset subtracted, clamped at 1)."""
    bands = {key: band for band, key in keys.items()}

    def pixels(item, key, box):
        band = bands[key]
        if band == "SCL":
            return np.full(box.shape.yx, 4, dtype="uint8")  # vegetation
        dn = truth(box, band) + {"esa": 1000, "old": 0, "shifted": 0}[published]
        return np.clip(dn, 1, 65535).astype("uint16")

    return pixels


def _cube(tmp_path, api_url: str, items: list[dict], keys: dict[str, str], radiometry: str, name: str,
          duplicates: str = "newest-processing") -> Cube:
    """A Sentinel-2 cube (the preset's variables and rules) whose zones are the served windows' grids."""
    days = sorted(pd.Timestamp(item["properties"]["datetime"]).tz_convert(None).normalize() for item in items)
    preset = sentinel2_l2a_spec((11.9, 46.9, 12.0, 47.0), bands=tuple(keys), resampling={"B11": "nearest"})
    zones = {}
    for item in items:
        box = asset_grid(item, keys["B04"])  # already the served window's grid
        zones.setdefault(f"epsg{box.crs.epsg}", box)
    spec = dataclasses.replace(
        preset, name=name, zones=zones, chunks=(64, 64), group_by="time",
        time=pd.date_range(days[0], days[-1], freq="D"),
        source=StacSource(api_url=api_url, collection="sentinel-2-l2a", assets={b: keys[b] for b in keys},
                          radiometry=radiometry, duplicates=duplicates))
    return Cube.create(tmp_path / f"{name}.icechunk", spec, catalog_dir=tmp_path / f"{name}-catalog")


def _served(tmp_path, name: str, items: list[dict]):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return write_collection(folder, items, "sentinel-2-l2a")


def _metadata(cube: Cube) -> dict:
    snap = next(iter(cube.repo.ancestry(branch="main")))
    return snap.metadata["stacube"]


def _check_reflectance(cube: Cube, item: dict, keys: dict[str, str]) -> xr.Dataset:
    """The cube's Tile of ``item``'s window on its day: the whole object, and physical values equal to the truth."""
    box = asset_grid(item, keys["B04"])
    day = pd.Timestamp(item["properties"]["datetime"]).tz_convert(None).normalize()
    tile = cube.load(box, day, offline=True)
    assert tile.sizes == {"time": 1, "y": box.shape.y, "x": box.shape.x}
    assert tile.odc.geobox == box and list(tile.time.values) == [np.datetime64(day, "ns")]
    decoded = xr.decode_cf(tile)
    for band in ("B04", "B08", "B11"):
        stored = tile[band]
        assert stored.dtype == np.uint16 and stored.attrs["scale_factor"] == 0.0001
        assert stored.attrs["add_offset"] == -0.1 and stored.attrs["_FillValue"] == 0
        want = truth(window_geobox(asset_grid(item, keys[band]), Window(0, 0, box.shape.x * 10.0)), band)
        if band == "B11":  # 20 m, read nearest onto 10 m: every 20 m pixel twice each way
            want = np.repeat(np.repeat(want, 2, axis=0), 2, axis=1)
        np.testing.assert_array_equal(stored.values[0], want + 1000, err_msg=f"{item['id']} {band}")
        np.testing.assert_allclose(decoded[band].values[0], want / 10000, atol=1e-6)
    assert (tile.SCL.values == 4).all() and "scale_factor" not in tile.SCL.attrs
    return tile


def test_planetary_computer_items_of_old_and_new_baselines_hold_one_convention(tmp_path):
    """Planetary Computer: 02.12 (2019), 04.00 (2022), 05.10 (2024), no scale or offset declared at all."""
    folder = tmp_path / "pc"
    folder.mkdir()
    old = localize(recorded("planetary-computer", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531"),
                   list(PC_KEYS.values()), folder, pixels_as("old", PC_KEYS))
    new = [localize(recorded("planetary-computer", item_id), list(PC_KEYS.values()), folder,
                    pixels_as("esa", PC_KEYS))
           for item_id in ("S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251",
                           "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458")]
    assert [i["properties"]["s2:processing_baseline"] for i in [old, *new]] == ["02.12", "04.00", "05.10"]
    with serve_sample(write_collection(folder, [old, *new], "sentinel-2-l2a")) as (_files, api):
        cube = _cube(tmp_path, api.url, [old, *new], PC_KEYS, "sentinel-2-baseline", "pc")
        for item in (old, *new):
            cube.download(asset_grid(item, "B04"), pd.Timestamp(item["properties"]["datetime"]).tz_convert(None))
            _check_reflectance(cube, item, PC_KEYS)
            # odc-stac reads the same Item's numbers; by the baseline rule restated, they are the cube's
            served = pystac.Item.from_dict(_served_item(folder, item["id"]))
            raw = odc.stac.load([served], bands=["B04"], geobox=asset_grid(item, "B04"))["B04"].values[0]
            shift = 1000 if item["properties"]["s2:processing_baseline"] >= "04.00" else 0
            stored = cube.load(asset_grid(item, "B04"), pd.Timestamp(item["properties"]["datetime"]).tz_convert(None),
                               offline=True, variables="B04").B04.values[0]
            np.testing.assert_array_equal(stored, raw.astype("int32") + 1000 - shift)
    state = cube.state()  # the filled record: each Item's window is 3 x 3 patches of 64 px, each with data
    assert len(state) == 27 and state.has_data.all() and state.snapshot.notna().all()
    assert sorted({str(t.date()) for t in state.time}) == ["2019-06-29", "2022-06-12", "2024-04-19"]
    records = [snap.metadata["stacube"]["radiometry"] for snap in cube.repo.ancestry(branch="main")
               if "radiometry" in snap.metadata.get("stacube", {})]
    assert len(records) == 3 and all(r["policy"] == "sentinel-2-baseline" for r in records)
    assert all(r["conventions"]["B04"] == {"scale_factor": 0.0001, "add_offset": -0.1} for r in records)
    converted = [r["converted"] for r in records if "converted" in r]
    assert converted == [{band: {"scale=0.0001 offset=0": [old["id"]]} for band in ("B04", "B08", "B11")}]


def _served_item(folder, item_id: str) -> dict:
    """The Item as the loopback STAC API serves it (hrefs on the file server)."""
    for path in sorted(folder.glob("items-*.json")):
        for feature in json.loads(path.read_text())["features"]:
            if feature["id"] == item_id:
                return feature
    raise KeyError(item_id)


def test_earth_search_items_decoded_by_flag_and_by_pixels_where_the_flag_is_unreliable(tmp_path, caplog):
    """Earth Search's sentinel-2-l2a: a flagged 04.00 Item (pixels shifted by Element 84), and the two
    cases its unreliable flag hides, derived from recorded Items and labelled so: flag false with raw
    pixels (Element84/earth-search#66) and flag false with shifted pixels (earth-search#71)."""
    folder = tmp_path / "es"
    folder.mkdir()
    flagged = localize(recorded("earth-search", "S2A_30TVT_20221112_0_L2A"), list(ES_KEYS.values()), folder,
                       pixels_as("shifted", ES_KEYS))
    raw = localize(recorded("earth-search", "S2A_32TPS_20230602_0_L2A"), list(ES_KEYS.values()), folder,
                   pixels_as("esa", ES_KEYS), properties={"earthsearch:boa_offset_applied": False})
    mislabelled = localize(recorded("earth-search", "S2A_13TDE_20231008_0_L2A"), list(ES_KEYS.values()), folder,
                           pixels_as("shifted", ES_KEYS), properties={"earthsearch:boa_offset_applied": False})
    items = [flagged, raw, mislabelled]
    assert all(i["assets"]["red"]["raster:bands"][0]["offset"] == -0.1 for i in items)  # as recorded: always -0.1
    with caplog.at_level(logging.WARNING, logger="stacube"), serve_sample(_served(tmp_path, "es", items)) as (_f, api):
        cube = _cube(tmp_path, api.url, items, ES_KEYS, "earth-search-l2a", "es")
        for item in items:
            cube.download(asset_grid(item, "red"), pd.Timestamp(item["properties"]["datetime"]).tz_convert(None))
            _check_reflectance(cube, item, ES_KEYS)
            judged = _metadata(cube)["radiometry"].get("judged_from_pixels", {})
            if item is flagged:
                assert not judged  # the flag is trusted where it says the offset was applied
            else:  # judged once for the whole Item (every patch the same), with its evidence
                assert list(judged) == [item["id"]]
                assert ("raw pixels" if item is raw else "already shifted") in judged[item["id"]], judged
    assert "decided from the pixels" in caplog.text


def test_ndvi_of_a_collection_declaring_no_offset_is_right(tmp_path):
    """The issue's example: B04 = 1000 and B08 = 3000 in an Item whose pixels carry no offset give NDVI 0.5
    (a fixed DN * 0.0001 - 0.1 gave 1.0)."""
    import geopandas as gpd
    import shapely

    from stacube.fields import IndexSettings
    from stacube.fields.indices import parcel_statistics

    folder = tmp_path / "ndvi"
    folder.mkdir()
    values = {"red": 1000, "nir": 3000, "swir16": 2000, "scl": 4}

    def pixels(item, key, box):
        return np.full(box.shape.yx, values[key], dtype="uint8" if key == "scl" else "uint16")

    item = localize(recorded("earth-search", "S2A_30TVT_20221112_0_L2A"), list(ES_KEYS.values()), folder, pixels)
    with serve_sample(write_collection(folder, [item], "sentinel-2-l2a")) as (_files, api):
        cube = _cube(tmp_path, api.url, [item], ES_KEYS, "earth-search-l2a", "ndvi")
        box = asset_grid(item, "red")
        tile = cube.load(box, pd.Timestamp(item["properties"]["datetime"]).tz_convert(None))
    parcel = gpd.GeoDataFrame({"parcel_id": ["P"]}, geometry=[shapely.box(*box[10:30, 10:30].extent.boundingbox)],
                              crs=box.crs).to_crs("EPSG:4326")
    rows = parcel_statistics(tile, parcel, IndexSettings())
    assert rows.ndvi_mean.iloc[0] == pytest.approx(0.5, abs=1e-9)
    assert rows.ndmi_mean.iloc[0] == pytest.approx((0.3 - 0.2) / (0.3 + 0.2), abs=1e-9)
    assert rows.total_pixels.iloc[0] == 400 and rows.usable.iloc[0]


def test_earth_search_collection_1_reads_as_declared(tmp_path):
    """sentinel-2-c1-l2a: ESA's numbers (offset -0.1, declared correctly) under the baseline policy."""
    folder = tmp_path / "c1"
    folder.mkdir()
    items = [localize(recorded("earth-search", item_id), list(ES_KEYS.values()), folder, pixels_as("esa", ES_KEYS))
             for item_id in ("S2A_T13TDE_20240402T174230_L2A", "S2B_T24MUA_20250731T130245_L2A")]
    assert all("earthsearch:boa_offset_applied" not in i["properties"] for i in items)
    with serve_sample(write_collection(folder, items, "sentinel-2-l2a")) as (_files, api):
        cube = _cube(tmp_path, api.url, items, ES_KEYS, "sentinel-2-baseline", "c1")
        for item in items:
            cube.download(asset_grid(item, "red"), pd.Timestamp(item["properties"]["datetime"]).tz_convert(None))
            _check_reflectance(cube, item, ES_KEYS)
    assert "converted" not in _metadata(cube)["radiometry"]  # already the cube's convention: nothing converted


def test_a_reprocessed_copy_wins_over_the_stale_one_and_the_commit_names_the_stale_one(tmp_path):
    """One acquisition published twice, as Earth Search does (S2A_10TET_20201223_0_L2A and _1_L2A): here
    the recorded S2A_30TVT_20221112_0_L2A (04.00) and a reprocessing of it, derived: id _1_L2A, baseline
    05.09, updated later, other pixels. Its (datetime, id) order alone would let either win by id."""
    folder = tmp_path / "pair"
    folder.mkdir()
    stale_record = recorded("earth-search", "S2A_30TVT_20221112_0_L2A")
    stale = localize(stale_record, list(ES_KEYS.values()), folder, pixels_as("shifted", ES_KEYS))

    def brighter(item, key, box):
        values = pixels_as("shifted", ES_KEYS)(item, key, box)
        return values if key == "scl" else (values + 500).astype("uint16")

    newer = localize(stale_record, list(ES_KEYS.values()), folder, brighter, item_id="S2A_30TVT_20221112_1_L2A",
                     properties={"s2:processing_baseline": "05.09", "updated": "2024-01-10T00:00:00Z",
                                 "s2:sequence": "1"})
    items = [newer, stale]
    with serve_sample(write_collection(folder, items, "sentinel-2-l2a")) as (_files, api):
        cube = _cube(tmp_path, api.url, items, ES_KEYS, "earth-search-l2a", "pair")
        box = asset_grid(stale, "red")
        day = pd.Timestamp(stale["properties"]["datetime"]).tz_convert(None)
        report = cube.download(box, day)
        tile = cube.load(box, day, offline=True)
        kept_all = _cube(tmp_path, api.url, items, ES_KEYS, "earth-search-l2a", "all", duplicates="keep-all")
        mosaic = kept_all.load(box, day)
    assert report.item_ids == ["S2A_30TVT_20221112_1_L2A"] and report.items_superseded == [stale["id"]]
    meta = _metadata(cube)
    assert meta["items"] == ["S2A_30TVT_20221112_1_L2A"] and meta["items_superseded"] == [stale["id"]]
    want = truth(box, "B04") + 1000 + 500
    np.testing.assert_array_equal(tile.B04.values[0], want)
    np.testing.assert_array_equal(mosaic.B04.values[0], want - 500)  # by (datetime, id) the stale _0_ won


def test_landsat_on_a_grid_anchored_15_m_off_stays_unresampled_and_a_misaligned_zone_says_so(tmp_path, caplog):
    """Planetary Computer Landsat C2 L2 (30 m pixels whose edges sit 15 m off multiples of 30; scale
    2.75e-05, offset -0.2): a zone anchored on the Item's grid stores its numbers as they are; a zone
    on multiples of 30 resamples them, and the run warns once and names the Item in its commit."""
    from stacube.fields.run import group_geobox

    record = recorded("planetary-computer", "LC09_L2SP_089090_20240417_02_T1")
    folder = tmp_path / "landsat"
    folder.mkdir()

    def pixels(item, key, box):
        return (7273 + np.round(reflectance_field(box, 0.5) / 2.75e-05)).astype("uint16")  # reflectance + 0.2

    item = localize(record, ["red", "nir08"], folder, pixels, window=Window(dx=1200.0, dy=1200.0, size=3840.0))
    window = asset_grid(item, "red")
    assert anchor_of(pystac.Item.from_dict(item), "red") == (0.5, 0.5)
    day = pd.Timestamp(item["properties"]["datetime"]).tz_convert(None).normalize()
    variables = {name: Variable("uint16", nodata=0, units="1", scale_factor=2.75e-05, add_offset=-0.2)
                 for name in ("red", "nir")}
    anchored = GeoBox.from_bbox(window.extent.buffer(600).boundingbox, window.crs, resolution=30,
                                anchor=xy_(*anchor_of(pystac.Item.from_dict(item), "red")))
    plain = GeoBox.from_bbox(window.extent.buffer(600).boundingbox, window.crs, resolution=30)
    assert anchored.transform.c % 30 == 15 and plain.transform.c % 30 == 0
    with serve_sample(write_collection(folder, [item], "landsat-c2-l2")) as (_files, api):
        cubes = {}
        for name, zone in (("anchored", anchored), ("plain", plain)):
            spec = CubeSpec(name=name, zones=[zone], chunks=(64, 64), variables=variables,
                            time=pd.date_range(day, periods=1, freq="D"),
                            source=StacSource(api_url=api.url, collection="landsat-c2-l2",
                                              assets={"red": "red", "nir": "nir08"}))
            cubes[name] = Cube.create(tmp_path / name, spec, catalog_dir=tmp_path / f"{name}-catalog")
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="stacube"):
                cubes[name].download(window, day)
            warned = [r for r in caplog.records if "not its pixel grid" in r.getMessage()]
            assert len(warned) == (1 if name == "plain" else 0)
        served = pystac.Item.from_dict(_served_item(folder, item["id"]))
        direct = odc.stac.load([served], bands=["red"], geobox=window)["red"].values[0]
    tile = cubes["anchored"].load(window, day, offline=True)
    np.testing.assert_array_equal(tile.red.values[0], direct)  # stored as the source has them
    np.testing.assert_allclose(xr.decode_cf(tile).red.values[0], reflectance_field(window, 0.5), atol=3e-5)  # a DN step
    assert "items_misaligned" not in _metadata(cubes["anchored"])
    assert _metadata(cubes["plain"])["items_misaligned"] == [f"{item['id']}:red", f"{item['id']}:nir08"]
    # the field pipeline's Tile on that zone: its own pixel edges, no "Incompatible grids"
    lon_lat = window[20:40, 20:40].extent.to_crs("EPSG:4326").boundingbox
    group_box = group_geobox(cubes["anchored"], tuple(lon_lat), window.crs.epsg)
    assert group_box.transform.c % 30 == 15 and group_box.crs == window.crs
    part = cubes["anchored"].load(group_box, day, offline=True)
    assert (part.red.values != 0).all()


def _dem_pixels(item: dict, key: str, box: GeoBox, seeded: bool = False) -> np.ndarray:
    """ArcticDEM-like values for a served window: a smooth surface of 200-350 m, a datamask of ones."""
    if key == "datamask":
        return np.ones(box.shape.yx, dtype="uint8")
    return (200 + 150 * reflectance_field(box, seed=len(item["id"]) if seeded else 0.0)).astype("float32")


def test_an_arcticdem_tile_at_the_edge_of_the_published_grid_loads(tmp_path):
    """ArcticDEM 32 m tile 81_24 (the top row: Cape Lopatka, Kamchatka), as PGC's STAC API describes its
    mosaic Items (pgcdemtools' view: STAC 1.1, proj:code, nodata and data_type on the asset), on its
    real grid: 3131 px from x -1,700,096, y 4,100,096. It lay outside the cube's old zone."""
    record = recorded("pgc", "81_24_32m_v4.1")
    folder = tmp_path / "pgc"
    folder.mkdir()

    # a 4 km window holding Cape Lopatka (x -1,626,597, y 4,093,695), on the file's own 32 m pixels
    item = localize(record, ["dem", "datamask"], folder, _dem_pixels, window=Window(dx=73_472.0, dy=6_400.0,
                                                                              size=4_096.0))
    window = asset_grid(item, "dem")
    assert window.extent.contains(point(156.67, 50.87, "EPSG:4326").to_crs("EPSG:3413"))
    assert window.transform.f > 3_314_693  # north of where the cube's grid used to end
    spec = arcticdem_spec(32, chunks=(256, 256))
    with serve_sample(write_collection(folder, [item], "arcticdem-mosaics-v4.1-32m")) as (_files, api):
        spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, api_url=api.url))
        cube = Cube.create(tmp_path / "dem", spec, catalog_dir=tmp_path / "catalog")
        tile = cube.load(window)
        direct = odc.stac.load([pystac.Item.from_dict(_served_item(folder, item["id"]))], bands=["dem"],
                               geobox=window)["dem"].values[0]
    np.testing.assert_array_equal(tile.dem.values, direct)
    assert (tile.datamask.values == 1).all() and tile.odc.geobox == window
    assert _metadata(cube).get("items_misaligned") is None  # the 32 m files lie on the 32 m grid


def test_items_with_an_empty_or_a_bow_tie_footprint_still_fill_their_patches(tmp_path, caplog):
    """Two ArcticDEM tiles' Items (PGC's layout) whose geometries a catalog got wrong: one empty, one a
    bow-tie. They are placed by their bbox; every pixel odc-stac reads from them is in the cube, and no
    patch is recorded filled without them. (A STAC API that searches by geometry never returns the
    empty one for a bbox: it enters the local catalog here as from a server that indexes bboxes.)"""
    record = recorded("pgc", "81_24_32m_v4.1")
    folder = tmp_path / "pgc"
    folder.mkdir()

    seeded = functools.partial(_dem_pixels, seeded=True)  # the two tiles' values differ
    empty = localize(record, ["dem", "datamask"], folder, seeded, item_id="81_24_32m_v4.1_empty",
                     window=Window(dx=73_472.0, dy=6_400.0, size=4_096.0))
    bowtie = localize(record, ["dem", "datamask"], folder, seeded, item_id="81_24_32m_v4.1_bowtie",
                      window=Window(dx=73_472.0 + 4_096.0, dy=6_400.0, size=4_096.0))
    empty["geometry"] = {"type": "Polygon", "coordinates": []}
    ring = bowtie["geometry"]["coordinates"][0]
    ring[1], ring[2] = ring[2], ring[1]  # two corners swapped: the ring crosses itself
    bowtie["geometry"]["coordinates"][0] = ring
    assert not shapely.geometry.shape(bowtie["geometry"]).is_valid
    both = asset_grid(empty, "dem")
    both = GeoBox((both.shape.y, both.shape.x * 2), both.transform, both.crs)  # the two windows side by side
    spec = arcticdem_spec(32, chunks=(64, 64))
    with caplog.at_level(logging.WARNING, logger="stacube"), \
            serve_sample(write_collection(folder, [empty, bowtie], "arcticdem-mosaics-v4.1-32m")) as (_files, api):
        spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, api_url=api.url))
        cube = Cube.create(tmp_path / "dem", spec, catalog_dir=tmp_path / "catalog")
        as_served = _served_item(folder, empty["id"])
        assert as_served["geometry"] == {"type": "Polygon", "coordinates": []}
        assert cube.catalog.append([as_served]) == 1
        tile = cube.load(both)
        served = [pystac.Item.from_dict(_served_item(folder, i["id"])) for i in (empty, bowtie)]
        direct = odc.stac.load(served, bands=["dem"], geobox=both, groupby=lambda *_: 0)["dem"].values[0]
    np.testing.assert_array_equal(tile.dem.values, direct)
    assert np.isfinite(tile.dem.values).all() and (tile.datamask.values == 1).all()  # 2 x 128 x 128 px, none lost
    notes = {i.id: i.properties["stacube:footprint"] for i in cube.catalog.search()}
    assert notes["81_24_32m_v4.1_empty"] == "geometry empty: placed by its bbox"
    assert notes["81_24_32m_v4.1_bowtie"].startswith("geometry invalid (Self-intersection")
    assert notes["81_24_32m_v4.1_bowtie"].endswith("placed by its bbox") and len(notes) == 2
    assert sum("placed by its bbox" in r.getMessage() for r in caplog.records) == 2
    state = cube.state()
    assert state.has_data.all() and len(state) == len(cube.plan(both).patches) == 15  # the windows are off-chunk

import json

import pandas as pd
import pytest
from shapely.geometry import shape

from stacube import CatalogError
from stacube.catalog import LocalCatalog, Window, small_search
from stacube.sources.stac.harvest import _absolute_hrefs


@pytest.fixture(autouse=True, params=["in-memory", "duckdb"])
def engine(request, monkeypatch):
    """Every catalog test runs against both search engines: in memory (small catalogs) and DuckDB."""
    if request.param == "duckdb":
        monkeypatch.setattr(small_search, "MAX_ITEMS", -1)
    return request.param


@pytest.fixture
def items(sample_dir):
    return json.loads((sample_dir / "items.json").read_text())["features"]


def test_append_adds_only_new_items_and_search_filters(tmp_path, items):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "sample-dem")
    assert catalog.append(items[:10]) == 10
    assert catalog.append(items) == 6  # only the six it did not hold
    assert len(catalog) == 16
    center = shape(items[0]["geometry"]).centroid
    found = {item.id for item in catalog.search(bbox=(center.x, center.y, center.x + 1e-4, center.y + 1e-4))}
    assert "tile_r0_c0" in found and len(found) < 16
    assert catalog.search(datetime="2019-01-01T00:00:00Z/2019-12-31T23:59:59Z") == []
    cql = {"op": "=", "args": [{"property": "id"}, "tile_r1_c2"]}
    assert [item.id for item in catalog.search(filter=cql)] == ["tile_r1_c2"]


def test_windows_record_what_was_synced(tmp_path):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "c")
    jan = Window((0, 0, 10, 10), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    catalog.record_window(jan)
    catalog.record_window(Window((10, 0, 20, 10), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")))
    assert catalog.covers(Window((5, 5, 15, 6), pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-06")))
    assert not catalog.covers(Window((5, 5, 25, 6), pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-06")))
    assert not catalog.covers(Window((5, 5, 6, 6), pd.Timestamp("2024-01-05"), pd.Timestamp("2024-03-01")))
    assert LocalCatalog(tmp_path, "http://other/api", "c").windows() == []  # catalogs are per source


def test_local_hrefs_from_a_remote_catalog_are_refused():
    item = {"id": "x", "links": [], "assets": {"dem": {"href": "/etc/passwd"}}}
    with pytest.raises(CatalogError, match="local file"):
        _absolute_hrefs(item, allow_local=False)
    self_link = {"rel": "self", "href": "http://h/items/y.json"}
    relative = {"id": "y", "links": [self_link], "assets": {"a": {"href": "a.tif"}}}
    assert _absolute_hrefs(relative, allow_local=False)["assets"]["a"]["href"] == "http://h/items/a.tif"


def test_search_by_geometry_intersects(tmp_path, items):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "sample-dem")
    catalog.append(items)
    point = shape(items[5]["geometry"]).centroid.buffer(1e-4)
    found = {item.id for item in catalog.search(intersects=point.__geo_interface__)}
    assert items[5]["id"] in found and len(found) <= 4


def test_sample_generator_is_deterministic(tmp_path):
    import hashlib

    from stacube.testing.generate import SampleLayout, generate_sample

    layout = SampleLayout(rows=1, cols=2, tile_size=128, overlap=16, border=4)
    digests = []
    for run in ("a", "b"):
        folder = generate_sample(tmp_path / run, layout)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*"))})
    assert digests[0] == digests[1] and len(digests[0]) == 6  # 4 COGs, items.json, layout.json


def test_a_window_synced_before_its_period_settled_is_harvested_again():
    recent = Window((0, 0, 1, 1), pd.Timestamp("2024-05-01"), pd.Timestamp("2024-05-02"),
                    synced_at=pd.Timestamp("2024-05-02T06:00"))
    assert not recent.settled(pd.Timedelta(days=3))
    assert recent.settled(pd.Timedelta(hours=1))
    assert Window((0, 0, 1, 1)).settled(pd.Timedelta(days=3))  # spatial-only: nothing more to wait for
    again = Window.from_json(recent.to_json())
    assert again == recent


def test_split_window_tiles_space_and_time():
    from stacube.catalog import split_window

    window = Window((0.0, 0.0, 2.5, 1.0), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-01"))
    parts = split_window(window, degrees=1.0, period="31D")
    assert len(parts) == 3 * 2  # three lon bands x two periods
    assert {p.bbox for p in parts} == {(0.0, 0.0, 1.0, 1.0), (1.0, 0.0, 2.0, 1.0), (2.0, 0.0, 2.5, 1.0)}
    assert min(p.start for p in parts) == window.start and max(p.end for p in parts) == window.end
    assert split_window(Window((0, 0, 0.5, 0.5))) == [Window((0, 0, 0.5, 0.5))]


def test_windows_synced_piece_by_piece_cover_the_whole_request(tmp_path):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "c")
    for start, end in (("2024-01-01", "2024-02-01"), ("2024-02-01", "2024-03-01")):
        for bbox in ((0, 0, 1, 1), (1, 0, 2, 1)):
            catalog.record_window(Window(bbox, pd.Timestamp(start), pd.Timestamp(end)))
    assert catalog.covers(Window((0.5, 0.2, 1.5, 0.8), pd.Timestamp("2024-01-10"), pd.Timestamp("2024-02-20")))
    assert not catalog.covers(Window((0.5, 0.2, 1.5, 0.8), pd.Timestamp("2024-01-10"), pd.Timestamp("2024-03-20")))
    assert not catalog.covers(Window((0.5, 0.2, 2.5, 0.8), pd.Timestamp("2024-01-10"), pd.Timestamp("2024-02-20")))


def test_items_with_a_time_range_are_found_by_any_interval_they_meet(tmp_path):
    import datetime as dt

    import pystac

    def item(item_id, start=None, end=None, when=None):
        props = {"start_datetime": start, "end_datetime": end} if start else {}
        return pystac.Item(item_id, {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
                           [0, 0, 1, 1], when, props, collection="c").to_dict()

    ranged = LocalCatalog(tmp_path / "a", "http://x", "c")
    ranged.append([item("june", "2024-06-01T00:00:00Z", "2024-06-30T23:59:59Z")])
    instants = LocalCatalog(tmp_path / "b", "http://x", "c")
    instants.append([item("tenth", when=dt.datetime(2024, 6, 10, 10, tzinfo=dt.UTC))])
    mixed = LocalCatalog(tmp_path / "c", "http://x", "c")
    mixed.append([item("june", "2024-06-01T00:00:00Z", "2024-06-30T23:59:59Z")])
    mixed.append([item("tenth", when=dt.datetime(2024, 6, 10, 10, tzinfo=dt.UTC))])

    def ids(catalog, query):
        return sorted(i.id for i in catalog.search(datetime=query))

    day = "2024-06-10T00:00:00Z/2024-06-10T23:59:59Z"
    assert ids(ranged, day) == ["june"]  # a monthly composite belongs to each of its days
    assert ids(ranged, "2024-05-20T00:00:00Z/2024-06-02T00:00:00Z") == ["june"]  # and to intervals it only meets
    assert ids(ranged, "2024-07-01T00:00:00Z/2024-07-02T00:00:00Z") == []
    assert ids(instants, day) == ["tenth"] and ids(instants, "2024-06-11T00:00:00Z/2024-06-12T00:00:00Z") == []
    assert ids(mixed, day) == ["june", "tenth"]
    assert ids(mixed, "2024-06-20T00:00:00Z/2024-06-21T00:00:00Z") == ["june"]
    assert ids(mixed, "../..") == ["june", "tenth"]


def test_a_killed_writers_temporary_files_are_dropped_by_the_next_write(tmp_path, items):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "sample-dem")
    catalog.append(items[:2])
    half_written = catalog.folder / "items" / "part-killed.parquet.tmp"
    half_written.write_bytes(b"PAR1 cut off")
    stale_windows = catalog.folder / "windows-dead.tmp"
    stale_windows.write_text("{")
    catalog.append(items[2:4])
    assert not half_written.exists() and not stale_windows.exists()
    assert len(catalog) == 4 and len(catalog.search()) == 4



def test_a_catalog_stored_before_footprints_were_checked_is_repaired_once(tmp_path, items):
    """An Item kept with an empty geometry by an older stacube was never found by a bbox search: the
    catalog's first search repairs it (placed by its bbox) and marks the catalog checked."""
    import copy

    import rustac

    catalog = LocalCatalog(tmp_path, "http://example.com/stac", "sample-dem")
    broken = copy.deepcopy(items[0])
    broken["geometry"] = {"type": "Polygon", "coordinates": []}
    (catalog.folder / "items").mkdir(parents=True)
    rustac.write_sync(str(catalog.folder / "items" / "part-old.parquet"), [broken, *items[1:3]], format="geoparquet")
    west, south, east, north = broken["bbox"]
    found = {i.id for i in catalog.search(bbox=(west, south, east, north))}
    assert broken["id"] in found
    repaired = next(i for i in catalog.search(bbox=(west, south, east, north)) if i.id == broken["id"])
    assert repaired.properties["stacube:footprint"] == "geometry empty: placed by its bbox"
    assert (catalog.folder / "footprints-checked").exists() and len(catalog) == 3
    fresh = LocalCatalog(tmp_path / "new", "http://example.com/stac", "sample-dem")
    fresh.append(items[:2])
    assert (fresh.folder / "footprints-checked").exists()  # a new catalog is never scanned


def test_a_catalog_stored_before_parts_carried_geo_in_their_arrow_schema_reads_as_a_folder(tmp_path, items):
    """Parts written by rustac alone (an older stacube) keep ``geo`` only in the Parquet footer, so
    geopandas refused the ``items/`` folder ("Missing geo metadata"). The catalog's first use rewrites
    them once: the folder then reads in geopandas with every Item, its CRS and its geometries."""
    import geopandas
    import rustac

    catalog = LocalCatalog(tmp_path, "http://example.com/stac", "sample-dem")
    (catalog.folder / "items").mkdir(parents=True)
    rustac.write_sync(str(catalog.folder / "items" / "part-0-old.parquet"), items[:3], format="geoparquet")
    (catalog.folder / "footprints-checked").write_text("checked by the older stacube\n")
    with pytest.raises(ValueError, match="geo metadata"):
        geopandas.read_parquet(catalog.folder / "items")  # what users met
    catalog.append(items[3:5])
    frame = geopandas.read_parquet(catalog.folder / "items")
    assert sorted(frame["id"]) == sorted(i["id"] for i in items[:5])
    assert frame.crs.to_string() == "OGC:CRS84"  # GeoParquet's default: lon/lat WGS 84
    assert frame.geometry.bounds.iloc[0].tolist() == pytest.approx(
        next(i["bbox"] for i in items if i["id"] == frame["id"].iloc[0]))
    assert {i.id for i in catalog.search()} == {i["id"] for i in items[:5]}
    assert (catalog.folder / "geo-schema-checked").exists()  # checked once, not on every use


def test_an_item_republished_with_a_newer_updated_replaces_the_held_copy(tmp_path):
    """A source fixes an Item in place (a footprint widened, an asset added): the copy with the later ``updated``
    is the one searched; an older or undated copy of a held id changes nothing."""
    def item(east, updated, extra=None):
        return {"type": "Feature", "stac_version": "1.0.0", "id": "S2_T33_X", "collection": "c", "links": [],
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [east, 0], [east, 1], [0, 1], [0, 0]]]},
                "bbox": [0, 0, east, 1], "assets": {},
                "properties": {"datetime": "2024-06-05T10:00:00Z", **({"updated": updated} if updated else {}),
                               **(extra or {})}}

    other = dict(item(0.2, None), id="OTHER")
    catalog = LocalCatalog(tmp_path / "c", "http://127.0.0.1:9/api", "c")
    assert catalog.append([item(0.5, "2024-06-05T12:00:00Z"), other]) == 2
    assert catalog.append([item(1.0, "2024-06-06T09:00:00Z")]) == 1  # newer: replaces
    assert [i.id for i in catalog.search(bbox=(0.6, 0, 0.9, 1))] == ["S2_T33_X"] and len(catalog) == 2
    assert catalog.append([item(0.7, "2024-06-06T08:00:00Z"), item(0.7, None), other]) == 0  # older, undated, same
    held = {i.id: i for i in catalog.search()}
    assert list(held["S2_T33_X"].bbox) == [0, 0, 1.0, 1] and sorted(held) == ["OTHER", "S2_T33_X"]

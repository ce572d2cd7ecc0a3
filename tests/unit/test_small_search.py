"""The in-memory search of small catalogs answers exactly as rustac's DuckDB search does."""

import json

import pytest

from stacube.catalog import LocalCatalog, small_search


@pytest.fixture
def items(sample_dir):
    return json.loads((sample_dir / "items.json").read_text())["features"]


QUERIES = [
    {},
    {"bbox": (-47.9, 71.5, -47.6, 71.6)},
    {"bbox": (0.0, 0.0, 1.0, 1.0)},
    {"intersects": {"type": "Point", "coordinates": [-47.7, 71.6]}},
    {"datetime": "2020-07-01T12:00:00Z"},
    {"datetime": "2020-07-01T12:00:00Z/.."},
    {"datetime": "../2020-07-01T11:59:59Z"},
    {"datetime": "2020-01-01T00:00:00Z/2020-12-31T23:59:59Z", "bbox": (-48.0, 71.0, -47.0, 72.0)},
    {"filter": {"op": "in", "args": [{"property": "id"}, ["tile_r0_c0", "tile_r3_c3", "nothing"]]}},
    {"filter": {"op": "like", "args": [{"property": "id"}, "tile_r1%"]}, "bbox": (-180, -90, 180, 90)},
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_both_search_engines_find_the_same_items(tmp_path, items, query, monkeypatch):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "sample-dem")
    catalog.append(items[:9])
    catalog.append(items[9:])  # two parts
    in_memory = sorted(i.id for i in catalog.search(**query))
    assert small_search.search(catalog._parts, {k: list(v) if k == "bbox" else v for k, v in query.items()}) \
        is not None  # this query really was answered in memory
    monkeypatch.setattr(small_search, "MAX_ITEMS", -1)
    assert in_memory == sorted(i.id for i in catalog.search(**query))


def test_a_catalog_above_the_limit_or_a_bbox_across_the_antimeridian_goes_to_duckdb(tmp_path, items, monkeypatch):
    catalog = LocalCatalog(tmp_path, "http://127.0.0.1:9/api", "sample-dem")
    catalog.append(items)
    assert small_search.search(catalog._parts, {"bbox": [170.0, -10.0, -170.0, 10.0]}) is None
    monkeypatch.setattr(small_search, "MAX_ITEMS", 15)
    assert small_search.search(catalog._parts, {}) is None

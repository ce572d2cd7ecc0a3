"""Bad input to sources, the local catalog's search, ready-made specs and runners fails with a stacube
error naming the value; a run fails with the patch's real failure, never a cancellation it caused."""

from __future__ import annotations

import re
import time

import pytest
from odc.geo.geobox import GeoBox

from stacube.errors import (
    CatalogError,
    PatchReadError,
    PermanentSourceError,
    SpecError,
    TransientSourceError,
)
from stacube.grid import PatchIndex
from stacube.sources import EarthEngineSource, StacSource, source_from_json

API = "https://stac.example.com/v1"


def stac(**settings) -> StacSource:
    return StacSource(API, "c", {"a": "b"}, **settings)


# --- 1. a source's CQL2 filter --------------------------------------------------------------------------
@pytest.mark.parametrize("cql", [{"nonsense": 1}, {"op": "=", "args": [{"property": "x"}]},
                                 "eo:cloud_cover < 20", 5])
def test_a_filter_cql2_cannot_read_is_refused_when_the_source_is_made(cql):
    with pytest.raises(SpecError, match=r"filter .*(nonsense|'x'|eo:cloud_cover < 20|5)"):
        stac(filter=cql)
    data = {**stac().to_json(), "filter": cql}
    with pytest.raises(SpecError, match="filter"):  # a stored spec too
        source_from_json(data)


@pytest.mark.parametrize("cql", [None, {}, {"op": "<", "args": [{"property": "eo:cloud_cover"}, 60.0]},
                                 {"op": "and", "args": [{"op": "<", "args": [{"property": "eo:cloud_cover"}, 60.0]}]},
                                 {"op": "like", "args": [{"property": "id"}, "tile_r1%"]}])
def test_filters_cql2_reads_are_kept_as_they_are(cql):
    assert stac(filter=cql).filter == cql


@pytest.fixture
def catalog(tmp_path, sample_dir):
    import json

    from stacube.catalog import LocalCatalog

    found = LocalCatalog(tmp_path / "catalog", "http://127.0.0.1:9/api", "sample-dem")
    found.append(json.loads((sample_dir / "items.json").read_text())["features"])
    return found


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_a_search_with_a_filter_cql2_cannot_read_names_it(catalog, engine, monkeypatch):
    from stacube.catalog import small_search

    if engine == "duckdb":
        monkeypatch.setattr(small_search, "MAX_ITEMS", -1)
    with pytest.raises(SpecError, match=re.escape("filter {'nonsense': 1}")):
        catalog.search(filter={"nonsense": 1})
    with pytest.raises(SpecError, match=re.escape("filter {'nonsense': 1}")):
        catalog.search(datetime="2020-01-01T00:00:00Z/..", filter={"nonsense": 1})
    # cql2 reads it, DuckDB refuses it: a CatalogError that names the filter
    with pytest.raises(CatalogError, match=re.escape("filter {'op': 'frobnicate'")):
        catalog.search(filter={"op": "frobnicate", "args": [1]})
    assert len(catalog.search(filter={"op": "like", "args": [{"property": "id"}, "tile_r1%"]})) == 4


# --- 2 to 4. an Earth Engine source's concurrency; a STAC source's drivers and hosts; the lag -----------
@pytest.mark.parametrize("value", ["abc", None, 2.5, True, [4], 0, 41, float("inf")])
def test_max_concurrency_that_is_no_whole_number_from_1_to_40_is_a_spec_error(value):
    with pytest.raises(SpecError, match=re.escape(f"max_concurrency {value!r}")):
        EarthEngineSource("X/Y", {"a": "b"}, max_concurrency=value)
    with pytest.raises(SpecError, match="max_concurrency"):
        source_from_json({"kind": "earthengine", "collection": "X/Y", "bands": {"a": "b"}, "max_concurrency": value})


def test_max_concurrency_given_as_a_whole_number_is_kept_as_an_int():
    assert EarthEngineSource("X/Y", {"a": "b"}, max_concurrency=8).max_concurrency == 8
    assert EarthEngineSource("X/Y", {"a": "b"}, max_concurrency="8").max_concurrency == 8
    assert EarthEngineSource("X/Y", {"a": "b"}, max_concurrency=8.0).max_concurrency == 8


@pytest.mark.parametrize("setting", ["drivers", "hosts"])
def test_drivers_or_hosts_that_are_no_sequence_are_a_spec_error(setting):
    with pytest.raises(SpecError, match=f"{setting} 5 must"):
        stac(**{setting: 5})


@pytest.mark.parametrize("lag", [None, "NaT", "-1D", "-1s", [1]])
def test_a_publication_lag_that_is_no_duration_of_0_or_more_is_a_spec_error(lag):
    with pytest.raises(SpecError, match=re.escape(f"publication_lag {lag!r}")):
        stac(publication_lag=lag)
    with pytest.raises(SpecError, match="publication_lag"):
        EarthEngineSource("X/Y", {"a": "b"}, publication_lag=lag)


def test_lags_of_0_or_more_are_kept():
    assert stac(publication_lag="0D").lag == pd_timedelta(0)
    assert EarthEngineSource("X/Y", {"a": "b"}, publication_lag="365D").lag == pd_timedelta("365D")


def pd_timedelta(value):
    import pandas as pd

    return pd.Timedelta(value)


# --- 5. ready-made specs and runner names --------------------------------------------------------------
BBOX = (10.0, 50.0, 10.5, 50.5)


def bad_dataset_calls():
    from stacube.datasets import alphaearth_spec, arcticdem_grid, arcticdem_spec, cloud_cover_below, sentinel2_l2a_spec

    def s2(**kw):
        return sentinel2_l2a_spec(BBOX, kw.pop("start", "2020-01-01"), kw.pop("end", "2020-01-05"), **kw)

    return [
        ("alphaearth bands", lambda: alphaearth_spec(BBOX, bands=["X"]), "'X'"),
        ("alphaearth bands number", lambda: alphaearth_spec(BBOX, bands=5), "bands 5"),
        ("alphaearth years gap", lambda: alphaearth_spec(BBOX, years=[2018, 2020]), r"years \[2018, 2020\]"),
        ("alphaearth years empty", lambda: alphaearth_spec(BBOX, years=[]), r"years \[\]"),
        ("alphaearth years text", lambda: alphaearth_spec(BBOX, years=["2020"]), r"years \['2020'\]"),
        ("alphaearth years number", lambda: alphaearth_spec(BBOX, years=2020), "years 2020"),
        ("alphaearth resolution 0", lambda: alphaearth_spec(BBOX, resolution=0), "resolution 0 "),
        ("alphaearth resolution negative", lambda: alphaearth_spec(BBOX, resolution=-10), "resolution -10"),
        ("alphaearth resolution text", lambda: alphaearth_spec(BBOX, resolution="abc"), "resolution 'abc'"),
        ("arcticdem resolution", lambda: arcticdem_spec(5), r"not 5\b"),
        ("arcticdem grid", lambda: arcticdem_grid(7), r"not 7\b"),
        ("arcticdem assets", lambda: arcticdem_spec(32, assets=5), "assets 5"),
        ("sentinel-2 provider", lambda: s2(provider="x"), "provider 'x'"),
        ("sentinel-2 provider list", lambda: s2(provider=["x"]), r"provider \['x'\]"),
        ("sentinel-2 bands", lambda: s2(bands=("B99",)), "B99"),
        ("sentinel-2 bands number", lambda: s2(bands=5), "bands 5"),
        ("sentinel-2 start", lambda: s2(start="notadate"), "start 'notadate'"),
        ("sentinel-2 start none", lambda: s2(start=None), "start None"),
        ("sentinel-2 end", lambda: s2(end="nope"), "end 'nope'"),
        ("sentinel-2 resolution", lambda: s2(resolution=0), "resolution 0 "),
        ("sentinel-2 resolution nan", lambda: s2(resolution=float("nan")), "resolution nan"),
        ("sentinel-2 resolution none", lambda: s2(resolution=None), "resolution None"),
        ("sentinel-2 cloud cover", lambda: s2(max_cloud_cover="x"), "max_cloud_cover 'x'"),
        ("sentinel-2 assets", lambda: s2(assets=5), "assets 5"),
        ("sentinel-2 resampling", lambda: s2(resampling=5), "resampling 5"),
        ("sentinel-2 reach", lambda: s2(reach="x"), "reach 'x'"),
        ("cloud cover nan", lambda: cloud_cover_below(float("nan")), "max_cloud_cover nan"),
    ]


@pytest.mark.parametrize("label", [label for label, _, _ in bad_dataset_calls()])
def test_a_ready_made_spec_given_bad_input_raises_a_spec_error_naming_it(label):
    _, call, named = next(row for row in bad_dataset_calls() if row[0] == label)
    with pytest.raises(SpecError, match=named) as raised:
        call()
    assert isinstance(raised.value, ValueError)  # what callers caught before


def test_ready_made_specs_take_what_they_took():
    from stacube.datasets import alphaearth_spec, sentinel2_l2a_spec

    spec = alphaearth_spec(BBOX, years=range(2020, 2022), bands=["A00", "A01"], resolution=10)
    assert list(spec.variables) == ["a00", "a01"] and len(spec.time) == 2
    assert list(alphaearth_spec(BBOX, bands="A05").variables) == ["a05"]  # a string is one band
    s2 = sentinel2_l2a_spec(BBOX, "2020-01-01", "2020-01-05", bands=("B04", "SCL"), resolution=20,
                            max_cloud_cover=30)
    assert list(s2.variables) == ["B04", "SCL"] and len(s2.time) == 5
    assert s2.source.filter == {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30.0]}


def test_an_unknown_runner_name_is_a_spec_error_naming_it():
    from stacube.runners import runner_named

    with pytest.raises(SpecError, match="unknown runner 'nope'") as raised:
        runner_named("nope")
    assert isinstance(raised.value, ValueError)


# --- 6. a run fails with the real failure, not the cancellation it caused ------------------------------
def patches(n: int) -> list[PatchIndex]:
    geobox = GeoBox.from_bbox((0, 0, 16, 16), "EPSG:3857", resolution=1)
    return [PatchIndex("z", 0, i, geobox) for i in range(n)]


def test_the_patch_that_failed_is_reported_even_when_a_patch_it_cancelled_ends_first(monkeypatch):
    """Patch 1 fails for good; describing its failure (its Items, its URLs) takes a while. Patch 0 failed
    once and waits to retry; the stop wakes it and it ends at once, cancelled, before patch 1's error is
    out. The run must still fail with patch 1's PatchReadError."""
    from stacube import runners

    described = runners.describe_failure

    def slowly_described(patch, error, attempts):
        time.sleep(0.5)
        return described(patch, error, attempts)

    monkeypatch.setattr(runners, "describe_failure", slowly_described)
    calls = {0: 0, 1: 0}

    def task(patch: PatchIndex):
        calls[patch.ix] += 1
        if patch.ix == 0:
            raise TransientSourceError("503 from https://example.com/a.tif", "https://example.com/a.tif", 503)
        time.sleep(0.1)  # patch 0 is waiting for its retry by now
        raise PermanentSourceError("404 from https://example.com/b.tif", "https://example.com/b.tif", 404)

    runner = runners.LocalRunner(concurrency=2, retries=3, backoff=30.0, progress=False)
    started = time.monotonic()
    with pytest.raises(PatchReadError) as raised:
        runner.map(task, patches(2))
    assert raised.value.patch_id == patches(2)[1].id and "404" in str(raised.value)
    assert isinstance(raised.value.__cause__, PermanentSourceError)
    assert calls == {0: 1, 1: 1}  # patch 0 was not retried: the run was lost
    assert time.monotonic() - started < 10  # the stop woke patch 0 from its 30 s backoff


def test_a_run_whose_patches_all_succeed_returns_them_in_order():
    from stacube.runners import LocalRunner

    assert LocalRunner(concurrency=3, progress=False).map(lambda p: p.ix, patches(5)) == [0, 1, 2, 3, 4]


# --- 7. an Earth Engine image that cannot be converted ----------------------------------------------------
def ee_image(**changes):
    image = {"id": "PROJ/COLL/img1", "startTime": "2024-06-01T00:00:00Z",
             "geometry": {"type": "Polygon", "coordinates": [[[10, 50], [11, 50], [11, 51], [10, 51], [10, 50]]]},
             "bands": [{"id": "B1", "dataType": {"precision": "INT", "range": {"max": 255}},
                        "grid": {"crsCode": "EPSG:4326", "dimensions": {"width": 10, "height": 10},
                                 "affineTransform": {"scaleX": 0.1, "translateX": 10, "scaleY": -0.1,
                                                     "translateY": 51}}}]}
    image.update(changes)
    return {k: v for k, v in image.items() if v is not None}


@pytest.mark.parametrize(("changes", "named"), [
    ({"geometry": None}, "img1.*has no geometry"),
    ({"bands": [{"grid": ee_image()["bands"][0]["grid"]}]}, "img1.*band number 0 has no id"),
    ({"bands": [{"id": "B1"}]}, "img1.*band B1 has no grid"),
    ({"bands": [{"id": "B1", "grid": {"crsCode": "EPSG:4326"}}]}, "img1.*lacks 'affineTransform'"),
    ({"startTime": "not a time"}, "img1.*cannot be converted"),
    ({"id": None}, "neither an id nor a name"),
])
def test_an_earth_engine_image_that_cannot_be_converted_is_a_catalog_error_naming_it(changes, named):
    from stacube.sources.earthengine.catalog import image_to_item

    with pytest.raises(CatalogError, match=named):
        image_to_item(ee_image(**changes), "coll")


def test_a_whole_earth_engine_image_is_converted_as_before():
    from stacube.sources.earthengine.catalog import image_to_item

    item = image_to_item(ee_image(), "coll")
    assert item.id == "img1" and list(item.assets) == ["B1"]
    assert item.assets["B1"].href == "earthengine://PROJ/COLL/img1"
    named = image_to_item({**ee_image(id=None), "name": "projects/p/assets/PROJ/COLL/img2"}, "coll")
    assert named.id == "img2"


# --- 8. Earth Engine failing to start during a read ---------------------------------------------------
@pytest.fixture
def ee_backend(monkeypatch):
    from stacube.sources.earthengine import client
    from stacube.variables import Variable

    monkeypatch.setattr(client, "_READY", None)
    for variable in ("STACUBE_EE_TOKEN", "STACUBE_EE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS",
                     "STACUBE_EE_DEADLINE_S", "STACUBE_EE_MAX_RETRIES"):
        monkeypatch.delenv(variable, raising=False)
    source = EarthEngineSource("X/Y", {"v": "b"}, project="p", api_url="http://127.0.0.1:9")
    return source.backend({"v": Variable("uint8", nodata=0)})


def test_a_key_file_that_cannot_be_read_fails_a_read_for_good(ee_backend, tmp_path, monkeypatch):
    from stacube.errors import is_permanent
    from stacube.runners import LocalRunner

    (tmp_path / "key.json").write_text("{not json")
    monkeypatch.setenv("STACUBE_EE_KEY_FILE", str(tmp_path / "key.json"))
    with pytest.raises(PermanentSourceError, match=r"STACUBE_EE_KEY_FILE names .*key\.json") as raised:
        ee_backend.read(patches(1)[0])
    assert is_permanent(raised.value) and "{not json" not in str(raised.value)
    calls = []

    def task(patch):
        calls.append(patch)
        return ee_backend.read(patch)

    with pytest.raises(PatchReadError, match=r"key\.json"):
        LocalRunner(retries=3, backoff=5.0, progress=False).map(task, patches(1))
    assert len(calls) == 1  # not asked again
    from stacube.sources.earthengine.client import initialize

    with pytest.raises(CatalogError, match=r"key\.json"):  # a sync still says CatalogError
        initialize("http://127.0.0.1:9", "p")


class HttpAnswer(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status_code = status


def ee_answering(status: int):
    """Earth Engine's error as its client raises it: while handling the HTTP client's."""
    def raised(ee):
        try:
            raise HttpAnswer(status)
        except HttpAnswer:
            raise ee.EEException(f"the service answered {status}")  # noqa: B904 - as ee.data does
    return raised


@pytest.mark.parametrize(("raised", "kind"), [
    (lambda ee: ee.EEException("Please authorize access to your Earth Engine account"), PermanentSourceError),
    (ee_answering(403), PermanentSourceError),
    (ee_answering(503), TransientSourceError),
    (lambda ee: TimeoutError("timed out"), TransientSourceError),
    (lambda ee: ConnectionResetError("reset by peer"), TransientSourceError),
])
def test_earth_engine_refusing_to_start_is_permanent_not_answering_is_transient(ee_backend, monkeypatch,
                                                                                 raised, kind):
    import ee

    monkeypatch.setenv("STACUBE_EE_TOKEN", "secret-token-123")

    def refuse(**_):
        raise raised(ee)  # (or raises itself)

    monkeypatch.setattr(ee, "Initialize", refuse)
    with pytest.raises(kind, match=re.escape("cannot start Earth Engine at http://127.0.0.1:9")) as failure:
        ee_backend.read(patches(1)[0])
    assert "secret-token-123" not in str(failure.value) and failure.value.__cause__ is None


def test_an_earth_engine_setting_that_is_no_number_fails_a_read_as_a_spec_error(ee_backend, monkeypatch):
    monkeypatch.setenv("STACUBE_EE_MAX_RETRIES", "lots")
    with pytest.raises(SpecError, match="STACUBE_EE_MAX_RETRIES='lots'"):
        ee_backend.read(patches(1)[0])


def test_an_earth_engine_source_refuses_a_resampling_it_would_not_apply_before_anything_is_read():
    from stacube import Variable
    from stacube.sources.earthengine.backend import EarthEngineBackend

    source = EarthEngineSource("X/Y", {"a": "B1", "b": "B2"})
    backend = EarthEngineBackend(source, {"a": Variable("float32"), "b": Variable("float32", resampling="bilinear")})
    with pytest.raises(SpecError, match="variable 'b' asks for 'bilinear' resampling, which an Earth Engine source"):
        backend.check_items([])
    EarthEngineBackend(source, {"a": Variable("float32"), "b": Variable("float32")}).check_items([])

"""UTM zones for a lon/lat extent, and the ready-made AlphaEarth spec built on them."""

from __future__ import annotations

import pytest

from stacube import CubeSpec, SpecError
from stacube.datasets import ALPHAEARTH_COLLECTION, alphaearth_spec
from stacube.zones import utm_zones


def _lonlat(geobox):
    return geobox.extent.to_crs("EPSG:4326").boundingbox


def test_a_bbox_over_two_utm_zones_gets_one_grid_in_each():
    west, east = utm_zones((11.0, 47.0, 13.5, 48.0), 10.0)
    assert (str(west.crs), str(east.crs)) == ("EPSG:32632", "EPSG:32633")
    assert _lonlat(west).left == pytest.approx(11.0, abs=0.05) and _lonlat(west).right == pytest.approx(12.0, abs=0.1)
    assert _lonlat(east).left == pytest.approx(12.0, abs=0.1) and _lonlat(east).right == pytest.approx(13.5, abs=0.05)
    assert all(g.resolution.x == 10.0 and g.transform.c % 10 == 0 and g.transform.f % 10 == 0 for g in (west, east))


def test_the_antimeridian_and_the_equator_split_zones():
    assert [str(g.crs) for g in utm_zones((179.5, 50.0, -179.5, 50.5), 10.0)] == ["EPSG:32660", "EPSG:32601"]
    assert [str(g.crs) for g in utm_zones((10.0, -1.0, 11.0, 1.0), 10.0)] == ["EPSG:32632", "EPSG:32732"]
    with pytest.raises(SpecError, match="85"):
        utm_zones((0.0, 80.0, 1.0, 85.0), 10.0)


def test_the_alphaearth_spec_has_64_float_bands_a_year_per_utm_zone():
    spec = alphaearth_spec((11.0, 47.0, 13.5, 48.0), project="my-project")
    assert list(spec.zones) == ["epsg32632", "epsg32633"]
    assert len(spec.variables) == 64 and spec.variables["a63"].dtype == "float32"
    assert spec.source.collection == ALPHAEARTH_COLLECTION and spec.source.bands["a00"] == "A00"
    assert [t.year for t in spec.time] == list(range(2017, 2025))
    assert CubeSpec.from_json(spec.to_json()).to_json() == spec.to_json()

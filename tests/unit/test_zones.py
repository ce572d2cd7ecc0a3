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
    assert [t.year for t in spec.time] == list(range(2017, 2026))  # 2025 published from 2026-01-29
    assert CubeSpec.from_json(spec.to_json()).to_json() == spec.to_json()


def test_zones_reach_past_their_meridians_as_far_as_mgrs_tiles_do():
    from stacube.zones import MGRS_REACH

    west, east = utm_zones((17.95, 46.95, 18.05, 47.05), 10.0, reach=MGRS_REACH)  # astride 18 E
    assert (str(west.crs), str(east.crs)) == ("EPSG:32633", "EPSG:32634")
    # both zones hold the whole bbox now: each keeps what its own granules hold past the meridian
    for zone in (west, east):
        assert _lonlat(zone).left == pytest.approx(17.95, abs=0.01) and _lonlat(zone).right == pytest.approx(18.05,
                                                                                                             abs=0.01)
    # a bbox just east of 18 E still gets zone 33N, whose granules reach 30-100 km into 34N
    near = utm_zones((18.3, 46.95, 18.4, 47.05), 10.0, reach=MGRS_REACH)
    assert [str(z.crs) for z in near] == ["EPSG:32633", "EPSG:32634"]
    far = utm_zones((19.5, 46.95, 19.6, 47.05), 10.0, reach=MGRS_REACH)  # ~115 km past 18 E at 47 N
    assert [str(z.crs) for z in far] == ["EPSG:32634"]
    assert [str(z.crs) for z in utm_zones((18.3, 46.95, 18.4, 47.05), 10.0)] == ["EPSG:32634"]  # no reach: as before


def test_zones_anchored_on_a_source_grid_put_their_pixel_edges_where_the_source_does():
    (zone,) = utm_zones((-102.5, 40.0, -102.4, 40.1), 30.0, anchor=(0.5, 0.5))  # Landsat: 15 m off multiples of 30
    assert zone.transform.c % 30 == 15 and zone.transform.f % 30 == 15
    with pytest.raises(SpecError, match="anchor"):
        utm_zones((-102.5, 40.0, -102.4, 40.1), 30.0, anchor=(1.5, 0))


def test_a_raster_is_on_a_zones_grid_when_their_pixel_edges_coincide():
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from stacube.alignment import on_grid

    zone = GeoBox((100, 100), Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_200_000.0), "EPSG:32633")
    assert on_grid(zone, Affine(20.0, 0.0, 499_960.0, 0.0, -20.0, 5_200_040.0))  # Sentinel-2's 20 m bands
    assert on_grid(zone, Affine(10.0, 0.0, 400_000.0, 0.0, -10.0, 5_100_000.0))
    coarse = GeoBox((100, 100), Affine(20.0, 0.0, 500_000.0, 0.0, -20.0, 5_200_000.0), "EPSG:32633")
    assert on_grid(coarse, Affine(10.0, 0.0, 499_990.0, 0.0, -10.0, 5_200_010.0))  # aggregated, not shifted
    assert not on_grid(zone, Affine(30.0, 0.0, 500_015.0, 0.0, -30.0, 5_200_015.0))  # Landsat's 15 m offset
    assert not on_grid(zone, Affine(10.0, 0.0, 500_005.0, 0.0, -10.0, 5_200_000.0))
    assert not on_grid(zone, Affine(10.0, 1.0, 500_000.0, 0.0, -10.0, 5_200_000.0))  # rotated


@pytest.mark.parametrize(("bbox", "neighbour"), [((179.5, 50.0, 179.9, 50.5), 32601),
                                                 ((-179.9, 50.0, -179.5, 50.5), 32660)])
def test_zones_reach_across_180_degrees_as_across_any_meridian(bbox, neighbour):
    from stacube.zones import MGRS_REACH

    mirrored = utm_zones((17.5, 50.0, 17.9, 50.5), 10.0, reach=MGRS_REACH)  # the same 0.4 degrees near 18 E
    zones = utm_zones(bbox, 10.0, reach=MGRS_REACH)
    assert neighbour in {z.crs.epsg for z in zones} and len(zones) == len(mirrored) == 2  # before: one zone
    assert sorted(z.shape.x for z in zones) == sorted(z.shape.x for z in mirrored)


def test_a_bbox_across_180_gives_each_zone_its_own_band_and_its_reach():
    from odc.geo.geom import point

    from stacube.zones import MGRS_REACH

    for zone in utm_zones((179.97, 51.98, -179.97, 52.01), 10.0, reach=MGRS_REACH):
        for lon in (179.975, -179.975):  # each side of 180: the zone's own band, and its neighbour's it reaches
            assert zone.extent.contains(point(lon, 51.995, "EPSG:4326").to_crs(zone.crs)), (zone.crs, lon)

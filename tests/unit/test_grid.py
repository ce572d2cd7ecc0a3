import pytest
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box

from stacube import ROIError
from stacube.grid import PatchIndex, ZoneGrid, patch_id, roi_geometry

# A continent-sized zone: 10 m pixels over 4,000 km (400,000 px per side, ~38,000 chunks of 2048).
BIG = GeoBox.from_bbox((-2_000_000, -2_000_000, 2_000_000, 2_000_000), "EPSG:3413", resolution=10)


def test_chunks_under_a_small_roi_are_found_without_enumerating_the_zone():
    grid = ZoneGrid("z", BIG, (2048, 2048))
    roi = box(100, 100, 30_000, 25_000, "EPSG:3413")
    chunks = list(grid.chunks_under(roi))
    # rows 197,500..199,990 -> chunk rows 96..97; cols 200,010..202,999 -> chunk cols 97..99
    assert sorted(chunks) == [(iy, ix) for iy in (96, 97) for ix in (97, 98, 99)]


def test_chunk_geoboxes_tile_the_zone_and_clip_at_its_edge():
    zone = GeoBox.from_bbox((0, 0, 1000, 700), "EPSG:32633", resolution=10)  # 70 x 100 px
    grid = ZoneGrid("z", zone, (32, 32))
    assert grid.chunk_counts == (3, 4)
    assert grid.chunk_geobox(2, 3).shape == (6, 4)
    assert grid.chunk_geobox(0, 0).transform == zone.transform


def test_roi_in_another_crs_finds_the_same_chunks():
    zone = GeoBox.from_bbox((500_000, 5_000_000, 520_000, 5_020_000), "EPSG:32633", resolution=10)
    grid = ZoneGrid("z", zone, (512, 512))
    roi = box(505_000, 5_005_000, 506_000, 5_006_000, "EPSG:32633")
    native = set(grid.chunks_under(roi))
    geographic = set(grid.chunks_under(roi.to_crs("EPSG:4326")))
    assert native == geographic == {(2, 0), (2, 1)}


def test_patch_ids_are_stable_and_readable():
    import pandas as pd

    assert patch_id("epsg3413", 3, 7) == "epsg3413/y3x7"
    assert patch_id("utm33", 0, 1, pd.Timestamp("2024-05-01")) == "utm33/20240501T000000/y0x1"
    p = PatchIndex("utm33", 0, 1, BIG[:10, :10], 4, (pd.Timestamp("2024-05-01"), pd.Timestamp("2024-05-02")))
    assert p.id == "utm33/20240501T000000/y0x1"


def test_roi_without_crs_is_refused():
    with pytest.raises(ROIError, match="no CRS"):
        roi_geometry(Geometry({"type": "Point", "coordinates": [0, 0]}).buffer(1))
    with pytest.raises(ROIError, match="GeoBox or Geometry"):
        roi_geometry((0, 0, 1, 1))


def test_a_point_or_line_roi_inside_a_zone_finds_its_chunk():
    from odc.geo.geom import line, point

    zone = GeoBox.from_bbox((0, 0, 1000, 1000), "EPSG:32633", resolution=10)
    grid = ZoneGrid("z", zone, (32, 32))
    assert list(grid.chunks_under(point(505, 505, "EPSG:32633"))) == [(1, 1)]
    assert grid.pixel_window(point(505, 505, "EPSG:32633")) == (slice(49, 50), slice(50, 51))
    assert sorted(grid.chunks_under(line([(5, 995), (400, 995)], "EPSG:32633"))) == [(0, 0), (0, 1)]
    assert list(grid.chunks_under(point(5000, 5000, "EPSG:32633"))) == []


def test_a_roi_sharing_only_an_edge_with_a_chunk_does_not_select_it():
    zone = GeoBox.from_bbox((0, 0, 640, 640), "EPSG:32633", resolution=10)
    grid = ZoneGrid("z", zone, (32, 32))
    assert list(grid.chunks_under(box(0, 320, 320, 640, "EPSG:32633"))) == [(0, 0)]


def test_earth_engine_requests_stay_within_bytes_and_side_limits():
    from stacube.sources.earthengine.backend import request_windows

    windows = request_windows((48, 128), 2, max_bytes=48 * 128 * 3 // 5)  # 2-byte band + 1 mask byte
    assert [w[0].start for w in windows] == [0, 9, 18, 27, 36, 45] and all(w[1] == slice(0, 128) for w in windows)
    assert all((w[0].stop - w[0].start) * 128 * 3 <= 48 * 128 * 3 // 5 for w in windows)
    big = request_windows((70000, 70000), 4, max_side=32768)  # float32: 5 bytes a pixel against 48 MB
    assert all(w[1].stop - w[1].start <= 32768 and (w[0].stop - w[0].start) * (w[1].stop - w[1].start) * 5
               <= 48 * 1024 * 1024 for w in big)
    assert sum((w[0].stop - w[0].start) * (w[1].stop - w[1].start) for w in big) == 70000 * 70000  # no overlap


def test_a_polar_cap_and_the_globe_plan_the_zone_parts_they_cover():
    """Lon/lat boxes larger than a projection's domain were 'outside every zone'."""
    import numpy as np
    from odc.geo.geom import box
    from pyproj import Transformer

    from stacube.datasets import arcticdem_spec, sentinel2_l2a_spec

    dem = arcticdem_spec(32, chunks=(8192, 8192))
    grid = ZoneGrid("epsg3413", dem.zones["epsg3413"], dem.chunks)
    cap = set(grid.chunks_under(box(-180, 60, 180, 90, "EPSG:4326")))
    to_lonlat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)
    rows, columns = grid.chunk_counts
    for iy in range(rows):
        for ix in range(columns):
            ring = np.asarray(grid.chunk_geobox(iy, ix).extent.geom.exterior.coords)
            lats = to_lonlat.transform(ring[:, 0], ring[:, 1])[1]
            if lats.min() > 60.01:
                assert (iy, ix) in cap, (iy, ix)  # wholly north of 60 N: planned
            elif lats.max() < 59.99:
                assert (iy, ix) not in cap, (iy, ix)  # wholly south: not
    assert 0 < len(cap) < rows * columns
    world = set(grid.chunks_under(box(-180, -90, 180, 90, "EPSG:4326")))
    assert len(world) == rows * columns
    s2 = sentinel2_l2a_spec((11.0, 47.0, 13.5, 48.0), "2024-06-01", "2024-06-02", api_url="http://127.0.0.1:9")
    for name, zone in s2.zones.items():
        utm = ZoneGrid(name, zone, s2.chunks)
        assert len(list(utm.chunks_under(box(-180, -90, 180, 90, "EPSG:4326")))) == np.prod(utm.chunk_counts)
        assert list(utm.chunks_under(box(-180, 60, 180, 90, "EPSG:4326"))) == []  # north of the zone: none


def _planned_exactly(grid: ZoneGrid, bbox: tuple[float, float, float, float]) -> None:
    """Every chunk wholly inside the lon/lat box is planned and none wholly outside it (sampled corners)."""
    import numpy as np
    from odc.geo.geom import box
    from pyproj import Transformer

    planned = set(grid.chunks_under(box(*bbox, "EPSG:4326")))
    to_lonlat = Transformer.from_crs(grid.geobox.crs.proj, "EPSG:4326", always_xy=True)
    west, south, east, north = bbox
    rows, columns = grid.chunk_counts
    inside_count = 0
    for iy in range(rows):
        for ix in range(columns):
            ring = np.asarray(grid.chunk_geobox(iy, ix).extent.geom.exterior.coords)
            lon, lat = to_lonlat.transform(ring[:, 0], ring[:, 1])
            inside = (lat > south + 0.01).all() and (lat < north - 0.01).all() and \
                (lon > west + 0.01).all() and (lon < east - 0.01).all()
            outside = (lat < south - 0.01).all() or (lat > north + 0.01).all()
            if inside:
                inside_count += 1
                assert (iy, ix) in planned, (bbox, iy, ix)
            elif outside:
                assert (iy, ix) not in planned, (bbox, iy, ix)
    assert inside_count > 0


def test_big_lon_lat_boxes_plan_every_chunk_they_hold_in_polar_zones():
    from odc.geo.geobox import GeoBox

    south = ZoneGrid("epsg3031", GeoBox.from_bbox((-3_000_000, -3_000_000, 3_000_000, 3_000_000), "EPSG:3031",
                                                  resolution=1000), (512, 512))
    _planned_exactly(south, (-180, -90, 180, -60))  # the southern cap
    north = ZoneGrid("epsg3413", GeoBox.from_bbox((-4000100, -3400100, 3400100, 4100100), "EPSG:3413",
                                                  resolution=32), (8192, 8192))
    _planned_exactly(north, (-170, 0, 170, 70))  # all longitudes but 20 degrees, up to 70 N
    _planned_exactly(north, (-180, 60, 180, 90))


def test_an_item_placed_on_the_globe_meets_every_chunk_of_a_utm_zone():
    """The footprint-repair fallback (neither geometry nor bbox usable): projected whole into UTM, the
    globe came out a sliver outside the zone and the Item met no patch."""
    import datetime

    import pystac
    import shapely

    from stacube.plan import _footprints_in
    from stacube.zones import utm_zones

    zone = utm_zones((14.0, 47.0, 16.0, 48.0), 10.0)[0]
    world = pystac.Item("placed", shapely.geometry.mapping(shapely.box(-180, -90, 180, 90)), [-180, -90, 180, 90],
                        datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC), {})
    [footprint] = _footprints_in(zone, [world])
    assert footprint.covers(zone.extent.geom.buffer(-1))


def test_a_negative_chunk_index_is_refused_not_read_from_the_end():
    """odc-geo's GeoboxTiles reads chunk -1 as the last one: a write there would land in the wrong chunk."""
    grid = ZoneGrid("z", GeoBox.from_bbox((0, 0, 1000, 700), "EPSG:32633", resolution=10), (32, 32))
    assert grid.chunk_slices(2, 3) == (slice(64, 70), slice(96, 100))  # an edge chunk is partial
    for iy, ix in ((-1, 0), (0, -1)):
        with pytest.raises(IndexError, match="never negative"):
            grid.chunk_slices(iy, ix)
        with pytest.raises(IndexError, match="never negative"):
            grid.chunk_geobox(iy, ix)
    assert list(grid.chunks_in((slice(31, 33), slice(0, 100)))) == [(iy, ix) for iy in (0, 1) for ix in range(4)]


def test_a_geometry_roi_tile_is_on_the_first_zone_it_meets_in_spec_order():
    from stacube.region import Region

    west = ZoneGrid("west", GeoBox.from_bbox((0, 0, 1000, 1000), "EPSG:32633", resolution=10), (32, 32))
    east = ZoneGrid("east", GeoBox.from_bbox((0, 0, 1000, 1000), "EPSG:32633", resolution=20), (32, 32))
    region = Region.of(box(100, 100, 300, 300, "EPSG:32633"))
    assert Region.of(region) is region
    assert region.tile_geobox([west, east]).resolution == west.geobox.resolution
    assert region.tile_geobox([east, west]).resolution == east.geobox.resolution
    geobox = west.geobox[10:20, 10:20]
    assert Region.of(geobox).tile_geobox([east, west]) is geobox  # a GeoBox ROI is its own Tile grid
    with pytest.raises(ROIError, match="meets none of the zones"):
        Region.of(box(5000, 5000, 6000, 6000, "EPSG:32633")).tile_geobox([west, east])


def _south_edge_in(crs, bbox, n=3001):
    """Points along a lon/lat box's south edge (a parallel), projected into ``crs``: the ground truth."""
    import numpy as np
    from pyproj import Transformer

    lon = np.linspace(bbox[0], bbox[2], n)
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, np.full(n, bbox[1] + 1e-7))


def test_a_wide_lon_lat_box_plans_and_covers_the_chunks_under_its_curved_edge():
    import numpy as np

    from stacube.region import Region

    # In UTM a parallel is a curve: a 3 degree box at 60 N bulges 950 m south of its corners at 15 E
    grid = ZoneGrid("utm33", GeoBox.from_bbox((300_000, 6_500_000, 700_000, 6_900_000), "EPSG:32633",
                                              resolution=10), (1024, 1024))
    bbox = (13.5, 60.0, 16.5, 60.5)
    x, y = _south_edge_in("EPSG:32633", bbox)
    col, row = ~grid.geobox.transform * (x, y)
    needed = {(int(r // 1024), int(c // 1024)) for r, c in zip(row, col, strict=True)}
    planned = set(grid.chunks_under(box(*bbox, "EPSG:4326")))
    assert needed <= planned  # before: 14 chunks under the bulge were never planned
    tile = Region.of(box(*bbox, "EPSG:4326")).tile_geobox([grid])
    assert tile.extent.boundingbox.bottom <= float(np.min(y))  # before: 94 rows of the ROI left out


def test_a_geometry_roi_tile_covers_the_whole_roi_where_it_reaches_past_its_first_zone():
    from stacube.region import Region
    from stacube.zones import utm_zones

    zones = utm_zones((11.0, 46.5, 13.0, 47.5), 10.0)
    grids = [ZoneGrid(f"epsg{geobox.crs.epsg}", geobox, (256, 256)) for geobox in zones]
    roi = box(11.995, 47.0, 12.2, 47.1, "EPSG:4326")  # 15 km wide; its west end is in 32N, spec's first zone
    tile = Region.of(roi).tile_geobox(grids)
    local = roi.to_crs(tile.crs, resolution=0.001)
    assert tile.crs == zones[0].crs
    assert local.geom.difference(tile.extent.geom).area == 0  # before: 17.5% of the ROI was in the Tile
    assert (tile.transform.c - zones[0].transform.c) % 10 == 0  # on that zone's pixel grid


def test_a_projected_roi_across_180_or_over_a_pole_plans_its_own_chunks_of_a_lon_lat_zone():
    from pyproj import Transformer

    world = ZoneGrid("world", GeoBox.from_bbox((-180, -90, 180, 90), "EPSG:4326", resolution=0.01), (1000, 1000))
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True).transform(180, 71.2)
    wrangel = box(x - 50_000, y - 50_000, x + 50_000, y + 50_000, "EPSG:3413")  # 100 km across 180 degrees
    # before: every column of the latitude band (the shape went the long way round)
    assert {ix for _, ix in world.chunks_under(wrangel)} == {0, 35}
    pole = box(-1_000_000, -1_000_000, 1_000_000, 1_000_000, "EPSG:3413")
    assert {(iy, ix) for iy, ix in world.chunks_under(pole)} >= {(0, ix) for ix in range(36)}  # before: none

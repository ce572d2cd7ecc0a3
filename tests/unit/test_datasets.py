"""Ready-made specs name their real sources and grids."""

import pytest

from stacube.datasets import PGC_STAC, arcticdem_grid, arcticdem_spec
from stacube.errors import SpecError


@pytest.mark.parametrize("resolution", [2, 10, 32])
def test_arcticdem_reads_pgc_mosaics_on_a_grid_of_whole_pixels(resolution):
    spec = arcticdem_spec(resolution)
    assert spec.source.api_url == PGC_STAC == "https://stac.pgc.umn.edu/api/v1/"
    assert spec.source.collection == f"arcticdem-mosaics-v4.1-{resolution}m"
    grid = spec.zones["epsg3413"]
    assert grid.crs.epsg == 3413 and grid.resolution.x == resolution
    assert grid.transform.c % resolution == 0 and grid.transform.f % resolution == 0  # edges on whole pixels
    # PGC's published tile index: x -4,000,100 .. 3,400,100, y -3,400,100 .. 4,100,100 (100 m tile buffer)
    bounds = grid.extent.boundingbox
    assert bounds.left <= -4_000_100 and bounds.bottom <= -3_400_100
    assert bounds.right >= 3_400_100 and bounds.top >= 4_100_100
    assert bounds.right - bounds.left < 7_400_200 + 2 * resolution  # snapped outward by less than a pixel


# Tiles at the published grid's edges (PGC tile naming: row, column from (-4e6, -4e6), 100 km, 100 m buffer)
EDGE_PLACES = {
    "Cape Farewell, Greenland (tile 07_41)": (-43.91, 59.78),
    "Kodiak Island, Alaska": (-153.4, 57.5),
    "Cape Lopatka, Kamchatka (tile 81_24)": (156.66, 50.87),
}


@pytest.mark.parametrize("place", EDGE_PLACES)
def test_places_at_the_edge_of_the_published_tiles_are_inside_the_arcticdem_zone(place):
    from odc.geo.geom import point

    lon, lat = EDGE_PLACES[place]
    grid = arcticdem_grid(32)
    assert grid.extent.contains(point(lon, lat, "EPSG:4326").to_crs("EPSG:3413")), place


def test_a_32m_tile_file_lies_on_the_32m_grid():
    """pgcdemtools snaps the 32 m files onto multiples of 32 (tile 58_05 starts at x -3,600,096)."""
    from affine import Affine

    from stacube.alignment import on_grid

    assert on_grid(arcticdem_grid(32), Affine(32.0, 0.0, -3_600_096.0, 0.0, -32.0, 1_800_096.0))
    assert on_grid(arcticdem_grid(10), Affine(10.0, 0.0, -3_600_100.0, 0.0, -10.0, 1_800_100.0))
    assert not on_grid(arcticdem_grid(32), Affine(32.0, 0.0, -3_600_100.0, 0.0, -32.0, 1_800_100.0))


def test_arcticdem_refuses_a_resolution_pgc_does_not_publish():
    with pytest.raises(ValueError, match=r"not 5\b"):
        arcticdem_grid(5)


def test_presets_take_resolution_collection_asset_keys_and_resampling():
    from stacube.datasets import alphaearth_spec, sentinel2_l2a_spec, tctrend_spec

    s2 = sentinel2_l2a_spec((11.9, 46.9, 12.1, 47.1), "2024-06-01", "2024-06-02", resolution=20.0,
                            collection="sentinel-2-c1-l2a", assets={"B04": "red-jp2"}, resampling={"B04": "average"},
                            bands=("B04", "B11", "SCL"))
    assert {z.resolution.x for z in s2.zones.values()} == {20.0}
    assert s2.source.collection == "sentinel-2-c1-l2a" and s2.source.radiometry == "sentinel-2-baseline"
    assert s2.source.assets == {"B04": "red-jp2", "B11": "swir16", "SCL": "scl"}
    assert s2.variables["B04"].resampling == "average" and s2.variables["B11"].resampling == "nearest"  # 20 m native
    assert sentinel2_l2a_spec((11.9, 46.9, 12.1, 47.1), "2024-06-01", "2024-06-02").source.radiometry == \
        "earth-search-l2a"
    dem = arcticdem_spec(10, collection="mirror", assets={"dem": "elevation"}, resampling={"dem": "bilinear"})
    assert dem.source.assets["dem"] == "elevation" and dem.variables["dem"].resampling == "bilinear"
    embeddings = alphaearth_spec((11.0, 47.0, 11.5, 47.5), resolution=20.0, bands=("A00", "A01"), collection="mine")
    assert list(embeddings.variables) == ["a00", "a01"] and embeddings.variables["a00"].resampling == "nearest"
    assert embeddings.source.collection == "mine" and {z.resolution.x for z in embeddings.zones.values()} == {20.0}
    # Earth Engine's pixel requests pick pixels by position: a blend would be ignored, so it is refused
    with pytest.raises(SpecError, match="'bilinear' resampling, which an Earth Engine source does not apply"):
        alphaearth_spec((11.0, 47.0, 11.5, 47.5), resampling="bilinear")
    with pytest.raises(SpecError, match="'average' resampling"):
        tctrend_spec(resampling="average")

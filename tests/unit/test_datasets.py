"""Ready-made specs name their real sources and grids."""

import pytest

from stacube.datasets import PGC_STAC, arcticdem_grid, arcticdem_spec


@pytest.mark.parametrize("resolution", [2, 10, 32])
def test_arcticdem_reads_pgc_mosaics_on_a_grid_of_whole_pixels(resolution):
    spec = arcticdem_spec(resolution)
    assert spec.source.api_url == PGC_STAC == "https://stac.pgc.umn.edu/api/v1/"
    assert spec.source.collection == f"arcticdem-mosaics-v4.1-{resolution}m"
    grid = spec.zones["epsg3413"]
    assert grid.crs.epsg == 3413 and grid.resolution.x == resolution
    assert grid.transform.c % resolution == 0 and grid.transform.f % resolution == 0  # edges on whole pixels
    assert grid.extent.boundingbox.left <= -3314693.24 and grid.extent.boundingbox.right >= 3314693.24


def test_arcticdem_refuses_a_resolution_pgc_does_not_publish():
    with pytest.raises(ValueError, match=r"not 5\b"):
        arcticdem_grid(5)

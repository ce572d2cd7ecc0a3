"""A zone warped onto a Tile off its grid keeps every value a nearest pick takes, and its nodata: 64-bit integers
beyond 2**53 (GDAL warps through float64) and a float nodata a float32 cannot hold exactly (-9999.9)."""

from __future__ import annotations

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from stacube import Variable
from stacube.errors import SpecError
from stacube.read import reproject_values
from stacube.variables import valid_mask

ZONE = GeoBox.from_bbox((700_000, 5_200_000, 706_000, 5_206_000), "EPSG:32632", resolution=30)  # 200 x 200 px
LONLAT = GeoBox.from_bbox((11.62, 46.93, 11.69, 46.98), "EPSG:4326", resolution=0.0004)  # inside the zone, and past


@pytest.mark.parametrize(("dtype", "base"), [("int64", 2**53 + 1), ("uint64", 2**63 + 12345), ("int64", -(2**62) - 7)])
def test_a_nearest_warp_of_64_bit_integers_keeps_every_value(dtype, base):
    values = (np.arange(200 * 200, dtype=dtype).reshape(200, 200) * 3 + np.array(base, dtype=dtype))
    nodata = np.iinfo(dtype).max
    values[:20] = nodata  # a nodata band along the top
    variable = Variable(dtype, nodata=nodata)
    out = reproject_values(values, ZONE, LONLAT, variable)
    assert out.dtype == values.dtype
    valid = valid_mask(out, variable)
    assert 0 < valid.sum() < out.size  # some of the Tile lies past the zone, some over its nodata band
    assert np.isin(out[valid], values).all()  # every value taken is a stored one, bit for bit
    # each one is the pixel GDAL's nearest pick chooses: the same pick over a small-number copy
    small = reproject_values(((values - np.array(base, dtype=dtype)) // 3).astype("int32"), ZONE, LONLAT,
                             Variable("int32", nodata=-1))
    small[~valid] = -1
    np.testing.assert_array_equal((out[valid] - np.array(base, dtype=dtype)) // 3, small[valid])


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "average"])
@pytest.mark.parametrize("nodata", [-9999.9, -9999.0, 3.4e38])
def test_a_float_nodata_is_nodata_after_any_warp_even_one_a_float32_cannot_hold(resampling, nodata):
    values = np.full((200, 200), 100.0, "float32")
    values[:, 100:] = nodata  # the east half is nodata
    variable = Variable("float32", nodata=nodata, resampling=resampling)
    out = reproject_values(values, ZONE, LONLAT, variable)
    valid = valid_mask(out, variable)
    assert valid.any() and (~valid).any()
    np.testing.assert_array_equal(out[valid], np.float32(100.0))  # never a blend with nodata
    assert (out[~valid] == np.float32(nodata)).all()


def test_blending_64_bit_integers_beyond_2_53_is_an_error_naming_the_variable_and_below_it_matches_gdal():
    big = np.full((200, 200), 2**53 + 1, "int64")
    with pytest.raises(SpecError, match=r"'count'.*int64.*2\*\*53.*'bilinear'.*nearest"):
        reproject_values(big, ZONE, LONLAT, Variable("int64", nodata=-1, resampling="bilinear"), "count")
    small = np.add.outer(np.arange(200), np.arange(200)).astype("int64") * 1000
    small[:20] = -1
    blended = reproject_values(small, ZONE, LONLAT, Variable("int64", nodata=-1, resampling="bilinear"), "count")
    gdal = reproject_values(small.astype("int32"), ZONE, LONLAT, Variable("int32", nodata=-1, resampling="bilinear"))
    assert ((blended == -1) == (gdal == -1)).all()
    assert np.abs(blended - gdal).max() <= 1  # the same blend, rounded to a whole number either way

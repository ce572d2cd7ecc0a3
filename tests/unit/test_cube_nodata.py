"""Source nodata (declared or NaN) becomes the cube variable's nodata, in the cube's dtype."""

import numpy as np
import pytest

from stacube.sources.stac.backend import to_cube_nodata

NAN = float("nan")


@pytest.mark.parametrize(
    ("source", "source_nodata", "dtype", "nodata", "expected"),
    [
        ([1.5, -9999.0, NAN], -9999, "float32", NAN, [1.5, NAN, NAN]),
        ([1.5, -9999.0, NAN], None, "float32", NAN, [1.5, -9999.0, NAN]),
        ([1.5, -9999.0, NAN], NAN, "float32", -1.0, [1.5, -9999.0, -1.0]),
        ([1.5, -9999.0, NAN], -9999, "float64", -1.0, [1.5, -1.0, -1.0]),
        ([7, 0, 255], 0, "uint8", 255, [7, 255, 255]),
        ([7.0, NAN, 3.0], None, "int16", -1, [7, -1, 3]),
        ([1, 0, 255], 255, "bool", False, [True, False, False]),
    ],
)
def test_source_nodata_becomes_the_cube_nodata(source, source_nodata, dtype, nodata, expected):
    kind = "float32" if any(isinstance(v, float) for v in source) else "uint8"
    with np.errstate(invalid="ignore"):  # NaN cast to int before it is replaced
        out = to_cube_nodata(np.array(source, dtype=kind), source_nodata, np.dtype(dtype), nodata)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, np.array(expected, dtype=dtype))

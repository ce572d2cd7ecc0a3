"""Per-Item radiometry: each Item's numbers brought into the variable's convention, from its own metadata."""

import numpy as np
import pystac
import pytest

from stacube.radiometry import (
    IDENTITY,
    Convention,
    RadiometryError,
    check_precision,
    convert,
    declared,
    item_convention,
)

S2 = Convention(0.0001, -0.1)


def _item(baseline=None, scale=None, offset=None, key="red", bands_key="raster:bands", eo_name=None):
    band = {k: v for k, v in (("scale", scale), ("offset", offset), ("nodata", 0), ("data_type", "uint16"))
            if v is not None}
    item = pystac.Item("S2B_33TYN_20220302_0_L2A", None, None, pystac.utils.str_to_datetime("2022-03-02T10:00:00Z"),
                       {} if baseline is None else {"s2:processing_baseline": baseline})
    extra = {bands_key: [band]}
    if eo_name:
        extra["eo:bands"] = [{"name": eo_name}]
    item.add_asset(key, pystac.Asset("http://127.0.0.1/x.tif", extra_fields=extra))
    return item


@pytest.mark.parametrize(("fields", "expected"), [
    ({"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}, Convention(0.0001, -0.1)),
    ({"bands": [{"scale": 2.75e-05, "offset": -0.2}]}, Convention(2.75e-05, -0.2)),  # STAC 1.1
    ({"raster:bands": [{"nodata": 0}]}, IDENTITY),  # the raster extension's defaults
    ({}, IDENTITY),
    ({"raster:scale": 0.5}, Convention(0.5, 0.0)),
])
def test_an_asset_declares_its_convention(fields, expected):
    assert declared(pystac.Asset("x", extra_fields=fields)) == expected


@pytest.mark.parametrize(("baseline", "offset"), [("02.12", 0.0), ("03.01", 0.0), ("04.00", -0.1), ("05.10", -0.1),
                                                  ("5.9", -0.1)])
def test_the_sentinel2_policy_decides_from_the_processing_baseline_not_the_declared_offset(baseline, offset):
    # declared offset 0 whatever the baseline: the baseline is what the pixels were made with
    item = _item(baseline, scale=0.0001, offset=0.0)
    assert item_convention(item, "red", "sentinel-2-baseline", S2) == Convention(0.0001, offset)
    assert item_convention(item, "red", "raster:bands", S2) == Convention(0.0001, 0.0)
    assert item_convention(item, "red", "as-cube", S2) == S2


def test_the_sentinel2_policy_knows_reflectance_bands_by_key_or_band_name_and_leaves_the_rest_declared():
    assert item_convention(_item("05.10", key="B04"), "B04", "sentinel-2-baseline", S2) == S2  # Planetary Computer
    assert item_convention(_item("05.10", key="x", eo_name="B08"), "x", "sentinel-2-baseline", S2) == S2
    assert item_convention(_item("05.10", key="scl"), "scl", "sentinel-2-baseline", IDENTITY) == IDENTITY
    with pytest.raises(RadiometryError, match=r"S2B_33TYN_20220302_0_L2A.*s2:processing_baseline"):
        item_convention(_item(None), "red", "sentinel-2-baseline", S2)


def test_old_baseline_numbers_gain_the_offset_and_mean_the_same_reflectance():
    dn = np.array([0, 1, 1000, 3000, 64535, 65000], dtype="uint16")
    valid = dn != 0
    stored, clipped = convert(dn, valid, Convention(0.0001, 0.0), S2, np.dtype("uint16"), 0)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, [0, 1001, 2000, 4000, 65535, 65535])
    np.testing.assert_allclose(stored[1:5] * 0.0001 - 0.1, dn[1:5] * 0.0001, atol=1e-12)
    np.testing.assert_array_equal(clipped, [False, False, False, False, False, True])  # 66000 does not fit


def test_values_pushed_below_the_range_are_clipped_to_the_lowest_that_is_not_nodata():
    dn = np.array([0, 500, 999, 1000, 1001], dtype="uint16")  # new baseline: DN < 1000 is negative reflectance
    stored, clipped = convert(dn, dn != 0, S2, Convention(0.0001, 0.0), np.dtype("uint16"), 0)
    np.testing.assert_array_equal(stored, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(clipped, [False, True, True, True, False])  # 1000 would land on nodata 0


def test_a_float_variable_gets_physical_values_and_nodata_stays_nodata():
    dn = np.array([0, 1000, 3000], dtype="uint16")
    stored, clipped = convert(dn, dn != 0, S2, IDENTITY, np.dtype("float32"), float("nan"))
    np.testing.assert_allclose(stored, [np.nan, 0.0, 0.2], atol=1e-7)
    assert clipped is None


def test_a_conversion_that_would_round_values_away_is_refused_naming_the_item():
    item = _item("05.10", scale=0.0001, offset=-0.1)
    with pytest.raises(RadiometryError, match=r"S2B_33TYN_20220302_0_L2A.*'red'.*scale_factor=0.0001"):
        check_precision(item, "red", "B04", S2, IDENTITY, np.dtype("uint16"))
    check_precision(item, "red", "B04", S2, IDENTITY, np.dtype("float32"))  # floats keep it
    check_precision(item, "red", "B04", Convention(0.0002, 0.0), S2, np.dtype("uint16"))  # finer cube steps: fine

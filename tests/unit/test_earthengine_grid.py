"""Earth Engine's data types and grids as the service writes them (recorded shapes under tests/data/earthengine)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox

from stacube.errors import CatalogError
from stacube.sources.earthengine.catalog import crs_of_grid, geobox_from_grid, grid_from_geobox, numpy_dtype

DATA = Path(__file__).parent.parent / "data" / "earthengine"
GDAL_TYPES = {"Byte": "uint8", "Int8": "int8", "UInt16": "uint16", "Int16": "int16", "UInt32": "uint32",
              "Int32": "int32"}


def test_an_unsigned_range_without_min_is_unsigned():
    asset = json.loads((DATA / "gdal_eedai_assets_get_handwritten.json").read_text())
    assert {band["id"]: numpy_dtype(band["dataType"]) for band in asset["bands"]} == {
        "B1": "uint16", "B2": "uint16", "B9": "uint16"}


def test_the_band_types_gdal_read_from_the_live_service_are_ours_too():
    """MYD09GA's bands as GDAL read them; each range written as protobuf JSON writes it (zero fields left out)."""
    recorded = json.loads((DATA / "modis_myd09ga_gdal_real_service.json").read_text())["band_types"]
    for band, gdal_type in recorded.items():
        info = np.iinfo(GDAL_TYPES[gdal_type])
        written = {k: int(v) for k, v in (("min", info.min), ("max", info.max)) if v}
        assert numpy_dtype({"precision": "INT", "range": written}) == GDAL_TYPES[gdal_type], band


def test_integer_ranges_and_floats():
    assert numpy_dtype({"precision": "INT", "range": {"min": -1, "max": 1}}) == "int8"
    assert numpy_dtype({"precision": "INT", "range": {"max": 70000}}) == "uint32"
    assert numpy_dtype({"precision": "INT", "range": {"min": -40000.0, "max": 10}}) == "int32"
    assert numpy_dtype({"precision": "INT", "range": {"min": -1, "max": 2**32}}) == "int64"
    assert numpy_dtype({"precision": "INT", "range": {}}) == "uint8"  # [0, 0]: both fields were 0
    assert numpy_dtype({"precision": "INT"}) == "int32"  # no range at all: Earth Engine's default Int
    assert numpy_dtype({"precision": "FLOAT"}) == "float32" and numpy_dtype({}) == "float32"
    assert numpy_dtype({"precision": "DOUBLE"}) == "float64"


def test_a_crs_with_an_epsg_code_is_sent_as_a_code_and_any_other_as_wkt():
    utm = GeoBox.from_bbox((500000, 5190000, 510000, 5200000), "EPSG:32633", resolution=10)
    grid = grid_from_geobox(utm)
    assert grid["crsCode"] == "EPSG:32633" and "crsWkt" not in grid
    assert geobox_from_grid(grid) == utm
    sinusoidal = GeoBox.from_bbox((0, 0, 9266.25, 9266.25), "+proj=sinu +R=6371007.181 +units=m", resolution=926.625)
    grid = grid_from_geobox(sinusoidal)
    assert "crsCode" not in grid and grid["crsWkt"].startswith("PROJCS[")  # never a PROJ string as a code
    back = geobox_from_grid(grid)
    assert back.shape == sinusoidal.shape and back.transform == sinusoidal.transform
    assert back.crs.to_wkt() == CRS(grid["crsWkt"]).to_wkt() and back.crs == sinusoidal.crs


def test_a_grid_named_by_wkt_as_gdal_read_modis_from_the_service():
    recorded = json.loads((DATA / "modis_myd09ga_gdal_real_service.json").read_text())
    x0, a, _, y0, _, e = recorded["geoTransform"]  # GDAL order
    width, height = recorded["size"]
    grid = {"crsWkt": recorded["wkt"], "dimensions": {"width": width, "height": height},
            "affineTransform": {"scaleX": a, "translateX": x0, "scaleY": e, "translateY": y0}}  # zero shears left out
    box = geobox_from_grid(grid)
    assert box.shape.yx == (21600, 43200) and box.crs.epsg is None
    assert box.transform.c == -20015109.354 and box.transform.e == -926.625433055 and box.transform.b == 0


def test_a_code_proj_does_not_know_is_read_from_its_wkt_or_refused_by_name():
    wkt = json.loads((DATA / "modis_myd09ga_gdal_real_service.json").read_text())["wkt"]
    dims = {"dimensions": {"width": 2, "height": 2}, "affineTransform": {"scaleX": 1, "scaleY": -1}}
    assert crs_of_grid({"crsCode": "SR-ORG:6974", "crsWkt": wkt}) == CRS(wkt)
    modis = crs_of_grid({"crsCode": "SR-ORG:6974"})  # MODIS sinusoidal, on its sphere
    assert modis.proj.to_dict()["proj"] == "sinu" and modis.proj.to_dict()["R"] == 6371007.181
    with pytest.raises(CatalogError, match=r"'SR-ORG:1'.*PROJ cannot read.*no crsWkt"):
        geobox_from_grid({"crsCode": "SR-ORG:1", **dims})
    with pytest.raises(CatalogError, match="neither crsCode nor crsWkt"):
        geobox_from_grid(dims)


def test_the_emulator_answers_with_the_services_own_error_texts():
    """The loopback emulator's refusals read as the live service's (pasted in public issues)."""
    import inspect

    import stacube.testing.earthengine as emulator

    recorded = (DATA / "service_errors.txt").read_text()
    source = inspect.getsource(emulator)
    assert re.search(r"Total request size \(\d+ bytes\) must be less than or equal to 50331648 bytes\.", recorded)
    assert "Total request size ({size} bytes) must be less than or equal to" in source
    assert emulator.MAX_REQUEST_BYTES == 50331648
    assert re.search(r"Pixel grid dimensions \(\d+x\d+\) must be less than or equal to 32768\.", recorded)
    assert "Pixel grid dimensions ({dst.shape.x}x{dst.shape.y}) must be less than or equal to" in source
    assert "Invalid JSON payload received. Unexpected token." in recorded
    with pytest.raises(ValueError, match=r"^Invalid JSON payload received\. Unexpected token\."):
        json.loads('{"constantValue": NaN}', parse_constant=emulator._no_constant)
    assert "not found (does not exist or caller does not have access)" in recorded

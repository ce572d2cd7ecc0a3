import math

import numpy as np
import pandas as pd
import pytest
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, SpecError, StacSource, Variable

ZONE = GeoBox.from_bbox((0, 0, 10_000, 10_000), "EPSG:32633", resolution=10)


def spec(**overrides):
    args = dict(
        name="dem",
        zones=[ZONE],
        chunks=(256, 256),
        variables={"dem": Variable("float32", units="m"), "mask": Variable("uint8", nodata=0)},
        source=StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"dem": "dem", "mask": "datamask"}),
    )
    args.update(overrides)
    return CubeSpec(**args)


def test_spec_round_trips_through_json():
    original = spec(time=pd.date_range("2024-01-01", periods=10, freq="D"))
    again = CubeSpec.from_json(original.to_json())
    assert again.to_json() == original.to_json()
    assert list(again.zones) == ["epsg32633"]
    assert again.zones["epsg32633"] == ZONE
    assert again.time.equals(original.time) and again.time.freqstr == "D"
    assert again.source.publication_lag == "3D" and again.source.lag == pd.Timedelta(days=3)
    assert math.isnan(again.variables["dem"].nodata)
    assert again.variables["mask"].nodata == 0 and again.variables["mask"].dtype == "uint8"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "int16"}, "needs an explicit nodata"),
        ({"dtype": "uint8", "nodata": 300}, "outside the range"),
        ({"dtype": "int32", "nodata": float("nan")}, "does not fit"),
        ({"dtype": "complex64"}, "not a numeric"),
        ({"dtype": "float32", "resampling": "fancy"}, "unknown resampling"),
        ({"dtype": "no-such-type"}, "unknown dtype"),
    ],
)
def test_variable_rejects_bad_values(kwargs, message):
    with pytest.raises(SpecError, match=message):
        Variable(**kwargs)


def test_bool_variable_defaults_to_false_nodata():
    assert Variable("bool").nodata is False


def test_source_must_cover_every_variable():
    with pytest.raises(SpecError, match=r"variables without a source asset \['mask'\]"):
        spec(source=StacSource(api_url="http://x", collection="c", assets={"dem": "dem"}))


def test_names_with_path_separators_are_rejected():
    with pytest.raises(SpecError, match="not allowed"):
        spec(name="../evil")
    with pytest.raises(SpecError, match="not allowed"):
        spec(zones={"a/b": ZONE})


def test_irregular_time_axis_is_rejected():
    with pytest.raises(SpecError, match="regular"):
        spec(time=pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-05"]))


def test_chunks_must_be_two_sizes():
    with pytest.raises(SpecError, match="chunks"):
        spec(chunks=(8, 8))


def test_zone_without_crs_is_rejected():
    with pytest.raises(SpecError, match="no CRS"):
        spec(zones=[GeoBox((10, 10), ZONE.transform, None)])


def test_integer_nodata_keeps_integer_type():
    assert Variable("int16", nodata=-32768.0).nodata == -32768
    assert isinstance(Variable("int16", nodata=-32768.0).nodata, int)
    assert np.dtype(Variable("bool").dtype) == np.dtype(bool)


def test_an_earth_engine_source_round_trips_and_names_bad_values():
    from stacube import EarthEngineSource, SpecError

    source = EarthEngineSource("GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL", {"a00": "A00"}, project="my-project")
    assert EarthEngineSource.from_json(source.to_json()) == source
    assert source.assets == {"a00": "A00"} and source.kind == "earthengine"
    with pytest.raises(SpecError, match="max_concurrency 41"):
        EarthEngineSource("X/Y", {"a": "b"}, max_concurrency=41)
    with pytest.raises(SpecError, match="'soon'"):
        EarthEngineSource("X/Y", {"a": "b"}, publication_lag="soon")

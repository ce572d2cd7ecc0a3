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


def test_a_variable_declares_its_convention_and_keeps_it_through_json():
    variable = Variable("uint16", nodata=0, units="1", scale_factor=0.0001, add_offset=-0.1)
    again = Variable.from_json(variable.to_json())
    assert (again.scale_factor, again.add_offset) == (0.0001, -0.1) and again.scaled
    assert not Variable("float32").scaled and Variable("float32").convention.scale == 1.0
    for bad in ({"scale_factor": 0}, {"scale_factor": float("inf")}, {"scale_factor": "x"},
                {"scale_factor": None, "add_offset": 1.0}):
        with pytest.raises(SpecError, match="scale_factor"):
            Variable("uint16", nodata=0, **bad)
    with pytest.raises(SpecError, match="boolean"):
        Variable("bool", scale_factor=2.0)


def test_a_cube_made_before_conventions_reads_as_stored_as_read():
    legacy = spec().to_json()
    legacy["spec_version"] = 1
    for variable in legacy["variables"].values():
        del variable["scale_factor"], variable["add_offset"]
    for key in ("radiometry", "duplicates", "gdal_options", "signer"):
        del legacy["source"][key]
    old = CubeSpec.from_json(legacy)
    assert old.variables["dem"].convention is None and old.source.radiometry == "raster:bands"
    assert old.to_json()["variables"]["dem"]["scale_factor"] is None  # stays "as read" when saved again
    newer = spec().to_json() | {"spec_version": 99}
    with pytest.raises(SpecError, match="newer stacube"):
        CubeSpec.from_json(newer)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"radiometry": "guess"}, "unknown radiometry policy 'guess'"),
    ({"duplicates": "oldest"}, "unknown duplicate rule 'oldest'"),
    ({"gdal_options": {"AWS_SECRET_ACCESS_KEY": "s3cr3t"}}, "'AWS_SECRET_ACCESS_KEY' would store a credential"),
    ({"gdal_options": {"GDAL_HTTP_HEADERS": "Authorization: x"}}, "'GDAL_HTTP_HEADERS' would store a credential"),
    ({"gdal_options": {"aws nope": "1"}}, "not a GDAL configuration option"),
    ({"signer": "not a function"}, "neither one of"),
])
def test_a_source_refuses_unknown_rules_and_credentials(kwargs, message):
    with pytest.raises(SpecError, match=message) as caught:
        StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"a": "a"}, **kwargs)
    assert "s3cr3t" not in str(caught.value)


def test_source_options_round_trip():
    source = StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"a": "a"},
                        radiometry="sentinel-2-baseline", duplicates="newest-processing",
                        gdal_options={"AWS_NO_SIGN_REQUEST": True, "AWS_REQUEST_PAYER": "requester"},
                        signer="planetary-computer")
    again = StacSource.from_json(source.to_json())
    assert again == source and again.gdal_options == {"AWS_NO_SIGN_REQUEST": "YES", "AWS_REQUEST_PAYER": "requester"}

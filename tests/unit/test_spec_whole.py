"""A spec is checked whole before anything is written.

Each row is a spec that used to pass and then broke ``Cube.create`` (a repository left behind that a
retry could not get past) or a later step (a COG export that failed half-written). Now each is a
SpecError naming the value as the user gave it, raised before the cube's folder is touched; the
same holds for the spec read back from JSON (a file given to ``stacube cube create --spec``, or a
cube's own attributes).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox

from stacube import Cube, CubeSpec, SpecError, StacSource, Variable
from stacube.layout import create_layout
from stacube.spec import MAX_AXIS_LENGTH, RESERVED_NAMES

ZONE = GeoBox.from_bbox((0, 0, 10_000, 10_000), "EPSG:32633", resolution=10)
LONLAT = GeoBox.from_bbox((10, 50, 11, 51), "EPSG:4326", resolution=0.01)


def source(*names: str) -> StacSource:
    return StacSource(api_url="http://127.0.0.1:1", collection="c", assets={n: n for n in names})


def spec(**overrides) -> CubeSpec:
    variables = overrides.pop("variables", {"dem": Variable("float32")})
    args = dict(name="dem", zones=[ZONE], chunks=(256, 256), variables=variables, source=source(*variables))
    args.update(overrides)
    return CubeSpec(**args)


def nan_transform(geobox: GeoBox) -> GeoBox:
    t = geobox.transform
    return GeoBox(geobox.shape, Affine(t.a, t.b, math.nan, t.d, t.e, t.f), geobox.crs)


# (label, the bad spec, the text its error must hold: the bad value as given)
BAD_SPECS = [
    ("variable named x", lambda: spec(variables={"x": Variable("float32")}), "'x'"),
    ("variable named y", lambda: spec(variables={"y": Variable("float32")}), "'y'"),
    ("variable named time", lambda: spec(variables={"time": Variable("float32")}), "'time'"),
    ("variable named filled", lambda: spec(variables={"filled": Variable("float32")}), "'filled'"),
    ("variable named spatial_ref", lambda: spec(variables={"spatial_ref": Variable("float32")}), "'spatial_ref'"),
    ("variable named latitude", lambda: spec(zones=[LONLAT], variables={"latitude": Variable("float32")}),
     "'latitude'"),
    ("variable named longitude", lambda: spec(variables={"longitude": Variable("float32")}), "'longitude'"),
    ("variable named zarr.json", lambda: spec(variables={"zarr.json": Variable("float32")}), "'zarr.json'"),
    ("zone named zarr.json", lambda: spec(zones={"zarr.json": ZONE}), "'zarr.json'"),
    ("a 0 x 0 zone", lambda: spec(zones=[GeoBox((0, 0), ZONE.transform, ZONE.crs)]), "0 x 0"),
    ("a 0-pixel-high zone", lambda: spec(zones={"flat": GeoBox((0, 10), ZONE.transform, ZONE.crs)}),
     "'flat' is 0 x 10"),
    ("a NaN transform", lambda: spec(zones=[nan_transform(ZONE)]), "nan"),
    ("an infinite transform", lambda: spec(zones=[GeoBox((10, 10), Affine(10, 0, math.inf, 0, -10, 0), ZONE.crs)]),
     "inf"),
    ("a zero resolution", lambda: spec(zones=[GeoBox((10, 10), Affine(0, 0, 0, 0, -10, 0), ZONE.crs)]),
     "resolution of 0"),
    ("a zone needing 7 GiB of coordinates",
     lambda: spec(zones=[GeoBox((400_000_000, 540_000_000), Affine(1, 0, 0, 0, -1, 0), ZONE.crs)]),
     "400,000,000 x 540,000,000"),
    ("a zone one pixel too wide", lambda: spec(zones=[GeoBox((10, MAX_AXIS_LENGTH + 1), ZONE.transform, ZONE.crs)]),
     f"{MAX_AXIS_LENGTH + 1:,}"),
    ("one GeoBox, not a list", lambda: spec(zones=ZONE), "GeoBox"),
    ("chunks 'ab'", lambda: spec(chunks="ab"), "'ab'"),
    ("chunks of one number", lambda: spec(chunks=256), "256"),
    ("chunks of three numbers", lambda: spec(chunks=(256, 256, 256)), "(256, 256, 256)"),
    ("chunks 256.5", lambda: spec(chunks=(256.5, 256)), "(256.5, 256)"),
    ("chunks of floats", lambda: spec(chunks=(256.0, 256.0)), "(256.0, 256.0)"),
    ("chunks of bools", lambda: spec(chunks=(True, True)), "(True, True)"),
    ("chunks of text", lambda: spec(chunks=("256", "256")), "('256', '256')"),
    ("chunks None", lambda: spec(chunks=None), "None"),
    ("chunks too large to compress", lambda: spec(chunks=(40_000, 40_000)), "(40000, 40000)"),
    ("float32 nodata 1e40", lambda: spec(variables={"dem": Variable("float32", nodata=1e40)}), "1e+40"),
    ("float32 nodata -1e39", lambda: spec(variables={"dem": Variable("float32", nodata=-1e39)}), "-1e+39"),
    ("float16 nodata 70000", lambda: spec(variables={"dem": Variable("float16", nodata=70000)}), "70000"),
    ("float64 nodata 10**400", lambda: spec(variables={"dem": Variable("float64", nodata=10**400)}), "10000000"),
    ("float32 nodata inf", lambda: spec(variables={"dem": Variable("float32", nodata=math.inf)}), "inf"),
    ("float32 nodata that rounds to 0", lambda: spec(variables={"dem": Variable("float32", nodata=1e-50)}), "1e-50"),
    ("nodata 'x'", lambda: spec(variables={"dem": Variable("float32", nodata="x")}), "'x'"),
    ("integer nodata 'x'", lambda: spec(variables={"dem": Variable("int16", nodata="x")}), "'x'"),
    ("integer nodata as text", lambda: spec(variables={"dem": Variable("int16", nodata="-9999")}), "'-9999'"),
    ("integer nodata 1.5", lambda: spec(variables={"dem": Variable("int16", nodata=1.5)}), "1.5"),
    ("integer nodata True", lambda: spec(variables={"dem": Variable("uint8", nodata=True)}), "True"),
    ("bool nodata 'x'", lambda: spec(variables={"dem": Variable("bool", nodata="x")}), "'x'"),
    ("bool nodata 2", lambda: spec(variables={"dem": Variable("bool", nodata=2)}), "2"),
    ("units not text", lambda: spec(variables={"dem": Variable("float32", units=5)}), "5"),
    ("time as a string", lambda: spec(time="2024"), "'2024'"),
    ("time axis too long", lambda: spec(time=pd.date_range("2000-01-01", periods=MAX_AXIS_LENGTH + 1, freq="s")),
     f"{MAX_AXIS_LENGTH + 1:,}"),
    ("variables as a list", lambda: CubeSpec(name="dem", zones=[ZONE], variables=[Variable("float32")],
                                             source=source("dem")), "list"),
    ("source as a dict", lambda: CubeSpec(name="dem", zones=[ZONE], variables={"dem": Variable("float32")},
                                          source={"api_url": "http://x"}), "dict"),
]


@pytest.mark.parametrize(("label", "make", "named"), BAD_SPECS, ids=[row[0] for row in BAD_SPECS])
def test_a_bad_spec_is_refused_before_anything_is_written(tmp_path, label, make, named):
    target = tmp_path / "cube"
    with pytest.raises(SpecError) as caught:
        Cube.create(target, make())
    assert named in str(caught.value), f"{label}: {caught.value}"
    assert not target.exists() and list(tmp_path.iterdir()) == []


def good_json() -> dict:
    return spec(time=pd.date_range("2024-01-01", periods=3, freq="D")).to_json()


def zone_json(**changes) -> dict:
    data = good_json()
    data["zones"]["epsg32633"].update(changes)
    return data


# (label, the bad JSON as a file or a cube would hold it, the text its error must hold)
BAD_JSON = [
    ("chunks 'ab'", good_json() | {"chunks": "ab"}, "'ab'"),
    ("chunks [256.5, 256]", good_json() | {"chunks": [256.5, 256]}, "[256.5, 256]"),
    ("chunks [true, 256]", good_json() | {"chunks": [True, 256]}, "[True, 256]"),
    ("nodata 'x'", good_json() | {"variables": {"dem": {"dtype": "float32", "nodata": "x"}}}, "'x'"),
    ("nodata 1e40", good_json() | {"variables": {"dem": {"dtype": "float32", "nodata": 1e40}}}, "1e+40"),
    ("variable named x", good_json() | {"variables": {"x": {"dtype": "float32"}},
                                        "source": good_json()["source"] | {"assets": {"x": "x"}}}, "'x'"),
    ("a NaN transform", zone_json(transform=[10.0, 0.0, math.nan, 0.0, -10.0, 10000.0]), "nan"),
    ("a transform of five numbers", zone_json(transform=[10.0, 0.0, 0.0, 0.0, -10.0]), "[10.0, 0.0, 0.0, 0.0, -10.0]"),
    ("a shape of text", zone_json(shape="big"), "'big'"),
    ("a negative shape", zone_json(shape=[-1, 10]), "[-1, 10]"),
    ("a 0 x 0 shape", zone_json(shape=[0, 0]), "0 x 0"),
    ("an unknown CRS", zone_json(epsg=None, crs="EPSG:999999"), "'EPSG:999999'"),
    ("time periods of a billion", good_json() | {"time": {"start": "2024-01-01", "periods": 10**9, "freq": "D"}},
     "1000000000"),
    ("time freq unknown", good_json() | {"time": {"start": "2024-01-01", "periods": 3, "freq": "fortnightly"}},
     "fortnightly"),
    ("no chunks", {k: v for k, v in good_json().items() if k != "chunks"}, "'chunks'"),
    ("zones as a list", good_json() | {"zones": [1, 2]}, "list"),
    ("not an object", ["a", "spec"], "list"),
    ("spec version as text", good_json() | {"spec_version": "2"}, "'2'"),
]


@pytest.mark.parametrize(("label", "data", "named"), BAD_JSON, ids=[row[0] for row in BAD_JSON])
def test_a_bad_spec_file_is_a_spec_error_naming_the_value(label, data, named):
    with pytest.raises(SpecError) as caught:
        CubeSpec.from_json(data)
    assert named in str(caught.value), f"{label}: {caught.value}"


def test_good_edges_are_still_accepted():
    """The limits are the dtype's and the layout's own, not tighter."""
    assert Variable("float32", nodata=float(np.finfo("float32").min)).nodata == float(np.finfo("float32").min)
    assert Variable("float32", nodata=-3.4e38).nodata == -3.4e38
    assert Variable("float16", nodata=65504).nodata == 65504.0
    assert Variable("float32", nodata=1e-40).nodata == 1e-40  # subnormal, still not 0
    assert math.isnan(Variable("float32", nodata="nan").nodata)  # as to_json writes it
    assert Variable("int16", nodata=np.int16(-32768)).nodata == -32768
    assert Variable("uint8", nodata=np.float64(255.0)).nodata == 255
    assert Variable("bool", nodata=1).nodata is True and Variable("bool", nodata=np.bool_(False)).nodata is False
    assert spec(chunks=[16, 16]).chunks == (16, 16)
    assert spec(chunks=np.array([512, 256])).chunks == (512, 256)
    assert spec(zones=[GeoBox((1, 1), ZONE.transform, ZONE.crs)]).zones["epsg32633"].shape == (1, 1)
    side = GeoBox((10, MAX_AXIS_LENGTH), ZONE.transform, ZONE.crs)
    assert spec(zones=[side]).zones["epsg32633"] == side
    # a variable may share its name with a zone: zones are groups of the root, variables arrays in a zone
    assert list(spec(zones={"dem": ZONE}).zones) == ["dem"]
    # one trailing time step short of the limit is fine, and the JSON round trip keeps every value
    again = CubeSpec.from_json(good_json())
    assert again.to_json() == good_json()


def test_every_name_the_layout_writes_beside_the_variables_is_reserved():
    """A variable named like any array the layout puts in a zone group would overwrite it."""
    store = zarr.storage.MemoryStore()
    the_spec = spec(time=pd.date_range("2024-01-01", periods=2, freq="D"), variables={"v": Variable("uint8", nodata=0)})
    create_layout(store, the_spec)
    group = zarr.open_group(store, mode="r")["epsg32633"]
    written = {name for name, _ in group.members()} - {"v"}
    assert written and written <= set(RESERVED_NAMES)
    # and the names a Tile gives its axes on a geographic grid
    assert {"latitude", "longitude"} <= set(RESERVED_NAMES)

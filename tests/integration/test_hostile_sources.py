"""What a remote catalog may make stacube read, and what of a URL's secrets may ever be shown.

A served asset whose body is a VRT naming a local raster must not get that raster's pixels into
the cube; a source's host allow-list holds; credentials and signatures in asset URLs appear in no
output, log, error or commit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from stacube import Cube, CubeSpec, ItemError, StacSource, StacubeError, Variable
from stacube.cli import app
from stacube.testing.generate import SampleLayout, generate_sample
from stacube.testing.servers import start_file_server, start_stac_api

LAYOUT = SampleLayout(tile_size=256, overlap=32, rows=1, cols=2)
SECRET = {"float32": 7777.0, "uint8": 77}  # values the sample never holds, per asset dtype
PLANTED = "Zq81-planted-secret"


def _spec(api_url: str, **source) -> CubeSpec:
    return CubeSpec(name="hostile", zones=[LAYOUT.extent_geobox()], chunks=(128, 128),
                    variables={"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)},
                    source=StacSource(api_url=api_url, collection="sample-dem",
                                      assets={"dem": "dem", "datamask": "datamask"}, **source))


def _local_raster(path: Path, like: Path) -> Path:
    """A raster on this machine's disk, outside anything served, on a served tile's grid."""
    with rasterio.open(like) as src:
        profile = {**src.profile, "driver": "GTiff"}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.full((src.height, src.width), SECRET[src.dtypes[0]], dtype=src.dtypes[0]), 1)
    return path


def _vrt_naming(local: Path, like: Path) -> str:
    with rasterio.open(like) as src:
        width, height, dtype = src.width, src.height, src.dtypes[0]
        transform = ", ".join(repr(v) for v in src.transform.to_gdal())
        crs = src.crs.to_wkt()
    gdal_type = {"float32": "Float32", "uint8": "Byte"}[dtype]
    return f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <SRS>{crs}</SRS>
  <GeoTransform>{transform}</GeoTransform>
  <VRTRasterBand dataType="{gdal_type}" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="0">{local}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


@pytest.fixture
def served(tmp_path):
    """A two-tile sample served on loopback; yields (folder, file server, items file) for the test to spoil."""
    folder = generate_sample(tmp_path / "sample", LAYOUT)
    files = start_file_server(folder)
    try:
        yield folder, files
    finally:
        files.stop()


def _serve_items(folder: Path, hrefs: dict[str, str], out: Path):
    """A STAC API over the sample's Items with each asset's href replaced by ``hrefs[file name]``."""
    collection = json.loads((folder / "items.json").read_text())
    for feature in collection["features"]:
        for asset in feature["assets"].values():
            asset["href"] = hrefs[asset["href"].rsplit("/", 1)[-1]]
    out.write_text(json.dumps(collection))
    return start_stac_api(out)


def _all_hrefs(folder: Path, base: str, suffix: str = "") -> dict[str, str]:
    return {p.name: f"{base}/{p.name}{suffix}" for p in folder.glob("*.tif")}


@pytest.mark.parametrize("file_name", ["tile_r0_c1_dem.tif", "tile_r0_c0_datamask.tif"])
def test_a_served_vrt_naming_a_local_raster_is_refused_and_nothing_is_written(served, tmp_path, file_name):
    folder, files = served
    local = _local_raster(tmp_path / "local-secret.tif", folder / file_name)
    (folder / file_name).write_text(_vrt_naming(local, folder / file_name))
    with rasterio.open(f"{files.url}/{file_name}") as plain:  # GDAL alone follows it: the attack is real
        assert plain.driver == "VRT" and plain.read(1).max() == SECRET[plain.dtypes[0]]
    api = _serve_items(folder, _all_hrefs(folder, files.url), tmp_path / "items.json")
    try:
        cube = Cube.create(tmp_path / "cube.icechunk", _spec(api.url), catalog_dir=tmp_path / "catalog")
        snapshots = len(cube.history())
        with pytest.raises(StacubeError) as raised:
            cube.download(LAYOUT.extent_geobox(), concurrency=2)
    finally:
        api.stop()
    text = str(raised.value)
    item = file_name.removesuffix("_dem.tif").removesuffix("_datamask.tif")
    assert repr(item) in text and f"{files.url}/{file_name}" in text and "GTiff" in text, text
    assert "NotAllowedFormat" in text, text  # asked again (a reset reads the same to GDAL), never read as a VRT
    assert len(cube.history()) == snapshots  # nothing committed
    tile = cube.load(LAYOUT.extent_geobox(), offline=True)
    assert not (tile.dem.values == SECRET["float32"]).any() and not (tile.datamask.values == SECRET["uint8"]).any()
    assert len(tile.attrs["missing_patches"]) == 8  # every patch still to fetch: none recorded as filled


def test_a_source_may_allow_other_drivers(served, tmp_path):
    """The restriction is the source's to lift: with VRT allowed, the same Item reads (for a trusted source)."""
    folder, files = served
    name = "tile_r0_c1_dem.tif"
    local = _local_raster(tmp_path / "local.tif", folder / name)
    (folder / name).write_text(_vrt_naming(local, folder / name))
    api = _serve_items(folder, _all_hrefs(folder, files.url), tmp_path / "items.json")
    try:
        cube = Cube.create(tmp_path / "cube.icechunk", _spec(api.url, drivers=("GTiff", "VRT")),
                           catalog_dir=tmp_path / "catalog")
        cube.download(LAYOUT.extent_geobox(), concurrency=2)
    finally:
        api.stop()
    assert (cube.load(LAYOUT.extent_geobox(), offline=True).dem.values == SECRET["float32"]).any()
    assert Cube.open(tmp_path / "cube.icechunk").spec.source.drivers == ("GTiff", "VRT")


@pytest.mark.parametrize(("hosts", "allowed"), [
    (("example.org",), False),
    (("*.example.org",), False),
    (("127.0.0.1:1",), False),  # the right host on another port
    (("127.0.0.1",), True),
    (("EXAMPLE.org", "127.0.0.1"), True),
])
def test_asset_hosts_outside_the_sources_allow_list_are_refused_before_any_read(served, tmp_path, hosts, allowed):
    folder, files = served
    api = _serve_items(folder, _all_hrefs(folder, files.url), tmp_path / "items.json")
    try:
        cube = Cube.create(tmp_path / "cube.icechunk", _spec(api.url, hosts=hosts), catalog_dir=tmp_path / "catalog")
        snapshots = len(cube.history())
        if allowed:
            assert cube.download(LAYOUT.extent_geobox(), concurrency=2).patches_written
            return
        with pytest.raises(ItemError) as raised:
            cube.download(LAYOUT.extent_geobox(), concurrency=2)
    finally:
        api.stop()
    assert files.url in str(raised.value) and "hosts=" in str(raised.value)
    assert len(cube.history()) == snapshots


def test_an_api_url_with_credentials_is_refused_and_the_error_does_not_show_them():
    with pytest.raises(StacubeError) as raised:
        _spec(f"http://user:{PLANTED}@127.0.0.1:9/stac")
    assert PLANTED not in str(raised.value) and "netrc" in str(raised.value)


def test_credentials_and_signatures_in_asset_urls_appear_in_no_output(served, tmp_path, caplog):
    """Hrefs carrying user info and signing parameters: used to read, and never shown or recorded.

    One asset is missing on the server, so a run also fails and prints its error."""
    folder, files = served
    host = files.url.removeprefix("http://")
    query = f"?sig={PLANTED}&X-Amz-Signature={PLANTED}&X-Amz-Credential={PLANTED}&token={PLANTED}&key={PLANTED}&se=2030"
    hrefs = _all_hrefs(folder, f"http://reader:{PLANTED}@{host}", query)
    api = _serve_items(folder, hrefs, tmp_path / "items.json")
    caplog.set_level(logging.DEBUG)
    url, catalog = str(tmp_path / "cube.icechunk"), str(tmp_path / "catalog")
    (tmp_path / "spec.json").write_text(json.dumps(_spec(api.url).to_json()))
    zone = LAYOUT.extent_geobox()
    left = ",".join(repr(v) for v in zone[:, 0:128].extent.boundingbox)
    outputs = []
    try:
        runs = [(["cube", "create", url, "--spec", tmp_path / "spec.json"], 0),
                (["cube", "download", url, "--bbox", left, "--crs", "EPSG:3413", "--quiet"], 0)]
        for args, code in runs:
            result = CliRunner().invoke(app, ["--verbose", *[str(a) for a in args], "--catalog-dir", catalog])
            outputs += [result.stdout, result.stderr, repr(result.exception)]
            assert result.exit_code == code, result.stderr
        (folder / "tile_r0_c1_dem.tif").unlink()  # the right-hand tile's dem is gone: its patches fail
        for args, code in [(["cube", "download", url, "--quiet"], 1), (["cube", "history", url, "--json"], 0),
                           (["cube", "info", url, "--json"], 0), (["cube", "state", url, "--json"], 0)]:
            result = CliRunner().invoke(app, ["--verbose", *[str(a) for a in args], "--catalog-dir", catalog])
            outputs += [result.stdout, result.stderr, repr(result.exception)]
            assert result.exit_code == code, result.stderr
        cube = Cube.open(url, catalog_dir=catalog)
        with pytest.raises(StacubeError) as failed:
            cube.download(zone, concurrency=2)
        outputs.append(str(failed.value))
    finally:
        api.stop()
    assert "tile_r0_c1_dem.tif" in str(failed.value)  # the failure names the file, without its secrets
    assert cube.history()["patches_written"].max() > 0  # the first run read through the secret-bearing URLs
    metadata = [json.dumps(s.metadata) for s in cube.repo.ancestry(branch="main")]
    assert any(r.name.startswith("stacube") for r in caplog.records)  # logs were captured
    for text in [*outputs, caplog.text, *metadata]:
        assert PLANTED not in text, text[max(0, text.find(PLANTED) - 1500):text.find(PLANTED) + 200]

"""Sources beyond plain https: assets in an S3 bucket with per-source GDAL options, and assets behind
signed URLs whose signatures never reach the catalog, a commit or a log."""

from __future__ import annotations

import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from stacube import Cube, PatchReadError
from stacube.testing.servers import serve_sample, start_stac_api

from .conftest import dem_spec
from .test_load import items_of, odc_reference

SECRET = "sv=2021&sig=S3cr3tS1gnature"


def test_assets_in_a_requester_pays_bucket_are_read_with_the_sources_gdal_options(
        sample_dir, servers, s3_endpoint, sample_layout, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="assets")
    s3.put_bucket_request_payment(Bucket="assets", RequestPaymentConfiguration={"Payer": "Requester"})
    for cog in Path(sample_dir).glob("*.tif"):
        s3.upload_file(str(cog), "assets", f"dem/{cog.name}")
    items = json.loads((Path(sample_dir) / "items.json").read_text())
    for feature in items["features"]:
        for asset in feature["assets"].values():
            asset["href"] = f"s3://assets/dem/{asset['href'].rsplit('/', 1)[-1]}"
    (tmp_path / "items.json").write_text(json.dumps(items))
    endpoint = s3_endpoint.removeprefix("http://")
    options = {"AWS_S3_ENDPOINT": endpoint, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
               "AWS_REQUEST_PAYER": "requester"}
    api = start_stac_api(tmp_path / "items.json")
    try:
        spec = dem_spec(api.url, sample_layout)
        spec = spec.__class__(**{**spec.__dict__, "source": spec.source.__class__(
            **{**{k: v for k, v in spec.source.__dict__.items() if k != "kind"}, "gdal_options": options})})
        cube = Cube.create(tmp_path / "cube", spec, catalog_dir=tmp_path / "catalog")
        roi = sample_layout.extent_geobox()[0:600, 0:600]
        tile = cube.load(roi)
    finally:
        api.stop()
    dem, mask = odc_reference(items_of(servers[1].url), roi)  # the same COGs over HTTP
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    np.testing.assert_array_equal(tile.datamask.values, mask[0])
    hrefs = {a.href for item in cube.catalog.search() for a in item.assets.values()}
    assert hrefs and all(h.startswith("s3://assets/dem/") for h in hrefs)
    assert Cube.open(tmp_path / "cube").spec.source.gdal_options == options  # settings, never credentials
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in json.dumps(cube.spec.to_json())


@pytest.fixture
def signed_servers(sample_dir, monkeypatch, tmp_path):
    """A private copy of the sample behind a file server that answers 403 to anything not signed with the token."""
    import shutil

    monkeypatch.setenv("STACUBE_TEST_SIGNATURE", SECRET.split("sig=")[1])
    folder = shutil.copytree(sample_dir, tmp_path / "signed-sample")
    with serve_sample(folder, require_token=SECRET.split("sig=")[1]) as pair:
        yield pair


def test_signed_assets_are_signed_at_read_time_and_the_signature_is_kept_nowhere(
        signed_servers, sample_layout, tmp_path, caplog, monkeypatch):
    _files, api = signed_servers
    token = SECRET.split("sig=")[1]
    folder = tmp_path / "signed-sample"
    spec = dem_spec(api.url, sample_layout)
    source = spec.source.__class__(**{**{k: v for k, v in spec.source.__dict__.items() if k != "kind"},
                                      "signer": "tests.integration.signing:sign"})
    spec = spec.__class__(**{**spec.__dict__, "source": source})
    roi = sample_layout.extent_geobox()[0:600, 0:600]
    with caplog.at_level(logging.DEBUG):
        cube = Cube.create(tmp_path / "cube", spec, catalog_dir=tmp_path / "catalog")
        tile = cube.load(roi)
    signed = [{**i.to_dict(), "assets": {k: {**a.to_dict(), "href": f"{a.href}?sig={token}"}
                                         for k, a in i.assets.items()}} for i in items_of(api.url)]
    import pystac

    dem, _ = odc_reference([pystac.Item.from_dict(d) for d in signed], roi)
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    kept = b"".join(p.read_bytes() for p in (tmp_path / "catalog").rglob("*") if p.is_file())
    history = json.dumps([s.metadata for s in cube.repo.ancestry(branch="main")])
    assert token.encode() not in kept and token not in history and token not in caplog.text
    # A corrupt file behind a good token: GDAL's error names the signed URL it opened; it reaches the
    # user redacted, naming the file.
    (folder / "tile_r3_c3_dem.tif").write_bytes(b"not a TIFF at all " * 100)
    caplog.clear()
    with caplog.at_level(logging.DEBUG), pytest.raises(PatchReadError) as failed:
        cube.load(sample_layout.extent_geobox()[1700:1800, 1700:1800])
    message = str(failed.value)
    assert "tile_r3_c3_dem.tif" in message and "corrupt" in message  # named as the catalog holds it, unsigned
    assert token not in message and token not in caplog.text
    # An expired token: the read fails loudly, naming the file, with the signature redacted.
    monkeypatch.setenv("STACUBE_TEST_SIGNATURE", "expired")
    with caplog.at_level(logging.DEBUG), pytest.raises(PatchReadError) as failed:
        cube.load(sample_layout.extent_geobox()[1200:1400, 1200:1400])
    message = str(failed.value)
    assert "sig=REDACTED" in message or "403" in message
    assert "expired" not in message and "expired" not in caplog.text.replace("sig=REDACTED", "")


class _SasTokens(BaseHTTPRequestHandler):
    """Planetary Computer's SAS token API, as its docs and the SDK's tests describe it."""

    def do_GET(self):
        body = json.dumps({"msft:expiry": "2099-01-01T00:00:00Z", "token": f"st=2024&se=2099&sp=rl&{SECRET}"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_the_planetary_computer_signer_asks_its_token_api_at_read_time(monkeypatch):
    """The ready-made signer is planetary_computer.sign: pointed at a loopback token API here."""
    pytest.importorskip("planetary_computer")
    import planetary_computer.settings

    from stacube.datasets import sentinel2_l2a_spec
    from stacube.signing import redact_url, resolve_signer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _SasTokens)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PC_SDK_SAS_URL", f"http://127.0.0.1:{server.server_port}/api/sas/v1/token")
        planetary_computer.settings.Settings.get.cache_clear()
        spec = sentinel2_l2a_spec((11.9, 46.9, 12.1, 47.1), "2024-06-01", "2024-06-02", provider="planetary-computer")
        assert spec.source.signer == "planetary-computer" and spec.source.radiometry == "sentinel-2-baseline"
        assert spec.source.assets["B04"] == "B04" and "planetarycomputer" in spec.source.api_url
        sign = resolve_signer(spec.source.signer)
        href = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/32/T/QT/2024/06/B04.tif"
        signed = sign(href)
        assert signed.startswith(href + "?") and "sig=S3cr3tS1gnature" in signed
        assert "S3cr3t" not in redact_url(signed) and redact_url(signed).startswith(href)
        assert "S3cr3t" not in json.dumps(spec.to_json()) and "sig=" not in json.dumps(spec.to_json())
    finally:
        server.shutdown()
        planetary_computer.settings.Settings.get.cache_clear()

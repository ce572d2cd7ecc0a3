"""A planted credential is used where it must be, and appears in no output.

Searched: everything the CLI prints (with tracebacks on), every log record down to DEBUG (stacube,
Icechunk, botocore, urllib3, httpx), the commit metadata, every object the cube wrote to S3 and
every file of the catalog. The Prefect side (a Secret block, run logs, artifacts) is checked in
test_prefect.py; the Earth Engine key file and token in test_earthengine.py.
"""

from __future__ import annotations

import json
import logging

import boto3
from typer.testing import CliRunner

from stacube import Cube
from stacube.cli import app

from .conftest import dem_spec

PLANTED = "planted/AWS+secret-Zq81kXw2"


def bucket_texts(prefix: str) -> list[str]:
    s3 = boto3.client("s3")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="cubes", Prefix=prefix)
            for o in page.get("Contents", [])]
    assert keys, "the cube wrote nothing to S3"
    return [s3.get_object(Bucket="cubes", Key=key)["Body"].read().decode("latin-1") for key in keys]


def test_an_s3_secret_key_from_the_environment_is_used_and_never_shown(servers, s3_endpoint, sample_layout, tmp_path,
                                                                        monkeypatch, caplog):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED)  # moto accepts any secret: every request is signed with it
    caplog.set_level(logging.DEBUG)
    url, catalog = f"s3://cubes/secret-{tmp_path.name}", str(tmp_path / "catalog")
    spec = dem_spec(servers[1].url, sample_layout)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_json()))
    bbox = ",".join(repr(v) for v in sample_layout.extent_geobox()[0:300, 0:300].extent.boundingbox)
    outputs = []
    for args in (["cube", "create", url, "--spec", tmp_path / "spec.json"],
                 ["cube", "download", url, "--bbox", bbox, "--crs", "EPSG:3413", "--quiet"],
                 ["cube", "history", url, "--json"], ["cube", "info", url, "--json"],
                 ["cube", "state", url, "--json"],
                 ["cube", "rollback", url, "no-such-snapshot"]):  # an error, printed with its traceback
        result = CliRunner().invoke(app, ["--verbose", *[str(a) for a in args], "--catalog-dir", catalog])
        outputs += [result.stdout, result.stderr, repr(result.exception)]
        assert result.exit_code == (1 if "rollback" in args else 0), result.stderr
    cube = Cube.open(url, catalog_dir=catalog)
    assert len(cube.state()) == 4  # the run really went through S3 with the planted key
    metadata = [json.dumps(s.metadata) for s in cube.repo.ancestry(branch="main")]
    catalog_files = [p.read_bytes().decode("latin-1") for p in (tmp_path / "catalog").rglob("*") if p.is_file()]
    assert any(r.name.startswith(("botocore", "urllib3", "stacube")) for r in caplog.records)  # logs were captured
    for text in [*outputs, caplog.text, *metadata, *bucket_texts(url.removeprefix("s3://cubes/")), *catalog_files]:
        assert PLANTED not in text

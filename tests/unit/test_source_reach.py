"""What a STAC source may reach: its drivers and hosts, and no credentials in what a spec stores."""

from __future__ import annotations

import logging

import pytest

from stacube import SpecError, StacSource
from stacube.sources.stac.backend import host_allowed

BASE = dict(api_url="http://stac.example.org/v1", collection="c", assets={"dem": "dem"})


@pytest.mark.parametrize(("href", "hosts", "allowed"), [
    ("https://data.example.org/a.tif", ("data.example.org",), True),
    ("https://DATA.example.org/a.tif", ("data.example.org",), True),
    ("https://data.example.org.evil.net/a.tif", ("data.example.org",), False),
    ("https://evil.net/data.example.org/a.tif", ("data.example.org",), False),
    ("https://x.s3.amazonaws.com/a.tif", ("*.amazonaws.com",), True),
    ("https://amazonaws.com.evil.net/a.tif", ("*.amazonaws.com",), False),
    ("https://evilamazonaws.com/a.tif", ("*.amazonaws.com",), False),
    ("http://127.0.0.1:8080/a.tif", ("127.0.0.1:8080",), True),
    ("http://127.0.0.1:8081/a.tif", ("127.0.0.1:8080",), False),
    ("http://127.0.0.1:8081/a.tif", ("127.0.0.1",), True),
    ("http://user:pw@data.example.org/a.tif", ("data.example.org",), True),
    ("http://data.example.org@evil.net/a.tif", ("data.example.org",), False),
])
def test_hosts_match_exactly_or_as_subdomains(href, hosts, allowed):
    assert host_allowed(href, hosts) is allowed


@pytest.mark.parametrize("drivers", [(), [], "", ("GTiff", "../x"), ("GTiff", 3)])
def test_drivers_must_name_gdal_drivers(drivers):
    with pytest.raises(SpecError, match="drivers"):
        StacSource(**BASE, drivers=drivers)


@pytest.mark.parametrize("hosts", [(), ("a/b",), ("http://a",), ("*",), ("a b",)])
def test_hosts_must_be_host_names(hosts):
    with pytest.raises(SpecError, match="hosts"):
        StacSource(**BASE, hosts=hosts)


def test_drivers_and_hosts_round_trip_and_default_to_gtiff_and_any_host():
    source = StacSource(**BASE, drivers=["GTiff", "JP2OpenJPEG"], hosts=["*.Example.org"])
    assert StacSource.from_json(source.to_json()) == source
    assert source.hosts == ("*.example.org",)
    stored = {k: v for k, v in StacSource(**BASE).to_json().items() if k not in ("drivers", "hosts")}
    plain = StacSource.from_json(stored)
    assert plain.drivers == ("GTiff",) and plain.hosts is None  # a spec stored before these existed


def test_a_stored_api_url_with_credentials_opens_without_them(caplog):
    stored = {**StacSource(**BASE).to_json(), "api_url": "http://reader:s3cr3t@stac.example.org/v1"}
    with caplog.at_level(logging.WARNING):
        source = StacSource.from_json(stored)
    assert source.api_url == "http://stac.example.org/v1"
    assert "s3cr3t" not in caplog.text and "netrc" in caplog.text

"""Where a cube is kept, and this process's settings for it, refuse bad input with an error of the tree
(issue 22.4). One rule for locations: a URL that is no cube location as written is the caller's input
error (SpecError), whether or not anything is there; a well-formed one where no cube is is
CubeNotFoundError. Bad ``STACUBE_*`` settings are SpecErrors (still ValueErrors) naming the setting."""

from __future__ import annotations

import pytest

from stacube.errors import CubeNotFoundError, PermanentError, SpecError
from stacube.store import _config, cube_url, exists, open_repository, s3_settings


@pytest.mark.parametrize(("url", "named"), [
    ("s3:///cube", "'s3:///cube'"),  # no bucket
    ("s3://", "'s3://'"),
    ("gs://bucket/cube", "'gs://bucket/cube'"),  # a scheme stacube does not read
    ("https://example.com/cube", "'https://example.com/cube'"),
    ("s3://bucket", "'s3://bucket'"),  # no prefix
    ("s3://bucket/a/../b", "'s3://bucket/a/../b'"),
    ("", "''"),
])
def test_a_url_that_is_no_cube_location_as_written_is_a_spec_error(url, named):
    for call in (cube_url, open_repository, exists):
        with pytest.raises(SpecError) as raised:
            call(url)
        assert named in str(raised.value), call
        assert not isinstance(raised.value, CubeNotFoundError) and isinstance(raised.value, PermanentError)


def test_a_url_of_another_scheme_never_shows_its_credentials():
    with pytest.raises(SpecError) as raised:
        cube_url("https://someone:SECRET@example.com/cube")
    assert "SECRET" not in str(raised.value) and "example.com/cube" in str(raised.value)


def test_a_well_formed_location_without_a_cube_is_cube_not_found(tmp_path):
    with pytest.raises(CubeNotFoundError, match="no-cube-here"):
        open_repository(tmp_path / "no-cube-here")
    with pytest.raises(CubeNotFoundError, match="no-cube-here"):
        open_repository(f"file://{tmp_path}/no-cube-here")
    assert cube_url("s3://bucket/cubes/dem/") == "s3://bucket/cubes/dem"  # valid URLs as before


@pytest.mark.parametrize(("name", "bad"), [
    ("STACUBE_S3_MAX_TRIES", "lots"), ("STACUBE_S3_MAX_TRIES", "2.5"), ("STACUBE_S3_MAX_TRIES", "0"),
    ("STACUBE_S3_MAX_TRIES", "70000"),  # past Icechunk's 16 bits: was its OverflowError
    ("STACUBE_S3_MAX_TRIES", "9" * 400),
    ("STACUBE_S3_READ_TIMEOUT", "-1"), ("STACUBE_S3_CONNECT_TIMEOUT", "nan"), ("STACUBE_S3_READ_TIMEOUT", "inf"),
    ("STACUBE_S3_READ_TIMEOUT", "1e10"),  # past Icechunk's 32-bit milliseconds
])
def test_a_bad_s3_setting_is_a_spec_error_naming_it(monkeypatch, name, bad):
    for other in ("STACUBE_S3_MAX_TRIES", "STACUBE_S3_CONNECT_TIMEOUT", "STACUBE_S3_READ_TIMEOUT"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, bad)
    with pytest.raises(SpecError, match=f"{name}='{bad[:20]}"):
        s3_settings()
    with pytest.raises(ValueError):  # what callers caught before
        s3_settings()


def test_s3_settings_at_their_bounds_are_taken(monkeypatch):
    monkeypatch.setenv("STACUBE_S3_MAX_TRIES", "65535")
    monkeypatch.setenv("STACUBE_S3_READ_TIMEOUT", "4294967")
    settings = s3_settings()
    assert settings.retries.max_tries == 65535 and settings.timeouts.read_timeout_ms == 4_294_967_000


@pytest.mark.parametrize("bad", ["lots", "-1", "1.5", "²", "1" * 30, " 5"])
def test_a_bad_manifest_cache_setting_is_a_spec_error_naming_it(monkeypatch, bad):
    monkeypatch.setenv("STACUBE_CHUNK_REFS_CACHED", bad)
    with pytest.raises(SpecError, match="STACUBE_CHUNK_REFS_CACHED="):
        _config()

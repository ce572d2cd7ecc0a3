"""Integration fixtures: real servers on 127.0.0.1 (RangeHTTPServer for COGs, `rustac serve` for STAC)."""

from __future__ import annotations

import os
import shutil

import pytest

from stacube import Cube, CubeSpec, StacSource, Variable
from stacube.testing.generate import generate_sample
from stacube.testing.servers import serve_sample

from ..conftest import TIME_LAYOUT

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def servers(sample_dir):
    """The spatial sample served for the whole session: (file server, STAC API)."""
    with serve_sample(sample_dir) as pair:
        yield pair


@pytest.fixture(scope="session")
def time_sample_dir(tmp_path_factory):
    return generate_sample(tmp_path_factory.mktemp("sample-time"), TIME_LAYOUT, collection="sample-series")


@pytest.fixture(scope="session")
def time_servers(time_sample_dir):
    with serve_sample(time_sample_dir) as pair:
        yield pair


def dem_spec(api_url: str, layout, chunks=(256, 256), **overrides) -> CubeSpec:
    args = dict(
        name="dem",
        zones=[layout.extent_geobox()],
        chunks=chunks,
        variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
        source=StacSource(api_url=api_url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"}),
    )
    args.update(overrides)
    return CubeSpec(**args)


@pytest.fixture
def make_cube(tmp_path, sample_layout):
    """A factory for a fresh cube (own folder, own catalog) over a given STAC API URL."""

    def make(api_url: str, **overrides) -> Cube:
        return Cube.create(tmp_path / "cube.icechunk", dem_spec(api_url, sample_layout, **overrides),
                           catalog_dir=tmp_path / "catalog")

    return make


@pytest.fixture
def private_servers(tmp_path, sample_dir):
    """A private copy of the sample, served by servers this test may stop or break."""
    folder = tmp_path / "private-sample"
    shutil.copytree(sample_dir, folder)
    with serve_sample(folder) as (files, api):
        yield folder, files, api


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real `moto_server` on 127.0.0.1 standing in for S3, with a `cubes` bucket; AWS_* set while it runs."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import boto3

    from stacube.testing.servers import free_port

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                boto3.client("s3").create_bucket(Bucket="cubes")
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        yield env["AWS_ENDPOINT_URL"]
    finally:
        server.terminate()
        server.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster with PostGIS on 127.0.0.1 (Debian's packages, installed by .ci/run)."""
    import subprocess
    from pathlib import Path

    from stacube.testing.servers import free_port

    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        raise RuntimeError("PostgreSQL is not installed: .ci/run installs postgresql and postgresql-*-postgis-3")
    bin_dir = binaries[-1].parent
    import tempfile

    # not under pytest's folder: that one is private to root, and the cluster may run as another user
    root = Path(tempfile.mkdtemp(prefix="stacube-postgres-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the packages' postgres user
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "stacube", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "stacube",
                        "fields"], check=True, capture_output=True)
        yield f"postgresql+asyncpg://stacube@127.0.0.1:{port}/fields"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API for the whole session (it takes seconds to start), for flow tests."""
    pytest.importorskip("prefect")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture(scope="session")
def season_api(tmp_path_factory):
    """A synthetic Sentinel-2 season (two UTM zones, moving clouds) served for the whole session."""
    from stacube.testing.granules import generate_sentinel2
    from stacube.testing.season import Season, season_bands

    folder = generate_sentinel2(tmp_path_factory.mktemp("season"), Season().granules(), bands=season_bands)
    with serve_sample(folder) as (_files, api):
        yield api

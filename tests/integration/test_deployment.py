"""A real `prefect server` on 127.0.0.1, a process work pool, `prefect deploy --all`, a worker --run-once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from stacube import Cube

from .conftest import dem_spec

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[2]


def prefect_cli(*args: str, env: dict, timeout: float = 180) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def prefect_server(tmp_path):
    from stacube.sample.servers import free_port

    port = free_port()
    secret = f"stacube:{uuid.uuid4().hex}"  # the server runs with authentication, as the guide says
    env = {**os.environ, "PREFECT_SERVER_API_AUTH_STRING": secret, "PREFECT_API_AUTH_STRING": secret,
           "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_CLI_PROMPT": "false", "NO_PROXY": "127.0.0.1,localhost", "STACUBE_PROJECT_DIR": str(ROOT)}
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answered (401 without credentials): it is up
            except OSError:
                time.sleep(0.2)
        else:
            raise TimeoutError("prefect server did not start")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_deployed_flow_run_by_a_worker_adds_exactly_one_snapshot(prefect_server, servers, sample_layout, tmp_path):
    from stacube.flows.download import roi_to_parameter

    _, api = servers
    env = prefect_server
    cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
    before = len(cube.history())
    prefect_cli("work-pool", "create", "stacube", "--type", "process", env=env)
    prefect_cli("deploy", "--all", "--prefect-file", "deploy/prefect.yaml", env=env)
    params = {"cube_url": str(tmp_path / "cube"), "catalog_dir": str(tmp_path / "catalog"),
              "roi": roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:512])}
    out = prefect_cli("deployment", "run", "stacube-download/keep-cube-up-to-date", "--params", json.dumps(params),
                      env=env)
    flow_run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    prefect_cli("worker", "start", "--pool", "stacube", "--run-once", env=env, timeout=300)
    history = cube.history()
    assert len(history) == before + 1
    meta = cube.repo.lookup_snapshot(history.snapshot[0]).metadata["stacube"]
    assert meta["flow_run_id"] == flow_run_id and meta["runner"] == "prefect"
    assert len(meta["patches"]) == 4
    # Without the credentials the API refuses; the credentials appear in no commit metadata.
    request = urllib.request.Request(env["PREFECT_API_URL"] + "/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    password = env["PREFECT_API_AUTH_STRING"].split(":")[1]
    assert all(password not in json.dumps(snap.metadata) for snap in cube.repo.ancestry(branch="main"))

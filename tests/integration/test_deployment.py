"""The README's recipe "From nothing to a scheduled run", step by step, on a real `prefect server` on
127.0.0.1 with authentication: a fresh PREFECT_HOME, a process work pool, `prefect deploy --all` of
deploy/prefect.yaml, a worker, and the first run of a deployment on a cube that does not exist yet.

The parameters are the shipped ones but for the loopback sample: the same ready-made dataset
(``{"dataset": "arcticdem", ...}``) pointed at the sample's STAC API, and paths in the test's folder.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from stacube import Cube

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def recipe() -> list[str]:
    """The commands of the README's walk-through, without their comments."""
    section = (ROOT / "README.md").read_text().split("\n## Prefect: ad hoc runs, deployments, scale-out\n")[1]
    block = re.findall(r"```bash\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines()]


def step(command: str) -> list[str]:
    """A command of the README's recipe, as the README prints it, for this test to run."""
    assert f".venv/bin/{command}" in recipe(), f"the README's recipe no longer says {command!r}"
    return command.split()


def run(command: list[str], env: dict, timeout: float = 300, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if ok:
        assert done.returncode == 0, (f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def api(env: dict, path: str, body: dict | None = None) -> object:
    """The Prefect API, with the credentials the recipe exports."""
    request = urllib.request.Request(env["PREFECT_API_URL"] + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None, headers={
                                         "Content-Type": "application/json", "Authorization": "Basic " +
                                         base64.b64encode(env["PREFECT_API_AUTH_STRING"].encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def flow_run_id(output: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if "UUID" in line)


@pytest.fixture
def prefect_server(tmp_path):
    from stacube.testing.servers import free_port

    port = free_port()
    secret = f"stacube:{uuid.uuid4().hex}"  # the server runs with authentication, as the guide says
    env = {**os.environ, "PREFECT_SERVER_API_AUTH_STRING": secret, "PREFECT_API_AUTH_STRING": secret,
           "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_CLI_PROMPT": "false", "NO_PROXY": "127.0.0.1,localhost", "STACUBE_PROJECT_DIR": str(ROOT)}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


@pytest.fixture
def worker(prefect_server, tmp_path):
    """`prefect worker start --pool stacube &`, as the recipe starts it; stopped at the end."""
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen([str(BIN / "prefect"), *step("prefect worker start --pool stacube &")[1:-1]],
                               cwd=ROOT, env=prefect_server, stdout=log, stderr=subprocess.STDOUT)
    yield process
    process.terminate()
    process.wait(timeout=60)
    log.close()


def test_the_recipe_works_on_its_first_run_and_a_failed_run_shows(prefect_server, servers, sample_layout,
                                                                  tmp_path, request):
    from stacube.flows.parameters import roi_to_parameter

    _, stac_api = servers
    env = prefect_server
    run(step("prefect work-pool create stacube --type process"), env)
    run(step("prefect deploy --all --prefect-file deploy/prefect.yaml"), env)
    deployments = api(env, "/deployments/filter", {})
    shipped = yaml.safe_load((ROOT / "deploy/prefect.yaml").read_text())["deployments"]
    assert sorted(d["name"] for d in deployments) == sorted(d["name"] for d in shipped)
    assert len(deployments) == 2 and "`deploy/prefect.yaml` holds two deployments" in " ".join(
        (ROOT / "README.md").read_text().split())
    assert all(d["schedules"] and all(s["active"] for s in d["schedules"]) for d in deployments)
    parameters = {d["name"]: d["parameters"] for d in shipped}  # YAML merge keys resolved as YAML reads them
    assert all(d["parameters"] == parameters[d["name"]] and d["parameters"]["spec"] for d in deployments)

    # The first run of keep-cube-up-to-date, with the shipped spec pointed at the sample: it creates the cube.
    request.getfixturevalue("worker")
    shipped_params = next(d for d in shipped if d["name"] == "keep-cube-up-to-date")["parameters"]
    assert shipped_params["spec"] == {"dataset": "arcticdem", "resolution": 32}
    spec = {"dataset": "arcticdem", "resolution": 10, "api_url": stac_api.url, "collection": "sample-dem",
            "chunks": [256, 256]}
    cube_url = tmp_path / "cubes" / "dem.icechunk"
    params = {"cube_url": str(cube_url), "catalog_dir": str(tmp_path / "catalog"), "spec": spec,
              "roi": roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:512])}
    assert not cube_url.exists()
    command = step("prefect deployment run stacube-download/keep-cube-up-to-date --watch")
    done = run([*command, "--params", json.dumps(params), "--watch-timeout", "300"], env)
    first = flow_run_id(done.stdout)
    assert "Flow run finished successfully in 'Completed'" in done.stdout
    cube = Cube.open(cube_url, catalog_dir=tmp_path / "catalog")
    history = cube.history()
    assert list(history.message[1:]) == ["stacube: create cube 'arcticdem-10m'", "Repository initialized"]
    meta = cube.repo.lookup_snapshot(history.snapshot[0]).metadata["stacube"]
    assert meta["flow_run_id"] == first and meta["runner"] == "prefect" and meta["flow"] == "stacube-download"
    assert history.patches_written[0] == len(meta["patches"]) > 0

    # A run whose spec describes another cube fails before reading anything, and shows that it failed.
    other = {**params, "spec": {**spec, "resolution": 32}}
    done = run([*command, "--params", json.dumps(other), "--watch-timeout", "300"], env, ok=False)
    assert done.returncode == 1 and "Flow run finished in state 'Failed'" in done.stdout + done.stderr
    state = api(env, f"/flow_runs/{flow_run_id(done.stdout)}")["state"]
    assert state["type"] == "FAILED"
    assert "'arcticdem-10m'" in state["message"] and "'arcticdem-32m'" in state["message"]
    assert len(cube.history()) == len(history)

    # Without the credentials the API refuses; the credentials appear in no commit metadata.
    refused_request = urllib.request.Request(env["PREFECT_API_URL"] + "/flow_runs/filter", data=b"{}",
                                             method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(refused_request, timeout=10)
    assert refused.value.code == 401
    password = env["PREFECT_API_AUTH_STRING"].split(":")[1]
    assert all(password not in json.dumps(snap.metadata) for snap in cube.repo.ancestry(branch="main"))

    # The first run's snapshot, and only it, names the flow run, in cube.history() and `cube history`.
    assert "flow_run_id" in history.columns, "Cube.history() has no flow_run_id column (issue 21)"
    assert history.flow_run_id.iloc[0] == first and history.flow_run_id.iloc[1:].isna().all()
    shown = run([*step("stacube cube history cubes/arcticdem-32m.icechunk")[:3], str(cube_url), "--json"], env)
    assert [row["flow_run_id"] for row in json.loads(shown.stdout)] == [first, None, None]


def test_two_first_runs_at_once_make_one_cube(prefect_server, servers, sample_layout, tmp_path):
    """Both shipped deployments run for the first time together (one worker poll takes both): one
    creates the cube, the other uses it, both complete. (Whether their creations overlap depends on
    the machine; test_flow_specs races two creations on a barrier.)"""
    from stacube.flows.parameters import roi_to_parameter

    env = prefect_server
    run(["prefect", "work-pool", "create", "stacube", "--type", "process"], env)
    run(["prefect", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"], env)
    spec_file = tmp_path / "dem-spec.json"  # the other form: a spec file, relative to the project folder
    run(["stacube", "spec", "arcticdem", "--resolution", "10", "--api-url", servers[1].url, "--collection",
         "sample-dem", "--chunks", "256", "--out", str(spec_file)], env)
    cube_url = tmp_path / "cubes" / "dem.icechunk"
    params = {"cube_url": str(cube_url), "catalog_dir": str(tmp_path / "catalog"), "spec": str(spec_file),
              "roi": roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:512])}
    ids = [flow_run_id(run(["prefect", "deployment", "run", name, "--params", json.dumps(params)], env).stdout)
           for name in ("stacube-download/keep-cube-up-to-date", "stacube-sync-catalog/sync-catalog")]
    run(["prefect", "worker", "start", "--pool", "stacube", "--run-once"], env)
    runs = [api(env, f"/flow_runs/{i}") for i in ids]
    assert all(r["state"]["type"] == "COMPLETED" for r in runs), [r["state"] for r in runs]
    logs = api(env, "/logs/filter", {"logs": {"flow_run_id": {"any_": ids}}, "limit": 200})
    assert len([log for log in logs if log["message"].startswith("created cube 'arcticdem-10m'")]) == 1
    history = Cube.open(cube_url).history()
    assert history.message.tolist().count("stacube: create cube 'arcticdem-10m'") == 1
    assert history.message.iloc[-1] == "Repository initialized" and len(history) == 3

"""The flows' ``spec`` parameter and how two specs are judged to describe one cube; and the shipped
deployment files: every parameter is one its flow takes, and deploy/prefect.yaml holds only
deployments that work on their first run (each names the spec of the cube it would create)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from stacube import SpecError
from stacube.datasets import alphaearth_spec, arcticdem_spec, sentinel2_l2a_spec, tctrend_spec

pytest.importorskip("prefect")
from stacube.flows import cubes

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize(("parameter", "made"), [
    ({"dataset": "arcticdem", "resolution": 10, "chunks": [512, 512], "api_url": "http://127.0.0.1:9/stac"},
     arcticdem_spec(10, chunks=(512, 512), api_url="http://127.0.0.1:9/stac")),
    ({"dataset": "sentinel2", "bbox": [11.0, 47.0, 11.2, 47.1], "start": "2024-04-01", "end": "2024-04-30",
      "bands": ["B04", "SCL"]},
     sentinel2_l2a_spec((11.0, 47.0, 11.2, 47.1), "2024-04-01", "2024-04-30", bands=("B04", "SCL"))),
    ({"dataset": "alphaearth", "bbox": [11.0, 47.0, 11.2, 47.1], "years": [2020, 2021]},
     alphaearth_spec((11.0, 47.0, 11.2, 47.1), years=[2020, 2021])),
    ({"dataset": "tctrend"}, tctrend_spec()),
], ids=["arcticdem", "sentinel2", "alphaearth", "tctrend"])
def test_a_ready_made_dataset_with_its_arguments(parameter, made):
    spec, origin = cubes.spec_from_parameter(parameter)
    assert spec.to_json() == made.to_json() and origin.startswith('dataset {"dataset": ')


def test_a_spec_file_and_a_whole_spec(tmp_path):
    made = arcticdem_spec(32)
    path = made.save(tmp_path / "dem-spec.json")
    assert cubes.spec_from_parameter(str(path))[0].to_json() == made.to_json()
    assert cubes.spec_from_parameter(made.to_json())[0].to_json() == made.to_json()
    assert cubes.spec_from_parameter(None) is None


@pytest.mark.parametrize(("parameter", "named"), [
    ({"dataset": "srtm"}, r"unknown dataset 'srtm'; ready-made datasets are alphaearth, arcticdem, sentinel2"),
    ({"dataset": "arcticdem", "resolution": 32, "colection": "x"},
     r"unexpected keyword argument 'colection'.*arcticdem takes resolution, chunks, api_url, collection"),
    ({"dataset": "sentinel2", "start": "2024-04-01"}, r"missing a required argument: 'bbox'"),
    ({"dataset": "sentinel2", "bbox": [11, 47, 11.2, 47.1], "bands": ["B99"]}, r"B99"),
    ({"dataset": "arcticdem", "resolution": 32, "chunks": [8, 8]}, r"chunks \(8, 8\) must be"),
    ({"name": "dem"}, r"the spec lacks .*a ready-made dataset is named by a 'dataset' key"),
    ("arcticdem", r"spec 'arcticdem': no such file; for the ready-made dataset write \{\"dataset\": \"arcticdem\""),
    ("nowhere/dem-spec.json", r"no such file \(relative to the run's working folder"),
    (42, r"spec must be the flow's spec parameter"),
])
def test_a_bad_spec_parameter_is_a_spec_error_naming_it(parameter, named):
    with pytest.raises(SpecError, match=named):
        cubes.spec_from_parameter(parameter)


def test_two_specs_of_one_cube_differ_in_nothing_but_how_far_their_time_axis_reaches():
    bbox = (11.0, 47.0, 11.2, 47.1)
    april = sentinel2_l2a_spec(bbox, "2024-04-01", "2024-04-30")
    assert april.differences(sentinel2_l2a_spec(bbox, "2024-04-01", "2024-09-30")) == []
    assert april.differences(sentinel2_l2a_spec(bbox, "2024-04-01", "2024-04-02")) == []
    later = sentinel2_l2a_spec(bbox, "2024-04-02", "2024-04-30", bands=("B04", "B08", "B11", "B12", "SCL"),
                               api_url="http://127.0.0.1:9/stac")
    assert april.differences(later, ("the cube", "the spec")) == [
        "variables.B02: only in the cube", "variables.B03: only in the cube",
        "time.start: '2024-04-01T00:00:00' in the cube, '2024-04-02T00:00:00' in the spec",
        "source.api_url: 'https://earth-search.aws.element84.com/v1' in the cube, 'http://127.0.0.1:9/stac' in "
        "the spec",
        "source.assets.B02: only in the cube", "source.assets.B03: only in the cube"]
    dem = arcticdem_spec(32)
    daily, weekly = (dataclasses.replace(dem, time=april.time[::step]) for step in (1, 7))
    assert weekly.differences(daily) == ["time.freq: '7D' in this spec, 'D' in the other"]
    assert dem.differences(daily) == [
        "time: None in this spec, {'freq': 'D', 'start': '2024-04-01T00:00:00'} in the other"]


def deployments(name: str) -> list[dict]:
    return yaml.safe_load((DEPLOY / name).read_text())["deployments"]


def flow_of(entrypoint: str):
    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", ["prefect.yaml", "training-patches.yaml", "fields.yaml"])
def test_every_shipped_parameter_is_one_its_flow_takes(name):
    for deployment in deployments(name):
        flow = flow_of(deployment["entrypoint"])
        inspect.signature(flow.fn).bind(**deployment["parameters"])  # every required one, no unknown one
        if "spec" in deployment["parameters"]:
            assert cubes.spec_from_parameter(deployment["parameters"]["spec"]) is not None


def test_deploy_all_gives_only_deployments_that_work_on_their_first_run():
    shipped = deployments("prefect.yaml")
    assert sorted(d["name"] for d in shipped) == ["keep-cube-up-to-date", "sync-catalog"]
    for deployment in shipped:
        flow = flow_of(deployment["entrypoint"])
        assert "spec" in inspect.signature(flow.fn).parameters and deployment["parameters"]["spec"], deployment
    names = [d["name"] for f in ("prefect.yaml", "training-patches.yaml", "fields.yaml") for d in deployments(f)]
    assert len(names) == len(set(names)) == 7

"""Every parameter of every stacube flow has a description in the schema Prefect shows in its UI (and in
``prefect deployment inspect``): Prefect reads them from the flow's Google-style ``Args:`` section."""

import inspect
from importlib import import_module

import pytest

FLOWS = [getattr(import_module(f"stacube.flows.{module}"), name) for module, name in [
    ("download", "download"), ("fields", "ingest"), ("fields", "indices"), ("fields", "publish"), ("fields", "purge"),
    ("many", "load_many"), ("runner", "run_planned"), ("sync", "sync_catalog")]]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_every_flow_parameter_is_described_in_the_prefect_ui(flow):
    properties = flow.parameters.properties
    assert properties, f"flow {flow.name} has no parameters in its schema"
    undescribed = [name for name, schema in properties.items() if not schema.get("description")]
    assert undescribed == [], f"flow {flow.name}: no description for {undescribed}"
    summary = flow.description.split("\n\n")[0]  # what the UI shows above the parameters: prose, not the Args
    assert summary.strip() and "Args:" not in summary
    assert set(properties) == set(inspect.signature(flow.fn).parameters)  # every parameter is in the schema

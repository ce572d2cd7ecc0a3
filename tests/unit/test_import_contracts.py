"""The import contracts in pyproject.toml (run by ``lint-imports`` in ``make test``) name every module:
a new module that no layer names would be outside the layering, and one missing from the Prefect
contract could import Prefect unseen."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import stacube

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["type"]: contract for contract in config["contracts"]}


def _modules() -> set[str]:
    return {info.name for info in pkgutil.iter_modules(stacube.__path__)}


def test_every_module_is_in_a_layer():
    named = {name.strip() for layer in _contracts()["layers"]["layers"] for name in layer.split(":")}
    assert _modules() - named == set(), "add the new module to a layer in pyproject.toml [tool.importlinter]"
    assert named - _modules() == set(), "a layer names a module that is gone"


def test_every_module_but_the_flows_is_kept_from_prefect():
    sources = {name.removeprefix("stacube.") for name in _contracts()["forbidden"]["source_modules"]}
    assert sources == _modules() - {"flows"}


def test_the_prefect_runner_is_found_by_name_without_the_core_importing_the_flows():
    from importlib.metadata import entry_points

    (point,) = [p for p in entry_points(group="stacube.runners") if p.name == "prefect"]
    assert point.value == "stacube.flows.download:prefect_runner"

"""Prefect flows and tasks: the only package that imports Prefect.

The core finds the Prefect runner by name (``runner="prefect"``) through the ``stacube.runners``
entry point that pyproject.toml declares (``download.prefect_runner``); nothing in the core imports
this package.
"""

from .download import PrefectRunner, download, prefect_runner, run_planned
from .many import load_many
from .sync import sync_catalog

__all__ = ["PrefectRunner", "download", "load_many", "prefect_runner", "run_planned", "sync_catalog"]

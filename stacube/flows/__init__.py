"""Prefect flows and tasks: the only package that imports Prefect.

The core finds the Prefect runner by name (``runner="prefect"``) through the ``stacube.runners``
entry point that pyproject.toml declares (``download.prefect_runner``, defined in ``runner``); nothing
in the core imports this package. ``download`` holds the download flow; the modules beside it do one job
each for it (see its docstring).
"""

from .download import download
from .many import load_many
from .runner import PrefectRunner, prefect_runner, run_planned
from .sync import sync_catalog

__all__ = ["PrefectRunner", "download", "load_many", "prefect_runner", "run_planned", "sync_catalog"]

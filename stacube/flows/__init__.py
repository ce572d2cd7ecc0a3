"""Prefect flows and tasks. The only package (with the public run path) that imports Prefect."""

from .download import PrefectRunner, download, run_download
from .many import load_many
from .sync import sync_catalog

__all__ = ["PrefectRunner", "download", "load_many", "run_download", "sync_catalog"]

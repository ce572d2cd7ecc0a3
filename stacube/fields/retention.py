"""Retention for published files: what an export folder may keep, and for how long."""

from __future__ import annotations

import os
import time
from pathlib import Path

PUBLISHED_SUFFIXES = (".parquet", ".csv", ".png")


def purge_files(folder: str | os.PathLike, older_than_seconds: float, prefix: str = "parcel-series-") -> list[Path]:
    """Delete published files (``prefix*`` with a published suffix) not modified for ``older_than_seconds``;
    anything else in the folder is left alone.

    Parameters
    ----------
    folder : str or os.PathLike
        The export folder; a missing one holds nothing to delete.
    older_than_seconds : float
        Age, by modification time, past which a file is deleted.
    prefix : str, optional
        The published files' name prefix; only ``.parquet``, ``.csv`` and ``.png`` files with it go.

    Returns
    -------
    list[Path]
        The files deleted, sorted by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_seconds
    deleted = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.startswith(prefix) and path.suffix in PUBLISHED_SUFFIXES \
                and path.stat().st_mtime < cutoff:
            path.unlink()
            deleted.append(path)
    return deleted

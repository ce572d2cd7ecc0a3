"""The README's quickstart runs as printed (the other blocks need real remote services; see the note)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(after_heading: str) -> list[str]:
    """The ```python blocks of one README section."""
    text = README.read_text()
    section = text.split(f"\n## {after_heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_quickstart_runs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STACUBE_CATALOG_DIR", str(tmp_path / "catalogs"))
    (block,) = python_blocks("Quickstart")
    namespace: dict = {}
    exec(compile(block, "README.md#quickstart", "exec"), namespace)
    tile, cube = namespace["tile"], namespace["cube"]
    assert dict(tile.sizes) == {"y": 1200, "x": 1200} and tile.dem.dtype == "float32"
    assert np.isfinite(tile.dem.values).all() and (tile.datamask.values > 0).all()  # all read back offline
    assert len(cube.state()) == 9 and len(cube.history()) == 3  # init, create, one run
    assert (tmp_path / "cubes" / "dem.icechunk").is_dir() and any((tmp_path / "catalogs").iterdir())

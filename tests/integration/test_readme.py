"""The README's quickstart is real: run it as a user would paste it, in a fresh folder and process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from stacube import Cube

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one README section."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_quickstart_runs_as_pasted_and_leaves_the_cube_it_describes(tmp_path):
    (block,) = python_blocks("Quickstart")
    assert "cube.load(roi, offline=True)" in block
    script = tmp_path / "quickstart.py"
    script.write_text(block)
    env = {"STACUBE_CATALOG_DIR": str(tmp_path / "catalogs"), "PATH": "", "HOME": str(tmp_path),
           "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "missing_patches:   []" in done.stdout and "epsg3413/y2x2" in done.stdout
    cube = Cube.open(tmp_path / "cubes" / "dem.icechunk", catalog_dir=tmp_path / "catalogs")
    assert len(cube.state()) == 9 and len(cube.history()) == 3  # init, create, one run: 9 patches
    tile = cube.load(cube.spec.zones["epsg3413"][200:1400, 300:1500], offline=True)
    assert np.isfinite(tile.dem.values).all() and (tile.datamask.values > 0).all()  # every pixel held

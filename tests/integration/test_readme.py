"""The README's quickstart is real: run it as a user would paste it, in a fresh folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quickstart_runs_and_prints_a_tile(tmp_path):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    assert "cube.load(roi, offline=True)" in block
    script = tmp_path / "quickstart.py"
    script.write_text(block)
    env = {"STACUBE_CATALOG_DIR": str(tmp_path / "catalogs"), "PATH": "", "HOME": str(tmp_path),
           "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "missing_patches:   []" in done.stdout
    assert "epsg3413/y2x2" in done.stdout  # the state lists the 9 patches under the ROI
    assert (tmp_path / "cubes" / "dem.icechunk").is_dir()

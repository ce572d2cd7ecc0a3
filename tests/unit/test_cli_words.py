"""CLI errors advise in the command line's words, not the Python API's."""

from __future__ import annotations

from typer.testing import CliRunner

from stacube import Cube
from stacube.cli import app
from stacube.datasets import arcticdem_spec


def _error(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_a_missing_cube_says_how_to_create_one_with_the_cli(tmp_path):
    text = _error("cube", "info", str(tmp_path / "nothing"))
    assert "stacube cube create PATH --spec FILE" in text and "Cube.create" not in text


def test_a_time_on_a_cube_without_time_says_drop_time(tmp_path):
    Cube.create(tmp_path / "dem", arcticdem_spec(32), catalog_dir=tmp_path / "catalog")
    text = _error("cube", "load", str(tmp_path / "dem"), "--bbox", "-45.1,70.2,-45.0,70.3", "--time", "2024-06",
                  "--offline", "--catalog-dir", str(tmp_path / "catalog"))
    assert "drop --time" in text and "toi=None" not in text and "'2024-06'" in text

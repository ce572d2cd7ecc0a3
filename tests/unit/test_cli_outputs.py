"""An output the command line cannot write is refused before the load, naming the output, not the cube."""

from typer.testing import CliRunner

from stacube import Cube, CubeSpec, StacSource, Variable
from stacube.cli import app
from stacube.testing.generate import SampleLayout


def test_an_output_under_a_file_is_refused_before_anything_is_read_and_named_as_the_output(tmp_path):
    spec = CubeSpec(name="dem", zones=[SampleLayout().extent_geobox()], chunks=(256, 256),
                    variables={"dem": Variable("float32", units="m")},
                    source=StacSource(api_url="http://127.0.0.1:9/api", collection="c", assets={"dem": "dem"}))
    cube = Cube.create(tmp_path / "dem", spec, catalog_dir=tmp_path / "catalog")
    x0, y0, _, _ = spec.zones["epsg3413"].extent.boundingbox
    (tmp_path / "afile").write_text("not a folder")
    before = list(cube.history().snapshot)
    for option in ("--out", "--png"):
        target = tmp_path / "afile" / ("x.tif" if option == "--out" else "x.png")
        result = CliRunner().invoke(app, ["cube", "load", str(tmp_path / "dem"), "--bbox",
                                          f"{x0},{y0},{x0 + 500},{y0 + 500}", "--crs", "EPSG:3413", "--offline",
                                          "--catalog-dir", str(tmp_path / "catalog"), option, str(target)])
        assert result.exit_code == 1, result.output
        assert f"cannot write the output {target}" in result.output or f"{target}" in result.output
        assert "cannot write the cube" not in result.output  # before: blamed on the cube, after the load
    assert list(Cube.open(tmp_path / "dem", catalog_dir=tmp_path / "catalog").history().snapshot) == before


def test_counts_below_their_least_are_refused_not_taken_as_defaults():
    for args in (["cube", "download", "c", "--bbox", "0,0,1,1", "--concurrency", "0"],
                 ["cube", "load", "c", "--bbox", "0,0,1,1", "--chunks", "0"],
                 ["catalog", "search", "c", "--limit", "-1"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Invalid value" in result.output, (args, result.output)


def test_expire_takes_a_grace_and_messages_give_command_line_advice(tmp_path):
    spec = CubeSpec(name="dem", zones=[SampleLayout().extent_geobox()], chunks=(256, 256),
                    variables={"dem": Variable("float32", units="m")},
                    source=StacSource(api_url="http://127.0.0.1:9/api", collection="c", assets={"dem": "dem"}))
    Cube.create(tmp_path / "dem", spec, catalog_dir=tmp_path / "catalog")
    result = CliRunner().invoke(app, ["cube", "expire", str(tmp_path / "dem"), "--older-than", "0s", "--grace",
                                      "1h", "--json", "--catalog-dir", str(tmp_path / "catalog")])
    assert result.exit_code == 0, result.output  # before: no such option as --grace
    spec.save(tmp_path / "spec.json")
    again = CliRunner().invoke(app, ["cube", "create", str(tmp_path / "dem"), "--spec", str(tmp_path / "spec.json")])
    assert again.exit_code == 1 and "stacube cube info" in again.output and "Cube.open" not in again.output

"""A run planned on a grown time axis, after which the cube was rolled back to a shorter one: a clear
error before anything is read, not an index error blamed on the source (found by the model test)."""

from __future__ import annotations

import pandas as pd
import pytest

from stacube import Cube, CubeSpec, StacSource, TOIError, Variable

from ..conftest import TIME_LAYOUT


def _four_day_cube(api_url: str, tmp_path) -> Cube:
    spec = CubeSpec(name="series", zones=[TIME_LAYOUT.extent_geobox()], chunks=(384, 384),
                    variables={"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)},
                    time=pd.date_range("2021-06-01", periods=4, freq="D"),
                    source=StacSource(api_url=api_url, collection="sample-series",
                                      assets={"dem": "dem", "datamask": "datamask"}))
    return Cube.create(tmp_path / "cube", spec, catalog_dir=tmp_path / "catalog")


def test_a_run_on_steps_a_rollback_removed_is_refused_naming_them(time_servers, tmp_path):
    _, api = time_servers
    cube = _four_day_cube(api.url, tmp_path)
    short = cube.history().snapshot[0]
    cube.extend_time("2021-06-07")
    plan = cube.plan(TIME_LAYOUT.extent_geobox()[800:900, 0:100], "2021-06-05")  # step 4 ...
    cube.rollback(short)  # ... which the rolled-back axis (4 steps) does not have
    history = list(cube.history().snapshot)
    with pytest.raises(TOIError, match=r"no longer has: its time axis is 4 step\(s\).*20210605"):
        cube.run(plan, concurrency=2, progress=False)
    assert list(cube.history().snapshot) == history  # nothing committed


def test_a_rollback_to_a_shorter_axis_while_a_run_reads_fails_the_run_instead_of_recording_lost_patches(
        time_servers, tmp_path):
    """A run reading steps 4-5 while another process rolls the cube back to 4 steps: its patches on
    those steps have no place in the rolled-back cube. It used to commit anyway, listing patches in its
    commit metadata that no read can reach (found by the model test); now it commits nothing and says so."""
    from dataclasses import dataclass

    from stacube import CubeChangedError
    from stacube.runners import LocalRunner

    _, api = time_servers
    cube = _four_day_cube(api.url, tmp_path)
    short = cube.history().snapshot[0]
    cube.extend_time("2021-06-07")
    roi = TIME_LAYOUT.extent_geobox()[800:900, 0:100]
    plan = cube.plan(roi, slice("2021-06-04", "2021-06-06"))  # steps 3, 4, 5: two beyond the short axis

    @dataclass
    class RolledBackWhileReading(LocalRunner):
        def imap(self, task, patches):
            Cube.open(tmp_path / "cube", catalog_dir=tmp_path / "catalog").rollback(short)  # another process's
            yield from super().imap(task, patches)

    with pytest.raises(CubeChangedError, match=r"rolled back.*4 step\(s\).*20210605"):
        cube.run(plan, RolledBackWhileReading(concurrency=2, progress=False))
    reopened = Cube.open(tmp_path / "cube", catalog_dir=tmp_path / "catalog")
    assert reopened.history().snapshot[0] == short  # nothing committed on top of the rollback
    assert len(reopened.spec.time) == 4 and reopened.state().empty

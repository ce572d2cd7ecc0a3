"""Patch ids read back into their parts; source tiles named from Item properties."""

import pandas as pd
import pytest

from stacube.grid import PatchIndex, parse_patch_id, patch_id, source_tile_name


@pytest.mark.parametrize("when", [None, pd.Timestamp("2024-05-07"), pd.Timestamp("2024-06-20T23:00:00")])
def test_a_patch_id_reads_back_into_zone_time_and_cell(when):
    assert parse_patch_id(patch_id("epsg32633", 12, 7, when)) == ("epsg32633", when, 12, 7)


def test_source_tiles_are_mgrs_names_when_the_item_says_so_else_item_ids():
    assert source_tile_name({"grid:code": "MGRS-32TPS", "s2:mgrs_tile": "32TPX"}, "S2B_32TPS_x") == "32TPS"
    assert source_tile_name({"s2:mgrs_tile": "33TTN"}, "S2A_33TTN_x") == "33TTN"
    assert source_tile_name({"grid:code": "WRS2-193027"}, "LC09_193027") == "LC09_193027"


def test_dask_task_keys_tell_patches_and_runs_apart_without_walking_their_contents():
    from dask.base import tokenize
    from odc.geo.geobox import GeoBox
    from pystac import Item

    from stacube.run import PatchTask

    box = GeoBox.from_bbox((0, 0, 640, 640), "EPSG:32633", resolution=10)
    day = (pd.Timestamp("2024-05-07"), pd.Timestamp("2024-05-08"))

    def item(name):
        return Item(name, None, None, pd.Timestamp("2024-05-07").to_pydatetime(), {})

    def patch(iy=0, ix=0, step=None, items=("a",)):
        return PatchIndex("epsg32633", iy, ix, box, step, day if step is not None else None,
                          tuple(item(i) for i in items))

    assert tokenize(patch()) == tokenize(patch())  # equal patches, equal keys (fresh Item objects)
    others = [patch(iy=1), patch(ix=1), patch(step=0), patch(items=("b",)), patch(items=("a", "b"))]
    assert len({tokenize(p) for p in [patch(), *others]}) == 6
    work = PatchTask(b"fork", None, None)
    assert tokenize(work) == tokenize(work) != tokenize(PatchTask(b"fork", None, None))  # one token per run

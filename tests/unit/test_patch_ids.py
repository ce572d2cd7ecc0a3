"""Patch ids read back into their parts; source tiles named from Item properties."""

import pandas as pd
import pytest

from stacube.grid import parse_patch_id, patch_id, source_tile_name


@pytest.mark.parametrize("when", [None, pd.Timestamp("2024-05-07"), pd.Timestamp("2024-06-20T23:00:00")])
def test_a_patch_id_reads_back_into_zone_time_and_cell(when):
    assert parse_patch_id(patch_id("epsg32633", 12, 7, when)) == ("epsg32633", when, 12, 7)


def test_source_tiles_are_mgrs_names_when_the_item_says_so_else_item_ids():
    assert source_tile_name({"grid:code": "MGRS-32TPS", "s2:mgrs_tile": "32TPX"}, "S2B_32TPS_x") == "32TPS"
    assert source_tile_name({"s2:mgrs_tile": "33TTN"}, "S2A_33TTN_x") == "33TTN"
    assert source_tile_name({"grid:code": "WRS2-193027"}, "LC09_193027") == "LC09_193027"

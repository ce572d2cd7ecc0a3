"""Reprocessed copies of one acquisition: the newest processing is read, the rest listed as superseded."""

import json
from pathlib import Path

import pandas as pd
import pystac

from stacube.duplicates import drop_duplicates

DATA = Path(__file__).parents[1] / "data" / "earth-search"
PC = Path(__file__).parents[1] / "data" / "planetary-computer"
SPLIT = ("S2A_MSIL2A_20240820T173901_R098_T13SED_20240821T000250",
         "S2A_MSIL2A_20240820T173901_R098_T13SED_20240821T001753")


def _recorded(item_id: str) -> dict:
    return json.loads((DATA / f"{item_id}.json").read_text())


def _reprocessed(record: dict, sequence: int, baseline: str, updated: str) -> pystac.Item:
    """A reprocessing of a recorded Item, as Earth Search publishes one (id ..._<n>_L2A, same datetime)."""
    copy = json.loads(json.dumps(record))
    copy["id"] = copy["id"].replace("_0_L2A", f"_{sequence}_L2A")
    copy["properties"].update({"s2:processing_baseline": baseline, "updated": updated, "s2:sequence": str(sequence)})
    return pystac.Item.from_dict(copy)


def test_the_newest_processing_of_one_acquisition_wins():
    record = _recorded("S2A_30TVT_20221112_0_L2A")
    stale = pystac.Item.from_dict(record)
    newer = _reprocessed(record, 1, "05.09", "2024-01-10T00:00:00Z")
    other_tile = pystac.Item.from_dict(_recorded("S2A_32TPS_20230602_0_L2A"))
    kept, superseded = drop_duplicates([stale, other_tile, newer], "newest-processing")
    assert [i.id for i in kept] == ["S2A_32TPS_20230602_0_L2A", "S2A_30TVT_20221112_1_L2A"]
    assert [i.id for i in superseded] == ["S2A_30TVT_20221112_0_L2A"]
    assert drop_duplicates([stale, newer], "keep-all") == ([stale, newer], [])


def test_same_baseline_falls_back_to_updated_then_id():
    record = _recorded("S2A_30TVT_20221112_0_L2A")
    early = _reprocessed(record, 1, "04.00", "2023-01-01T00:00:00Z")
    late = _reprocessed(record, 2, "04.00", "2023-06-01T00:00:00Z")
    assert [i.id for i in drop_duplicates([late, early], "newest-processing")[0]] == [late.id]
    same = _reprocessed(record, 3, "04.00", "2023-06-01T00:00:00Z")
    assert [i.id for i in drop_duplicates([same, late], "newest-processing")[0]] == [same.id]  # greater id


def test_collection_1_and_collection_0_items_of_one_product_are_different_tiles_names_not_duplicates():
    """Earth Search's two collections name one product differently; a cube reads one collection only,
    but within a collection the same granule on another day is never a duplicate."""
    c0 = pystac.Item.from_dict(_recorded("S2A_37WDS_20240419_0_L2A"))
    other_day = pystac.Item.from_dict(_recorded("S2A_13TDE_20231008_0_L2A"))
    assert drop_duplicates([c0, other_day], "newest-processing") == ([c0, other_day], [])


def test_two_halves_of_one_tile_from_two_datastrips_are_both_read_and_a_reprocessing_is_not():
    """Recorded Items: a Planetary Computer granule split across two datastrips (PlanetaryComputer#256) whose
    later half covers 59.5% of the other's footprint, and an Earth Search _0/_1 reprocessing of one datastrip.
    The datastrip's sensing time tells them apart; before, the half covered more than half was dropped
    (1,471 km2 of 13SED lost)."""
    split = [pystac.Item.from_dict(json.loads((PC / f"{name}.json").read_text())) for name in SPLIT]
    assert drop_duplicates(split, "newest-processing") == (split, [])
    stale, newer = (pystac.Item.from_dict(_recorded(f"S2A_32TNT_20200305_{n}_L2A")) for n in (0, 1))
    assert drop_duplicates([stale, newer], "newest-processing") == ([newer], [stale])


def test_items_naming_no_datastrip_are_one_ground_only_where_the_newer_covers_nearly_all_of_the_older():
    def anonymous(item: pystac.Item) -> pystac.Item:
        item = item.clone()
        item.properties.pop("s2:datastrip_id", None)
        return item

    split = [anonymous(pystac.Item.from_dict(json.loads((PC / f"{name}.json").read_text()))) for name in SPLIT]
    assert drop_duplicates(split, "newest-processing") == (split, [])  # 59.5% covered: both read
    stale, newer = (anonymous(pystac.Item.from_dict(_recorded(f"S2A_32TNT_20200305_{n}_L2A"))) for n in (0, 1))
    assert drop_duplicates([stale, newer], "newest-processing") == ([newer], [stale])  # 99.6% covered


def test_one_instant_written_two_ways_is_one_acquisition():
    record = _recorded("S2A_30TVT_20221112_0_L2A")
    stale = pystac.Item.from_dict(record)
    other_way = json.loads(json.dumps(record))
    other_way["id"] = other_way["id"].replace("_0_L2A", "_1_L2A")
    other_way["properties"].update({"s2:processing_baseline": "05.09",  # the same instant, one hour east
                                    "datetime": (stale.datetime + pd.Timedelta(hours=1)).strftime(
                                        "%Y-%m-%dT%H:%M:%S.%f+01:00")})
    newer = pystac.Item.from_dict(other_way)
    assert newer.datetime == stale.datetime
    assert drop_duplicates([stale, newer], "newest-processing") == ([newer], [stale])

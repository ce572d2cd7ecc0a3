"""Reprocessed copies of one acquisition: the newest processing is read, the rest listed as superseded."""

import json
from pathlib import Path

import pystac

from stacube.duplicates import drop_duplicates

DATA = Path(__file__).parents[1] / "data" / "earth-search"


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

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


def test_two_halves_of_one_tile_from_two_datastrips_are_not_duplicates_though_their_key_is_the_same():
    """A granule split across two datastrips is published as two Items of one platform, tile and datetime whose
    footprints do not overlap (PlanetaryComputer#256): each holds pixels the other lacks, so both are read."""
    import shapely

    record = _recorded("S2A_30TVT_20221112_0_L2A")
    whole = shapely.geometry.shape(record["geometry"])
    west, south, east, north = whole.bounds
    middle = (south + north) / 2

    def half(sequence: int, box: tuple, baseline: str) -> pystac.Item:
        item = _reprocessed(record, sequence, baseline, "2023-01-01T00:00:00Z")
        item.geometry = shapely.geometry.mapping(whole.intersection(shapely.box(*box)))
        return item

    upper = half(1, (west, middle, east, north), "05.09")
    lower = half(2, (west, south, east, middle), "04.00")
    assert drop_duplicates([upper, lower], "newest-processing") == ([upper, lower], [])
    # a reprocessed copy of the whole granule still supersedes both halves of the older processing
    newer = _reprocessed(record, 3, "05.10", "2024-01-10T00:00:00Z")
    kept, superseded = drop_duplicates([upper, lower, newer], "newest-processing")
    assert kept == [newer] and superseded == [upper, lower]

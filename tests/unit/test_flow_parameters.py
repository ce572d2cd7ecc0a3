"""Flow parameters: ROIs and TOIs survive the trip through JSON, and rolling TOIs end at the run's start."""

from __future__ import annotations

import pandas as pd
import pytest
from odc.geo.geobox import GeoBox

from stacube import TOIError

pytest.importorskip("prefect")
from stacube.flows import batches, heartbeats, limits, parameters


def test_a_rolling_toi_ends_when_the_run_was_scheduled():
    scheduled = pd.Timestamp("2026-11-22T03:00:00", tz="UTC")
    assert parameters.toi_from_parameter({"last": "7D"}, now=scheduled) == slice(
        pd.Timestamp("2026-11-15T03:00:00"), pd.Timestamp("2026-11-22T03:00:00"))


def test_a_rolling_toi_with_a_bad_duration_names_it():
    with pytest.raises(TOIError, match=r"'a fortnight'.*'last' must be a duration"):
        parameters.toi_from_parameter({"last": "a fortnight"})


@pytest.mark.parametrize("toi", [None, "2024-06", ["2024-06-01", "2024-06-03"],
                                 slice("2024-06-01", "2024-06-30"), slice(None, "2024-06-30")])
def test_tois_round_trip_through_parameters(toi):
    back = parameters.toi_from_parameter(parameters.toi_to_parameter(toi))
    assert back == toi


def test_rois_round_trip_through_parameters():
    roi = GeoBox.from_bbox((-100000, -2000000, -97440, -1997440), "EPSG:3413", resolution=10)
    back = parameters.roi_from_parameter(parameters.roi_to_parameter(roi))
    assert back.crs == roi.crs and back.boundingbox == roi.extent.boundingbox


@pytest.mark.parametrize(("patches", "concurrency", "out_of_process", "sizes"), [
    (1, 8, False, [1]), (32, 8, False, [1] * 32),  # small runs: a task per patch
    (33, 8, False, [2] + [1] * 31),  # not 17 tasks of 2, whose 17th would run alone
    (64, 4, False, [4] * 16), (100, 4, False, [7] * 4 + [6] * 12),
    (1_000, 8, False, [16] * 40 + [15] * 24), (50_000, 8, False, [25] * 2_000),
    (3, 8, True, [1] * 3), (16, 4, True, [4] * 4), (64, 4, True, [16] * 4),
    (100, 4, True, [13] * 4 + [12] * 4),  # two rounds of 4 tasks, not 16, 16, 16, 16 then 16, 16, 4
])
def test_tasks_come_in_whole_rounds_of_even_batches(patches, concurrency, out_of_process, sizes):
    got = batches.task_sizes(patches, concurrency, out_of_process)
    assert got == sizes and sum(got) == patches
    assert len(got) <= 2_000 and (max(got) <= 16 or len(got) == 2_000)  # a retry rereads few; the API carries few
    assert len(got) == patches or len(got) % concurrency == 0  # every round fills every slot


def test_source_limits_name_the_hosts_a_patch_reads_from_earth_engine_included():
    import pystac

    from stacube.grid import PatchIndex

    def item(item_id, href):
        found = pystac.Item(item_id, None, None, pd.Timestamp("2024-01-01").to_pydatetime(), {})
        found.add_asset("B4", pystac.Asset(href))
        return found

    from stacube import EarthEngineSource, StacSource

    stac = StacSource(api_url="https://stac.example.org", collection="c", assets={"red": "B4"})
    patch = PatchIndex("z", 0, 0, None, items=(item("a", "https://data.example.org/a.tif"),
                                               item("b", "https://mirror.example.net/b.tif")))
    assert limits.source_limits(stac, patch) == ["stacube-source-data.example.org", "stacube-source-mirror.example.net"]
    earth_engine = EarthEngineSource(collection="COPERNICUS/S2", bands={"red": "B4"})
    patch = PatchIndex("z", 0, 0, None, items=(item("b", "earthengine://COPERNICUS/S2/b"),))
    assert limits.source_limits(earth_engine, patch) == ["stacube-source-earthengine.googleapis.com"]


def test_an_ad_hoc_flow_run_skips_heartbeats_unless_the_user_set_them():
    """Prefect joins its heartbeat thread (1 s sleeps) when a flow ends: up to 1 s per ad hoc run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    without_idle_heartbeats = heartbeats.without_idle_heartbeats
    default = get_current_settings().flows.heartbeat_frequency
    assert default is not None  # Prefect's default (180 s): on
    before = get_current_settings()
    with temporary_settings(updates={"api.url": "http://127.0.0.1:9/api"}), without_idle_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().api.url == "http://127.0.0.1:9/api"  # every other setting as it was
        assert get_current_settings().flows.default_retries == before.flows.default_retries
    assert get_current_settings().flows.heartbeat_frequency == default
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}), without_idle_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency == 60  # the user's choice stands


def test_prefect_records_a_geobox_or_geometry_roi_as_its_geojson_instead_of_spinning():
    import threading

    from fastapi.encoders import jsonable_encoder
    from odc.geo.geobox import GeoBox

    import stacube.flows.parameters  # noqa: F401 - registers the encoders, as every flow module does

    roi = GeoBox.from_bbox((0, 0, 2560, 2560), "EPSG:3413", resolution=10)
    out = {}
    worker = threading.Thread(target=lambda: out.update(encoded=jsonable_encoder({"roi": roi, "geometry":
                                                                                    roi.extent})), daemon=True)
    worker.start()
    worker.join(timeout=20)  # before: Prefect's encoder indexed the GeoBox for ever
    assert "encoded" in out and out["encoded"]["roi"]["type"] == "Polygon"
    assert out["encoded"]["geometry"]["crs"] == "EPSG:3413"

"""Flow parameters: ROIs and TOIs survive the trip through JSON, and rolling TOIs end at the run's start."""

from __future__ import annotations

import pandas as pd
import pytest
from odc.geo.geobox import GeoBox

from stacube import TOIError

download = pytest.importorskip("stacube.flows.download")


def test_a_rolling_toi_ends_when_the_run_was_scheduled():
    scheduled = pd.Timestamp("2026-11-22T03:00:00", tz="UTC")
    assert download.toi_from_parameter({"last": "7D"}, now=scheduled) == slice(
        pd.Timestamp("2026-11-15T03:00:00"), pd.Timestamp("2026-11-22T03:00:00"))


def test_a_rolling_toi_with_a_bad_duration_names_it():
    with pytest.raises(TOIError, match=r"'a fortnight'.*'last' must be a duration"):
        download.toi_from_parameter({"last": "a fortnight"})


@pytest.mark.parametrize("toi", [None, "2024-06", ["2024-06-01", "2024-06-03"],
                                 slice("2024-06-01", "2024-06-30"), slice(None, "2024-06-30")])
def test_tois_round_trip_through_parameters(toi):
    back = download.toi_from_parameter(download.toi_to_parameter(toi))
    assert back == toi


def test_rois_round_trip_through_parameters():
    roi = GeoBox.from_bbox((-100000, -2000000, -97440, -1997440), "EPSG:3413", resolution=10)
    back = download.roi_from_parameter(download.roi_to_parameter(roi))
    assert back.crs == roi.crs and back.boundingbox == roi.extent.boundingbox


@pytest.mark.parametrize(("patches", "concurrency", "size"), [
    (1, 8, 1), (32, 8, 1), (33, 8, 2), (64, 4, 4), (256, 8, 8), (1_000, 8, 16), (50_000, 8, 25)])
def test_small_runs_get_a_task_per_patch_and_large_runs_batches(patches, concurrency, size):
    assert download.batch_size(patches, concurrency) == size
    tasks = -(-patches // size)
    assert size <= 16 or tasks <= 2_000  # a retry rereads few patches; the API carries few task runs


@pytest.mark.parametrize(("patches", "concurrency", "size"), [
    (1, 8, 1), (8, 8, 1), (16, 4, 4), (64, 4, 16), (65, 4, 16), (1_024, 64, 16), (50_000, 8, 25)])
def test_task_runners_in_other_processes_get_a_task_per_slot(patches, concurrency, size):
    assert download.batch_size(patches, concurrency, out_of_process=True) == size
    tasks = -(-patches // size)
    assert tasks >= min(patches, concurrency)  # every slot still gets work


def test_source_limits_name_the_hosts_a_patch_reads_from_earth_engine_included():
    import pystac

    from stacube.grid import PatchIndex

    def item(item_id, href):
        found = pystac.Item(item_id, None, None, pd.Timestamp("2024-01-01").to_pydatetime(), {})
        found.add_asset("B4", pystac.Asset(href))
        return found

    patch = PatchIndex("z", 0, 0, None, items=(item("a", "https://data.example.org/a.tif"),
                                               item("b", "earthengine://COPERNICUS/S2/b")))
    assert download.source_limits(["B4"], patch, earthengine_host="earthengine.googleapis.com") == [
        "stacube-source-data.example.org", "stacube-source-earthengine.googleapis.com"]


def test_an_ad_hoc_flow_run_skips_heartbeats_unless_the_user_set_them():
    """Prefect joins its heartbeat thread (1 s sleeps) when a flow ends: up to 1 s per ad hoc run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    without_idle_heartbeats = download.without_idle_heartbeats
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

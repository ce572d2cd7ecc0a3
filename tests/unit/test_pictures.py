"""Pictures are checked by rendering them and looking at the pixels where things must be."""

from __future__ import annotations

import geopandas as gpd
import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg

from stacube.pictures import SNAPSHOT_COLOURS, explore, plot_state, quicklook, save_figure, save_map


def _state(times=(None, None, None, None)) -> gpd.GeoDataFrame:
    rows = [  # four patches of 1 x 1 degree: two of snapshot A, one of B, one filled without data
        ("z/y0x0", 10, 50, True, "AAAAAAAA1"), ("z/y0x1", 11, 50, True, "AAAAAAAA1"),
        ("z/y1x0", 10, 49, True, "BBBBBBBB2"), ("z/y1x1", 11, 49, False, "BBBBBBBB2"),
    ]
    return gpd.GeoDataFrame(
        {"id": [r[0] for r in rows], "zone": "z", "time": list(times), "has_data": [r[3] for r in rows],
         "snapshot": [r[4] for r in rows], "run_id": "r",
         "geometry": [shapely.box(r[1], r[2], r[1] + 1, r[2] + 1) for r in rows]}, crs="EPSG:4326")


ZONES = {"z": shapely.box(9.5, 48.5, 12.5, 51.5)}


def _render(fig, tmp_path, name="picture.png") -> np.ndarray:
    path = save_figure(fig, tmp_path / name)
    return mimage.imread(path)[..., :3]


def _pixel(fig, lon: float, lat: float) -> tuple[int, int]:
    """Row and column of a data point in the saved PNG (same dpi as the figure)."""
    FigureCanvasAgg(fig).draw()  # final limits and aspect
    x, y = fig.axes[0].transData.transform((lon, lat))
    return round(fig.bbox.height - y), round(x)


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array(mcolors.to_rgb(hex_colour))


def test_state_picture_colours_patches_by_snapshot_greys_empty_ones_and_shows_zones_and_rois(tmp_path):
    roi = shapely.box(10.2, 49.2, 11.8, 50.8)
    fig = plot_state(_state(), ZONES, [roi], title="cube 'dem'")
    spots = {name: _pixel(fig, lon, lat) for name, (lon, lat) in
             {"a": (10.3, 50.7), "a2": (11.7, 50.3), "b": (10.3, 49.3), "empty": (11.5, 49.5),
              "outside": (9.9, 48.9)}.items()}
    roi_edge = [_pixel(fig, lon, 50.8) for lon in np.linspace(10.9, 11.1, 9)]  # along a dashed line
    image = _render(fig, tmp_path)
    assert image.shape[:2] == (650, 800)
    assert np.allclose(image[spots["a"]], _rgb(SNAPSHOT_COLOURS[0]), atol=0.02)
    assert np.allclose(image[spots["a2"]], _rgb(SNAPSHOT_COLOURS[0]), atol=0.02)
    assert np.allclose(image[spots["b"]], _rgb(SNAPSHOT_COLOURS[1]), atol=0.02)
    r, c = spots["empty"]
    around = image[r - 3 : r + 4, c - 3 : c + 4].reshape(-1, 3)
    assert np.ptp(around, axis=1).max() < 0.05 and around.mean() < 0.9  # grey hatching: no hue, not blank
    assert np.allclose(image[spots["outside"]], 1.0)  # inside the zone, no patch: the white background
    edge = np.concatenate([image[r - 2 : r + 3, c] for r, c in roi_edge])
    assert any(np.allclose(p, _rgb("#d62728"), atol=0.1) for p in edge)  # the dashed red ROI outline


def test_state_picture_by_time_colours_each_place_by_its_latest_step(tmp_path):
    state = pd.concat([_state(times=[pd.Timestamp("2024-05-01")] * 4),
                       _state(times=[pd.Timestamp("2024-06-01")] * 4).iloc[[0]]], ignore_index=True)
    state = gpd.GeoDataFrame(state, geometry="geometry", crs="EPSG:4326")
    fig = plot_state(state, ZONES, color_by="time")
    late, early = _pixel(fig, 10.5, 50.5), _pixel(fig, 11.5, 50.5)
    image = _render(fig, tmp_path)
    assert np.allclose(image[late], _rgb("#fde725"), atol=0.03)  # viridis' top: the latest step
    assert np.allclose(image[early], _rgb("#440154"), atol=0.03)  # viridis' bottom
    assert "5 patches over 2 time steps" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="color_by"):
        plot_state(state, ZONES, color_by="colour")


def test_an_empty_cube_still_draws_its_zones(tmp_path):
    image = _render(plot_state(_state().iloc[0:0], ZONES), tmp_path)
    assert (image < 0.5).any() and image.mean() > 0.8  # zone outline and text, mostly background


def test_the_map_holds_zones_patches_with_tooltips_and_rois_and_fits_them(tmp_path):
    fmap = explore(_state(), ZONES, [shapely.box(10.2, 49.2, 11.8, 50.8)])
    html = save_map(fmap, tmp_path / "state.html").read_text()
    for patch in ("z/y0x0", "z/y0x1", "z/y1x0", "z/y1x1"):
        assert patch in html
    assert "AAAAAAAA1" in html and "last ROIs" in html and "zones" in html
    assert html.count("L.geoJson(") == 3  # zones, patches, ROIs
    assert "[[49.0, 10.0], [51.0, 12.0]]" in html  # opened on the patches and ROIs, as the picture
    empty = save_map(explore(_state().iloc[0:0], ZONES), tmp_path / "empty.html").read_text()
    assert "[[48.5, 9.5], [51.5, 12.5]]" in empty  # an empty cube: its zones


def _tile(nodata_corner: bool = True) -> xr.Dataset:
    ny, nx = 40, 60
    red = np.zeros((ny, nx), "float32")
    red[:, : nx // 2] = 1000
    blue = 1000 - red
    green = np.zeros((ny, nx), "float32")
    ramp = np.tile(np.linspace(0, 1, nx, dtype="float32"), (ny, 1))
    if nodata_corner:
        for band in (red, green, blue, ramp):
            band[:10, :10] = np.nan
    coords = {"y": 1000.0 - 10 * np.arange(ny) - 5, "x": 10 * np.arange(nx) + 5.0}
    attrs = {"nodata": float("nan")}
    return xr.Dataset({name: (("y", "x"), v, {**attrs, "units": "1"}) for name, v in
                       {"red": red, "green": green, "blue": blue, "ndvi": ramp}.items()}, coords=coords)


def test_an_rgb_quicklook_shows_red_left_blue_right_and_leaves_nodata_blank(tmp_path):
    fig = quicklook(_tile(), ["red", "green", "blue"], title="true colour")
    left, right, nodata = _pixel(fig, 100, 700), _pixel(fig, 500, 700), _pixel(fig, 40, 960)
    image = _render(fig, tmp_path)
    assert np.allclose(image[left], (1, 0, 0), atol=0.02)
    assert np.allclose(image[right], (0, 0, 1), atol=0.02)
    assert np.allclose(image[nodata], 1.0)  # transparent over the white figure
    assert fig.axes[0].get_title() == "true colour"


def test_a_single_band_quicklook_maps_values_to_the_colour_bar_and_takes_a_time_step(tmp_path):
    tile = _tile().expand_dims(time=pd.to_datetime(["2024-05-02", "2024-05-07"]))
    fig = quicklook(tile, "ndvi", time="2024-05-02")
    low, high = _pixel(fig, 5, 700), _pixel(fig, 595, 700)
    image = _render(fig, tmp_path)
    assert np.allclose(image[low], _rgb("#440154"), atol=0.03)
    assert np.allclose(image[high], _rgb("#fde725"), atol=0.03)
    assert fig.axes[0].get_title() == "ndvi on 2024-05-02 00:00"
    assert fig.axes[1].get_ylabel() == "ndvi [1]"  # the colour bar names the variable and its units
    with pytest.raises(ValueError, match="one variable or three"):
        quicklook(tile, ["red", "green"])

"""A real cube's state picture and map: its patches, snapshots and the ROIs its runs downloaded."""

from __future__ import annotations

import geopandas as gpd
import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from stacube.pictures import SNAPSHOT_COLOURS, save_figure, save_map


def test_plot_state_and_explore_show_each_run_in_its_colour_with_its_roi(servers, make_cube, sample_layout, tmp_path):
    cube = make_cube(servers[1].url)
    zone = sample_layout.extent_geobox()
    first = cube.download(zone[0:512, 0:512])
    second = cube.download(zone[1024:1536, 1024:1536])
    assert len(cube.rois()) == 2
    fig = cube.plot_state()
    FigureCanvasAgg(fig).draw()
    state = cube.state()
    image = mimage.imread(save_figure(fig, tmp_path / "state.png"))[..., :3]
    for report, colour in ((first, SNAPSHOT_COLOURS[0]), (second, SNAPSHOT_COLOURS[1])):
        for patch in state[state.snapshot == report.snapshot_id].itertuples():
            centre = patch.geometry.centroid
            x, y = fig.axes[0].transData.transform((centre.x, centre.y))
            assert np.allclose(image[round(fig.bbox.height - y), round(x)], mcolors.to_rgb(colour), atol=0.02)
    html = save_map(cube.explore(), tmp_path / "state.html").read_text()
    assert all(patch in html for patch in state.id) and second.snapshot_id in html


def test_a_few_patches_on_a_large_zone_fill_the_picture_not_the_zone(servers, make_cube, sample_layout):
    cube = make_cube(servers[1].url)
    zone = sample_layout.extent_geobox()
    report = cube.download(zone[0:256, 0:512])  # 2 of the zone's 64 patches
    state = cube.state()
    assert len(state) == 2
    fig = cube.plot_state()
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    west, south, east, north = gpd.GeoSeries([*state.geometry, *cube.rois()], crs="EPSG:4326").total_bounds
    pad = max(east - west, north - south) * 0.1
    assert np.allclose((x0, y0, x1, y1), (west - pad, south - pad, east + pad, north + pad))  # patches + ROI
    zone_west, zone_south, zone_east, zone_north = cube.zone_footprints()["epsg3413"].bounds
    assert (x1 - x0) < (zone_east - zone_west) / 2 and (y1 - y0) < (zone_north - zone_south) / 2  # not the zone
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert f"snapshot {report.snapshot_id} (2)" in labels  # the whole id, to copy

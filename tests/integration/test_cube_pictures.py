"""A real cube's state picture and map: its patches, snapshots and the ROIs its runs downloaded."""

from __future__ import annotations

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

"""Run in a child process by test_tile_shape: a lazy load written to a COG, or only the imports and the
cube opened (the baseline); prints the child's peak RSS in MB."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from odc.geo.geobox import GeoBox

from stacube import Cube
from stacube.export import write_cog
from stacube.memory import peak_rss_mb

cube_path, catalog, out, mode, box = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
cube = Cube.open(cube_path, catalog_dir=catalog)
roi = GeoBox.from_bbox(box["bbox"], box["crs"], resolution=box["resolution"])
if mode == "lazy":
    tile = cube.load(roi, offline=True, variables="dem", chunks={"x": 2048, "y": 2048})
    write_cog(tile.dem, out)
elif mode == "eager":
    tile = cube.load(roi, offline=True, variables="dem")
    write_cog(tile.dem, out)
print(json.dumps({"peak_mb": peak_rss_mb()}))  # this child's own peak, not the forking pytest process's

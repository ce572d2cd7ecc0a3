"""Run in a child process by test_tile_shape: a lazy load written to a COG, or only the imports and the
cube opened (the baseline); prints the child's peak RSS in MB."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from odc.geo.geobox import GeoBox

from stacube import Cube
from stacube.cli import write_cog

cube_path, catalog, out, mode, box = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
cube = Cube.open(cube_path, catalog_dir=catalog)
roi = GeoBox.from_bbox(box["bbox"], box["crs"], resolution=box["resolution"])
if mode == "lazy":
    tile = cube.load(roi, offline=True, variables="dem", chunks={"x": 2048, "y": 2048})
    write_cog(tile.dem, out)
elif mode == "eager":
    tile = cube.load(roi, offline=True, variables="dem")
    write_cog(tile.dem, out)
# VmHWM starts afresh at exec; ru_maxrss would carry the forking pytest process's peak into this one
status = Path("/proc/self/status").read_text()
peak = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"peak_mb": peak}))

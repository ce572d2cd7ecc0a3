"""What a CRC32C per stored chunk costs a warm load: two cubes of the same data, with and without it.

Both cubes are filled from the same locally served sample, then warm-loaded in turns in this one
process (``--repeat`` rounds, the order alternating), so the two figures share the machine's noise.
Reported: CPU seconds per load (median), the ratio, and the bytes each store holds.

    .venv/bin/python bench/checksums.py [--tile-size 1024] [--chunks 2048] [--repeat 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--chunks", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()

    import stacube.layout as layout
    from stacube import Cube, CubeSpec, StacSource, Variable
    from stacube.testing.generate import SampleLayout, generate_sample
    from stacube.testing.servers import serve_sample

    sample_layout = SampleLayout(tile_size=args.tile_size, overlap=args.tile_size // 16, rows=4, cols=4)
    zone = sample_layout.extent_geobox()
    roi = zone[40 : zone.shape.y - 40, 40 : zone.shape.x - 40]
    with_crc = layout.COMPRESSORS
    without = tuple(c for c in with_crc if type(c).__name__ != "Crc32cCodec")
    with tempfile.TemporaryDirectory() as tmp:
        folder = generate_sample(Path(tmp) / "sample", sample_layout)
        cubes = {}
        with serve_sample(folder) as (_files, api):
            for label, codecs in (("with crc32c", with_crc), ("without", without)):
                layout.COMPRESSORS = codecs
                spec = CubeSpec(name="bench", zones=[zone], chunks=(args.chunks, args.chunks),
                                variables={"dem": Variable("float32", units="m"),
                                           "datamask": Variable("uint8", nodata=0)},
                                source=StacSource(api_url=api.url, collection="sample-dem",
                                                  assets={"dem": "dem", "datamask": "datamask"}))
                path = Path(tmp) / label.replace(" ", "-")
                cubes[label] = (Cube.create(path, spec, catalog_dir=Path(tmp) / f"catalog-{path.name}"), path)
                cubes[label][0].load(roi, progress=False)
        layout.COMPRESSORS = with_crc
        seconds: dict[str, list[float]] = {label: [] for label in cubes}
        for _, path in cubes.values():  # a first load of each, untimed: imports, thread pools, page cache
            Cube.open(path, catalog_dir=Path(tmp) / f"catalog-{path.name}").load(roi, offline=True)
        for round_ in range(args.repeat):
            order = list(cubes) if round_ % 2 == 0 else list(cubes)[::-1]
            for label in order:
                cube = Cube.open(cubes[label][1], catalog_dir=Path(tmp) / f"catalog-{cubes[label][1].name}")
                started = time.process_time()
                tile = cube.load(roi, offline=True)
                seconds[label].append(time.process_time() - started)
                del tile
        sizes = {label: sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) for label, (_, path) in
                 cubes.items()}
    print(f"warm load of {roi.shape.y} x {roi.shape.x} px (2 variables, chunks {args.chunks}), median of "
          f"{args.repeat}, CPU seconds, alternating order in one process")
    base = statistics.median(seconds["without"])
    for label in cubes:
        median = statistics.median(seconds[label])
        print(f"{label:14}{median:8.3f} s{median / base:8.3f}x{sizes[label] / 1e6:9.1f} MB stored")


if __name__ == "__main__":
    main()

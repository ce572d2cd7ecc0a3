"""What bringing each Item's numbers into the cube's convention costs per patch, in CPU seconds.

A Sentinel-2 patch (``--size`` px a side, uint16, 5 % nodata) is made cube-ready four ways, each
``--repeat`` times in this process, measured with ``time.process_time`` (steadier than wall time on
a shared machine):

- ``as read``: the Items already hold the cube's convention (only nodata is mapped, as before);
- ``baseline shift``: an Item of processing baseline before 04.00 gains 1000 DN (integer path);
- ``rescale to float``: Landsat's DN * 2.75e-05 - 0.2 into a float32 variable (float path);
- ``two conventions``: a patch fed by two Items of different baselines, read one plane per Item,
  each converted, then mosaicked first valid wins (what a patch at a baseline change costs).

It also prints a whole patch read (``StacBackend.read``) of served COGs, with and without a
conversion, so the share of the conversion in a read shows.

    .venv/bin/python bench/radiometry.py [--size 1024] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cpu(function, repeat: int) -> float:
    """Median CPU seconds of ``function()`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        function()
        times.append(time.process_time() - started)
    return statistics.median(times)


def conversions(size: int, repeat: int) -> None:
    from stacube.radiometry import Convention, convert
    from stacube.sources.stac.backend import to_cube_nodata
    from stacube.spec import Variable
    from stacube.variables import valid_mask, valid_values

    rng = np.random.default_rng(0)
    dn = rng.integers(1, 12000, (size, size), dtype="uint16")
    dn[: size // 20] = 0
    cube = Convention(0.0001, -0.1)
    variable = Variable("uint16", nodata=0, scale_factor=0.0001, add_offset=-0.1)

    def as_read():
        to_cube_nodata(dn.copy(), 0, np.dtype("uint16"), 0)

    def shift():
        convert(dn, valid_values(dn, 0), Convention(0.0001, 0.0), cube, np.dtype("uint16"), 0)

    def to_float():
        convert(dn, valid_values(dn, 0), Convention(2.75e-05, -0.2), Convention(), np.dtype("float32"),
                float("nan"))

    def two_items():
        first, _ = convert(dn, valid_values(dn, 0), Convention(0.0001, 0.0), cube, np.dtype("uint16"), 0)
        second = to_cube_nodata(dn[::-1].copy(), 0, np.dtype("uint16"), 0)
        taken = ~valid_mask(first, variable) & valid_mask(second, variable)
        first[taken] = second[taken]

    base = _cpu(as_read, repeat)
    print(f"one {size} x {size} uint16 patch, CPU seconds (median of {repeat})")
    print(f"{'':22}{'CPU s':>8}{'vs as read':>12}")
    for label, function in (("as read", as_read), ("baseline shift", shift), ("rescale to float", to_float),
                            ("two conventions", two_items)):
        cpu = _cpu(function, repeat)
        print(f"{label:22}{cpu:8.4f}{cpu / base:11.1f}x")


def patch_reads(size: int, repeat: int) -> None:
    """A whole patch read of served granules (four bands), as published (shifted, converted on read)
    and with the cube's convention declared as the Items' own (nothing to convert)."""
    import dataclasses

    import pystac_client

    from stacube.datasets import sentinel2_l2a_spec
    from stacube.grid import PatchIndex
    from stacube.sources.stac.backend import StacBackend
    from stacube.testing.granules import border_granules, generate_sentinel2
    from stacube.testing.servers import serve_sample

    granule = next(g for g in border_granules(size=size) if g.id.startswith("S2A_33TTN_20240605"))
    with tempfile.TemporaryDirectory() as tmp, \
            serve_sample(generate_sentinel2(Path(tmp) / "s2", [granule])) as (_files, api):
        items = list(pystac_client.Client.open(api.url).search(collections=["sentinel-2-l2a"]).items())
        spec = sentinel2_l2a_spec((11.9, 46.9, 12.1, 47.1), "2024-06-01", "2024-06-30", api_url=api.url,
                                  chunks=(size, size), bands=("B04", "B08", "B11", "SCL"))
        box = granule.geobox()
        patch = PatchIndex("epsg32633", 0, 0, box, 4, None, tuple(items))
        converted = StacBackend(spec.source, spec.variables)
        as_cube = StacBackend(dataclasses.replace(spec.source, radiometry="as-cube"), spec.variables)
        converted.read(patch), as_cube.read(patch)  # warm GDAL's caches and odc-stac's imports
        print(f"\na whole patch read of one served granule ({size} px, B04 B08 B11 SCL), CPU seconds "
              f"(median of {repeat})")
        plain = _cpu(lambda: as_cube.read(patch), repeat)
        shifted = _cpu(lambda: converted.read(patch), repeat)
        print(f"{'as the cube holds':22}{plain:8.4f}")
        print(f"{'converted per Item':22}{shifted:8.4f}{shifted / plain:11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    conversions(args.size, args.repeat)
    patch_reads(args.size, max(5, args.repeat // 4))


if __name__ == "__main__":
    main()

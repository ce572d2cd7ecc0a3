"""Reprojection in threads, as patches are read: rasterio's note about its own in-memory buffers
(NotGeoreferencedWarning, which it silences with the thread-unsafe warnings.catch_warnings) never
reaches the user; a file of theirs without a geotransform still warns."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys, threading, warnings

    warnings.simplefilter("always")  # as `python -W always`: every warning shown, every time
    import numpy as np
    import rasterio, rasterio.warp
    from affine import Affine

    if sys.argv[1] == "stacube":
        import stacube  # noqa: F401
    seen = []
    warnings.showwarning = lambda message, category, filename, *rest, **kw: seen.append((category.__name__,
                                                                                         filename))
    path = sys.argv[2]  # first: threaded reprojection can leave rasterio's "ignore" filter behind
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 4, 4), "uint8"))
    seen.clear()
    with rasterio.open(path) as src:
        src.transform
    print("file", [name for name, _ in seen])
    seen.clear()

    def reproject():  # 20 m onto 10 m, array to array: two in-memory datasets per call
        for _ in range(400):
            rasterio.warp.reproject(np.ones((64, 64), "float32"), np.zeros((128, 128), "float32"),
                                    src_transform=Affine(20, 0, 0, 0, -20, 1280), src_crs="EPSG:32632",
                                    dst_transform=Affine(10, 0, 0, 0, -10, 1280), dst_crs="EPSG:32632")

    threads = [threading.Thread(target=reproject) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("threads", [name for name, filename in seen if filename.endswith("warp.py")])
""")


def _run(tmp_path, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args, str(tmp_path / "plain.tif")], capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout.splitlines()


def test_threaded_reprojection_warns_of_nothing_but_a_file_without_geotransform_still_warns(tmp_path):
    file, threads = _run(tmp_path, "stacube")
    assert file == "file ['NotGeoreferencedWarning']"  # the user's file: still named
    assert threads == "threads []"  # rasterio's own buffers: never

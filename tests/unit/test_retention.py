"""Published files are purged by age and name; nothing else in the folder is touched."""

from __future__ import annotations

import os
import time

from stacube.fields.retention import purge_files


def test_only_old_published_files_are_deleted(tmp_path):
    old, new = time.time() - 10 * 86400, time.time()
    names = {"parcel-series-20240101.parquet": old, "parcel-series-20240101.csv": old,
             "parcel-series-20240301.png": new, "notes.csv": old, "parcel-series-x.txt": old}
    for name, stamp in names.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (stamp, stamp))
    deleted = purge_files(tmp_path, 5 * 86400)
    assert sorted(p.name for p in deleted) == ["parcel-series-20240101.csv", "parcel-series-20240101.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.csv", "parcel-series-20240301.png",
                                                          "parcel-series-x.txt"]
    assert purge_files(tmp_path / "missing", 0) == []

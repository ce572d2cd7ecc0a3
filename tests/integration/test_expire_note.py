"""`expire` says when snapshots expired but nothing could be freed because of the grace period."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from stacube.cli import app


def test_expire_says_when_the_grace_period_kept_everything(servers, make_cube, sample_layout, tmp_path):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    cube.download(zone[0:256, 0:256])
    cube.download(zone[256:512, 0:256])  # the first run's snapshot is no longer the tip
    result = CliRunner().invoke(app, ["cube", "expire", cube.url, "--older-than", "0s", "--json",
                                      "--catalog-dir", str(tmp_path / "catalog")])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # the first run's snapshot was the tip within the grace (a run may stand on it): kept, and said so
    assert report["snapshots_expired"] == 0 and report["bytes_freed"] == 0 and report["kept_as_recent_tips"] >= 1
    assert "were the branch tip within the grace period" in report["note"]
    shown = CliRunner().invoke(app, ["cube", "expire", cube.url, "--older-than", "0s",
                                     "--catalog-dir", str(tmp_path / "catalog")])
    assert shown.exit_code == 0 and "MB freed" in shown.stdout
    freed = cube.expire("0s", grace="0s")  # nothing held back now: the expired snapshots' objects go
    assert freed.bytes_freed > 0 and freed.note is None

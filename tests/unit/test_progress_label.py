"""The download bar says what its MB count: the values' uncompressed size, not what is stored."""

from __future__ import annotations

from dataclasses import dataclass

from stacube.runners import LocalRunner


@dataclass
class Written:
    nbytes: int


def test_the_bar_counts_uncompressed_megabytes(capsys):
    results = LocalRunner(concurrency=2, progress=True).map(lambda patch: Written(1_500_000), ["a", "b", "c", "d"])
    assert [r.nbytes for r in results] == [1_500_000] * 4
    bar = capsys.readouterr().err
    assert "4/4" in bar and "6.0 MB uncompressed" in bar

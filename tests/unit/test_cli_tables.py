"""Tables for people: every id whole, on any terminal, and one row per line into a pipe."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from stacube.cli_tables import print_table

ROWS = [{"snapshot": "N3T08E0H2GMADF52P390", "time": pd.Timestamp("2024-06-01 10:00:01.5", tz="UTC"),
         "message": "stacube: 9 patches from sample-dem", "run_id": "092f5e0a8dcb4e279f197d082f2a3a99",
         "paths": ["/tmp/a/tile_dem.tif", "/tmp/a/tile_datamask.tif"], "missing": None},
        {"snapshot": "1CECHNKREP0F1RSTCMT0", "time": pd.Timestamp("2024-06-01 10:00:00", tz="UTC"),
         "message": "Repository initialized", "run_id": float("nan"), "paths": [], "missing": None}]
IDS = ["N3T08E0H2GMADF52P390", "092f5e0a8dcb4e279f197d082f2a3a99", "1CECHNKREP0F1RSTCMT0", "/tmp/a/tile_dem.tif",
       "/tmp/a/tile_datamask.tif"]


def _whole(word: str, text: str) -> bool:
    return re.search(rf"(?<![^\s│┃]){re.escape(word)}(?![^\s│┃])", text) is not None


@pytest.mark.parametrize("columns", [50, 60, 140])
def test_ids_are_whole_and_every_line_fits_the_terminal(monkeypatch, capsys, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    print_table(ROWS, "history")
    text = capsys.readouterr().out
    assert all(_whole(i, text) for i in IDS), text
    assert max(len(line) for line in text.splitlines()) <= columns and "…" not in text, text
    assert "nan" not in text and "None" not in text  # missing values are left blank
    assert "10:00:01+00:00" in text and "10:00:00+00:00" in text  # to the second, with its zone
    table = "┃" in text
    assert table == (columns >= 140), text  # a table when the ids fit in one, else records


def test_a_record_that_cannot_fit_runs_past_the_edge_rather_than_cut_an_id(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "20")
    print_table({"snapshot": "N3T08E0H2GMADF52P390", "url": "s3://bucket/a/rather/long/prefix/dem.icechunk"},
                "tag")
    text = capsys.readouterr().out
    assert "snapshot  N3T08E0H2GMADF52P390" in text
    assert "url       s3://bucket/a/rather/long/prefix/dem.icechunk" in text


def test_into_a_pipe_each_row_is_one_line_at_its_natural_width(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    print_table([{k: v for k, v in row.items() if k != "paths"} for row in ROWS], "history")
    lines = capsys.readouterr().out.splitlines()
    assert any("N3T08E0H2GMADF52P390" in line and "stacube: 9 patches from sample-dem" in line and
               "092f5e0a8dcb4e279f197d082f2a3a99" in line for line in lines), lines

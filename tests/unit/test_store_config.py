"""What stacube asks of Icechunk and where names may lead: the manifest cache bound, export names."""

import pytest

from stacube import SpecError
from stacube.store import CHUNK_REFS_CACHED, _config


def test_repositories_open_with_a_bounded_manifest_cache(monkeypatch):
    monkeypatch.delenv("STACUBE_CHUNK_REFS_CACHED", raising=False)
    assert _config().caching.num_chunk_refs == CHUNK_REFS_CACHED == 250_000
    monkeypatch.setenv("STACUBE_CHUNK_REFS_CACHED", "2000000")
    assert _config().caching.num_chunk_refs == 2_000_000
    monkeypatch.setenv("STACUBE_CHUNK_REFS_CACHED", "lots")
    with pytest.raises(ValueError, match="STACUBE_CHUNK_REFS_CACHED='lots'"):
        _config()


@pytest.mark.parametrize("name", ["../series", "a/b", "..", "/tmp/x"])
def test_an_export_name_cannot_lead_out_of_its_folder(name, tmp_path):
    import geopandas as gpd
    import pandas as pd

    from stacube.fields.publish import export_series

    with pytest.raises(SpecError, match="export name"):
        export_series(pd.DataFrame(), gpd.GeoDataFrame(), tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists() and list(tmp_path.parent.glob("series*")) == []

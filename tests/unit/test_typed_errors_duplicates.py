"""A duplicate rule stacube does not know is refused where Items are chosen too, not only where a spec is
made: it used to read as "newest-processing" (issue 22.4)."""

from __future__ import annotations

import pystac
import pytest

from stacube.duplicates import drop_duplicates
from stacube.errors import SpecError

from .test_duplicates import _recorded, _reprocessed


def _two_processings() -> list[pystac.Item]:
    record = _recorded("S2A_30TVT_20221112_0_L2A")
    return [pystac.Item.from_dict(record), _reprocessed(record, 1, "05.09", "2024-01-10T00:00:00Z")]


@pytest.mark.parametrize("rule", ["newest", "Keep-All", "", None, "newest-processing "])
@pytest.mark.parametrize("count", [0, 1, 2])
def test_an_unknown_rule_is_a_spec_error_naming_it_however_few_the_items(rule, count):
    with pytest.raises(SpecError) as raised:
        drop_duplicates(_two_processings()[:count], rule)
    assert f"unknown duplicate rule {rule!r}" in str(raised.value) and isinstance(raised.value, ValueError)


def test_the_known_rules_choose_as_before():
    stale, newer = _two_processings()
    assert drop_duplicates([stale, newer], "keep-all") == ([stale, newer], [])
    assert drop_duplicates([stale, newer], "newest-processing") == ([newer], [stale])
    assert drop_duplicates([stale], "newest-processing") == ([stale], [])

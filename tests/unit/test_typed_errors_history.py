"""A cube's versions refuse bad input with an error of the tree that names the value (issue 22.4):
an ``older_than`` or ``grace`` that is no age is a TOIError, checked before anything expires; a tag
in use is a SpecError. Valid values behave as before."""

from __future__ import annotations

import datetime as dt

import icechunk
import numpy as np
import pandas as pd
import pytest
import zarr

from stacube.errors import PermanentError, SpecError, StacubeError, TOIError
from stacube.history import cutoff, expire, tag


@pytest.mark.parametrize(("value", "named"), [
    (None, "older_than=None"), ("", "older_than=''"), ("  ", "older_than='  '"), ("NaT", "older_than='NaT'"),
    (pd.NaT, "older_than=NaT"), (np.timedelta64("NaT", "ns"), "older_than=np.timedelta64('NaT','ns')"),
    (30, "older_than=30"), (2.5, "older_than=2.5"), ("30", "older_than='30'"),  # pandas: nanoseconds
    ("-1D", "older_than='-1D'"), (dt.timedelta(hours=-1), "older_than=datetime.timedelta(days=-1"),
    ("abc", "older_than='abc'"), (dt.date(2024, 1, 1), "older_than=datetime.date(2024, 1, 1)"),
    ("2024-01-01", "older_than='2024-01-01'"), (True, "older_than=True"), ([1], "older_than=[1]"),
    ("1000000D", "older_than='1000000D'"),  # past what a timestamp holds
])
def test_an_older_than_that_is_no_age_is_a_toi_error_naming_it(value, named):
    with pytest.raises(TOIError) as raised:
        cutoff(value)
    assert named in str(raised.value)
    assert isinstance(raised.value, PermanentError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize(("value", "age"), [
    ("30D", pd.Timedelta("30D")), ("24h", pd.Timedelta("24h")), ("0s", pd.Timedelta(0)),
    (dt.timedelta(days=2), pd.Timedelta("2D")), (np.timedelta64(3, "h"), pd.Timedelta("3h")),
    (pd.Timedelta("90min"), pd.Timedelta("90min")),
])
def test_a_duration_is_how_long_before_now(value, age):
    before = pd.Timestamp.now(tz="UTC")
    when = pd.Timestamp(cutoff(value))
    assert before - age - pd.Timedelta("1s") <= when <= pd.Timestamp.now(tz="UTC") - age
    assert when.tz is not None


def test_an_instant_is_taken_as_it_is_and_a_naive_one_as_utc():
    assert cutoff(dt.datetime(2024, 1, 1)) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    paris = pd.Timestamp("2024-01-01 01:00", tz="Europe/Paris")
    assert cutoff(paris) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _repo_with_two_commits() -> icechunk.Repository:
    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    for step in range(2):
        session = repo.writable_session("main")
        zarr.group(session.store).attrs["step"] = step
        session.commit(f"step {step}")
    return repo


@pytest.mark.parametrize(("older_than", "grace", "named"), [
    (None, "24h", "older_than=None"), ("", "24h", "older_than=''"), (5, "24h", "older_than=5"),
    ("0s", None, "grace=None"), ("0s", "-1h", "grace='-1h'"), ("0s", "24", "grace='24'"),
])
def test_expire_checks_both_ages_before_it_expires_anything(older_than, grace, named):
    repo = _repo_with_two_commits()
    before = [s.id for s in repo.ancestry(branch="main")]
    with pytest.raises(TOIError, match=named):
        expire(repo, older_than, grace=grace)
    assert [s.id for s in repo.ancestry(branch="main")] == before


def test_a_tag_in_use_is_a_spec_error_naming_it_and_where_it_points():
    repo = _repo_with_two_commits()
    tip = tag(repo, "v1")
    with pytest.raises(SpecError) as raised:
        tag(repo, "v1")
    assert "tag 'v1' exists already" in str(raised.value) and tip in str(raised.value)
    assert isinstance(raised.value, PermanentError) and isinstance(raised.value, StacubeError)
    assert repo.lookup_tag("v1") == tip  # tags never move

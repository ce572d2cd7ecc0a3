"""Shared fixtures: the synthetic sample collections, generated once per test session."""

from __future__ import annotations

import pytest

from stacube.testing.generate import SampleLayout, generate_sample

TIME_LAYOUT = SampleLayout(rows=2, cols=2, times=("2021-06-01T10:00:00", "2021-06-03T10:00:00", "2021-06-05T10:00:00"))


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    return generate_sample(tmp_path_factory.mktemp("sample-dem"))


@pytest.fixture(scope="session")
def sample_layout() -> SampleLayout:
    return SampleLayout()

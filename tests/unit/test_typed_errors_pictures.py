"""Pictures refuse bad arguments with an error of the tree naming the value (issue 22.4): SpecError
(still a ValueError) for the bands or colouring asked, TOIError for a time step the Tile lacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stacube.errors import SpecError, TOIError
from stacube.pictures import plot_state, quicklook

from .test_pictures import ZONES, _state, _tile


def test_an_unknown_colouring_is_a_spec_error_naming_it():
    with pytest.raises(SpecError, match="'colour'") as raised:
        plot_state(_state(), ZONES, color_by="colour")
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(("bands", "named"), [(["red", "green"], "['red', 'green']"), ("nir", "['nir']"),
                                              (["red", "green", "nir"], "'nir'")])
def test_bands_that_are_not_one_or_three_variables_are_a_spec_error(bands, named):
    with pytest.raises(SpecError, match="one variable or three") as raised:
        quicklook(_tile(), bands)
    assert named in str(raised.value) and isinstance(raised.value, ValueError)


def test_a_tile_without_variables_is_a_spec_error_not_a_stop_iteration():
    with pytest.raises(SpecError, match="no variable"):
        quicklook(xr.Dataset(coords={"y": [5.0], "x": [5.0]}))


def _timed(steps: int = 2) -> xr.Dataset:
    return _tile().expand_dims(time=pd.date_range("2024-05-02", periods=steps, freq="5D"))


@pytest.mark.parametrize(("time", "named"), [(2, "time=2"), (-3, "time=-3"), (np.int64(5), "time=np.int64(5)"),
                                             ("soonish", "time='soonish'"), ("", "time=''"), (pd.NaT, "time=NaT")])
def test_a_time_step_the_tile_lacks_is_a_toi_error_naming_it(time, named):
    with pytest.raises(TOIError) as raised:
        quicklook(_timed(), "ndvi", time=time)
    assert named in str(raised.value)


def test_a_tile_with_a_time_axis_but_no_step_is_a_toi_error():
    with pytest.raises(TOIError, match="no time step"):
        quicklook(_timed().isel(time=slice(0, 0)), "ndvi")


@pytest.mark.parametrize(("time", "shown"), [(None, "2024-05-07"), (0, "2024-05-02"), (-1, "2024-05-07"),
                                             (np.int64(1), "2024-05-07"), ("2024-05-03", "2024-05-02")])
def test_a_step_is_chosen_as_before(time, shown):
    fig = quicklook(_timed(), "ndvi", time=time)
    assert fig.axes[0].get_title() == f"ndvi on {shown} 00:00"

"""Pictures of a cube: what it holds (a static figure and an interactive map) and a Tile's quick-look.

Matplotlib ``Figure`` objects are built directly (no pyplot, no global state), so pictures work in
scripts, notebooks, Prefect workers and the CLI alike; folium maps carry no tile layer that must be
fetched, so they open offline. Both libraries are imported only when a picture is asked for.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import SpecError, TOIError

if TYPE_CHECKING:
    import folium
    import geopandas as gpd
    import xarray as xr
    from matplotlib.figure import Figure

ZONE_COLOUR = "#333333"
ROI_COLOUR = "#d62728"
EMPTY_COLOUR = "#bdbdbd"
SNAPSHOT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def snapshot_colours(state: gpd.GeoDataFrame) -> dict[str, str]:
    """A colour per snapshot, in the order snapshots first appear (the record is sorted by zone/time/id),
    so that the figure and the map colour a snapshot alike.

    Parameters
    ----------
    state : geopandas.GeoDataFrame
        ``Cube.state()``: a row per filled patch (``id``, ``zone``, ``time``, ``has_data``, ``snapshot``,
        ``run_id``, geometry in EPSG:4326).

    Returns
    -------
    dict[str, str]
        A hex colour per snapshot id (``"unknown"`` for patches without one); colours repeat after eight.
    """
    snapshots = list(dict.fromkeys(state["snapshot"].fillna("unknown")))
    return {snap: SNAPSHOT_COLOURS[i % len(SNAPSHOT_COLOURS)] for i, snap in enumerate(snapshots)}


def _latest_per_place(state: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One row per patch footprint: its latest time step (a spatio-temporal cube repeats each place)."""
    places = state.assign(_place=state["zone"] + "/" + state["id"].str.rsplit("/", n=1).str[-1])
    return places.sort_values("time").drop_duplicates("_place", keep="last").drop(columns="_place")


def check_color_by(color_by: Any) -> None:
    """Refuse a ``color_by`` ``plot_state`` cannot draw, before the cube's state is read for it.

    Raises
    ------
    SpecError
        If ``color_by`` is neither ``"snapshot"`` nor ``"time"``.
    """
    if color_by not in ("snapshot", "time"):
        raise SpecError(f"color_by must be 'snapshot' or 'time', got {color_by!r}")


def plot_state(state: gpd.GeoDataFrame, zones: Mapping[str, Any], rois: Sequence[Any] = (),
               color_by: str = "snapshot", title: str | None = None) -> Figure:
    """Zone extents, filled patches and the last ROIs on lon/lat axes, zoomed to the patches and ROIs
    (``state_view``; the zones' extents when there are neither).

    ``color_by="snapshot"`` gives each snapshot a colour (legend); ``"time"`` colours each place by
    its latest filled time step (colorbar), and falls back to snapshots for a cube without time.
    Patches filled without source data are grey and hatched.

    Parameters
    ----------
    state : geopandas.GeoDataFrame
        ``Cube.state()``: a row per filled patch (``id``, ``zone``, ``time``, ``has_data``, ``snapshot``,
        ``run_id``, geometry in EPSG:4326).
    zones : Mapping[str, Any]
        Each zone's extent as a lon/lat shapely geometry, by zone name.
    rois : Sequence[Any], optional
        The last ROIs as lon/lat shapely geometries (dashed red outlines).
    color_by : str, optional
        ``"snapshot"`` (default) or ``"time"``.
    title : str or None, optional
        Put before the patch count in the figure's title.

    Returns
    -------
    matplotlib.figure.Figure
        A figure built without pyplot (``save_figure`` writes it).

    Raises
    ------
    SpecError
        If ``color_by`` is neither ``"snapshot"`` nor ``"time"``.
    """
    import geopandas as gpd
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    check_color_by(color_by)
    fig = Figure(figsize=(8, 6.5), dpi=100, layout="compressed")
    ax = fig.add_subplot()
    handles: list[Any] = []
    has_time = len(state) > 0 and state["time"].notna().any()
    steps = state["time"].nunique() if has_time else 0
    with_data = state[state["has_data"]]
    empty = state[~state["has_data"]]
    if has_time:
        with_data, empty = _latest_per_place(with_data), _latest_per_place(empty)
    if len(empty):
        empty.plot(ax=ax, facecolor=EMPTY_COLOUR, edgecolor="#8c8c8c", hatch="//", linewidth=0.5)
        handles.append(Patch(facecolor=EMPTY_COLOUR, edgecolor="#8c8c8c", hatch="//",
                             label=f"no source data ({len(state) - int(state['has_data'].sum())})"))
    if len(with_data) and color_by == "time" and has_time:
        days = (with_data["time"] - with_data["time"].min()).dt.total_seconds() / 86400
        with_data.assign(_days=days).plot(ax=ax, column="_days", cmap="viridis", edgecolor="white", linewidth=0.3)
        mappable = ax.collections[-1]
        bar = fig.colorbar(mappable, ax=ax, shrink=0.8)
        ticks = np.linspace(days.min(), days.max(), num=min(5, max(2, days.nunique())))
        bar.set_ticks(ticks)
        bar.set_ticklabels([f"{with_data['time'].min() + pd.Timedelta(days=float(t)):%Y-%m-%d}" for t in ticks])
        bar.set_label("latest time step filled")
    elif len(with_data):
        colours = snapshot_colours(state)
        for snap, rows in with_data.groupby(with_data["snapshot"].fillna("unknown"), sort=False):
            rows.plot(ax=ax, facecolor=colours[snap], edgecolor="white", linewidth=0.3)
            count = int((state["snapshot"].fillna("unknown") == snap).sum())
            handles.append(Patch(facecolor=colours[snap], label=f"snapshot {snap} ({count})"))  # whole: to copy
    if zones:
        outlines = gpd.GeoSeries(list(zones.values()), crs="EPSG:4326")
        outlines.boundary.plot(ax=ax, color=ZONE_COLOUR, linewidth=1.2)
        for name, shape in zones.items():
            x, y = shape.centroid.x, shape.bounds[3]
            ax.annotate(name, (x, y), ha="center", va="bottom", fontsize=8, color=ZONE_COLOUR)
        handles.append(Patch(facecolor="none", edgecolor=ZONE_COLOUR, label="zone"))
    if len(rois):
        gpd.GeoSeries(list(rois), crs="EPSG:4326").boundary.plot(ax=ax, color=ROI_COLOUR, linewidth=1.5,
                                                                 linestyle="--")
        handles.append(Patch(facecolor="none", edgecolor=ROI_COLOUR, linestyle="--",
                             label=f"last ROIs ({len(rois)})"))
    view = state_view(state, rois)
    if view is not None:  # the patches and ROIs, not the zone: a few patches on a polar grid are specks
        ax.set_xlim(view[0], view[2])
        ax.set_ylim(view[1], view[3])
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    filled = f"{len(state)} patches" + (f" over {steps} time steps" if steps else "")
    ax.set_title(f"{title}: {filled}" if title else filled)
    if handles:
        # beside the map, not on it: a map zoomed to its patches is all data
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


def state_view(state: gpd.GeoDataFrame, rois: Sequence[Any] = (), margin: float = 0.1) -> tuple[float, ...] | None:
    """The lon/lat bounds a state picture shows: the filled patches and the last ROIs, with ``margin``
    (a fraction of the larger side) around them; None when there is neither (the zones are shown).

    Parameters
    ----------
    state : geopandas.GeoDataFrame
        ``Cube.state()``: a row per filled patch (``id``, ``zone``, ``time``, ``has_data``, ``snapshot``,
        ``run_id``, geometry in EPSG:4326).
    rois : Sequence[Any], optional
        The last ROIs as lon/lat shapely geometries.
    margin : float, optional
        Padding on every side, as a fraction of the larger side (0.1 by default; a single point gets
        0.01 degree).

    Returns
    -------
    tuple[float, ...] or None
        ``(west, south, east, north)`` in degrees, within -180..180 and -90..90.
    """
    import geopandas as gpd

    shapes = [*state.geometry, *rois]
    if not shapes:
        return None
    west, south, east, north = gpd.GeoSeries(shapes, crs="EPSG:4326").total_bounds
    span = max(east - west, north - south)
    pad = span * margin if span > 0 else 0.01  # one point: a small square around it
    return (max(west - pad, -180.0), max(south - pad, -90.0), min(east + pad, 180.0), min(north + pad, 90.0))


def explore(state: gpd.GeoDataFrame, zones: Mapping[str, Any], rois: Sequence[Any] = ()) -> folium.Map:
    """The same layers as ``plot_state`` on an interactive map, with a tooltip per patch, opened on
    the same view (the patches and ROIs; the zones when there are neither).

    No tile layer is fetched by default (an OpenStreetMap layer can be switched on when online).

    Parameters
    ----------
    state : geopandas.GeoDataFrame
        ``Cube.state()``: a row per filled patch (``id``, ``zone``, ``time``, ``has_data``, ``snapshot``,
        ``run_id``, geometry in EPSG:4326).
    zones : Mapping[str, Any]
        Each zone's extent as a lon/lat shapely geometry, by zone name.
    rois : Sequence[Any], optional
        The last ROIs as lon/lat shapely geometries.

    Returns
    -------
    folium.Map
        The map (``save_map`` writes it as HTML).
    """
    import folium
    import geopandas as gpd

    fmap = folium.Map(tiles=None, control_scale=True)
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap (online)", overlay=True, show=False).add_to(fmap)
    if zones:
        frame = gpd.GeoDataFrame({"zone": list(zones)}, geometry=list(zones.values()), crs="EPSG:4326")
        folium.GeoJson(frame.to_json(), name="zones", tooltip=folium.GeoJsonTooltip(["zone"]),
                       style_function=lambda _: {"color": ZONE_COLOUR, "weight": 2, "fillOpacity": 0}).add_to(fmap)
    if len(state):
        colours = snapshot_colours(state)
        shown = state.assign(time=state["time"].map(lambda t: "" if pd.isna(t) else f"{t:%Y-%m-%d %H:%M}"),
                             snapshot=state["snapshot"].fillna("unknown"), run_id=state["run_id"].fillna(""))
        shown["colour"] = [EMPTY_COLOUR if not d else colours[s] for d, s in zip(shown.has_data, shown.snapshot,
                                                                                   strict=True)]
        folium.GeoJson(
            shown[["id", "zone", "time", "has_data", "snapshot", "colour", "geometry"]].to_json(), name="patches",
            tooltip=folium.GeoJsonTooltip(["id", "time", "snapshot", "has_data"]),
            style_function=lambda f: {"color": f["properties"]["colour"], "weight": 1,
                                      "fillColor": f["properties"]["colour"], "fillOpacity": 0.5}).add_to(fmap)
    if len(rois):
        frame = gpd.GeoDataFrame({"roi": [f"ROI {i + 1}" for i in range(len(rois))]}, geometry=list(rois),
                                 crs="EPSG:4326")
        folium.GeoJson(frame.to_json(), name="last ROIs", tooltip=folium.GeoJsonTooltip(["roi"]),
                       style_function=lambda _: {"color": ROI_COLOUR, "weight": 2, "dashArray": "6 4",
                                                 "fillOpacity": 0}).add_to(fmap)
    view = state_view(state, rois, margin=0.0)  # as the picture: the patches and ROIs, else the zones
    if view is None and zones:
        view = tuple(gpd.GeoSeries(list(zones.values()), crs="EPSG:4326").total_bounds)
    if view is not None:
        west, south, east, north = view
        fmap.fit_bounds([[south, west], [north, east]])
    folium.LayerControl().add_to(fmap)
    return fmap


def physical(variable: xr.DataArray) -> np.ndarray:
    """A Tile variable's values as physical quantities, by the convention it carries (CF scale_factor and
    add_offset), never a constant; nodata is left to the caller's mask.

    Parameters
    ----------
    variable : xarray.DataArray
        A Tile variable (computed if lazy).

    Returns
    -------
    np.ndarray
        ``values * scale_factor + add_offset`` as float64 (the values as they are where neither is set).
    """
    values = variable.values.astype("float64")
    scale, offset = variable.attrs.get("scale_factor"), variable.attrs.get("add_offset")
    if scale is not None or offset is not None:
        values = values * float(1.0 if scale is None else scale) + float(offset or 0.0)
    return values


def _stretch(values: np.ndarray, valid: np.ndarray, percentile: tuple[float, float]) -> np.ndarray:
    """0..1 between the given percentiles of the valid pixels."""
    if not valid.any():
        return np.zeros(values.shape)
    low, high = np.percentile(values[valid], percentile)
    return np.clip((values.astype("float64") - low) / (high - low if high > low else 1.0), 0, 1)


def _time_step(tile: xr.Dataset, time: Any) -> xr.Dataset:
    """The step of a Tile with time that ``quicklook`` shows: the last (None), an index, or the nearest to a date."""
    steps = tile.sizes["time"]
    if steps == 0:
        raise TOIError("the Tile has no time step to show")
    if time is None:
        return tile.isel(time=-1)
    if isinstance(time, numbers.Integral) and not isinstance(time, bool):
        if not -steps <= time < steps:
            raise TOIError(f"time={time!r} is past the Tile's {steps} time steps: give an index from {-steps} "
                           f"to {steps - 1}, or a date")
        return tile.isel(time=int(time))
    wrong = f"time={time!r} is neither an index of the Tile's {steps} time steps nor a date pandas reads"
    try:
        stamp = pd.Timestamp(time)
    except (TypeError, ValueError) as err:
        raise TOIError(f"{wrong}: {err}") from err
    if pd.isna(stamp):  # "" or NaT; None is the last step
        raise TOIError(wrong)
    try:
        return tile.sel(time=stamp, method="nearest")
    except (TypeError, ValueError) as err:  # a time zone on a Tile's naive UTC steps
        raise TOIError(f"{wrong}: {err}") from err


def quicklook(tile: xr.Dataset, bands: str | Sequence[str] | None = None, *, time: Any = None,
              title: str | None = None, vmin: float | None = None, vmax: float | None = None,
              cmap: str = "viridis", percentile: tuple[float, float] = (2, 98)) -> Figure:
    """A Tile as a picture: one band with a colour bar (default: the first variable), or three bands as
    RGB, each stretched between ``percentile`` of its valid pixels. Values are shown as physical
    quantities, by the convention each variable carries. Nodata stays transparent.

    Parameters
    ----------
    tile : xarray.Dataset
        A Tile (from stacube, or any Dataset odc-geo reads a geobox from).
    bands : str, Sequence[str] or None, optional
        One variable, or three as (R, G, B); None: the first variable.
    time : Any, optional
        For a Tile with time, the step to show: an index, or a date (the nearest step); None: the last.
    title : str or None, optional
        The figure's title (default: the bands); the step's date is added for a Tile with time.
    vmin, vmax : float or None, optional
        Colour range of a single band, in physical units (default: its range).
    cmap : str, optional
        Matplotlib colour map of a single band.
    percentile : tuple[float, float], optional
        The percentiles of each band's valid pixels that RGB stretches between (default 2 and 98).

    Returns
    -------
    matplotlib.figure.Figure
        A figure built without pyplot (``save_figure`` writes it).

    Raises
    ------
    SpecError
        If ``bands`` are not one or three variables of the Tile (or the Tile has none).
    TOIError
        If the Tile has a time axis without steps, or ``time`` is an index past its steps or no date.
    """
    import odc.geo.xr  # noqa: F401 - the .odc accessor, for a Tile made outside stacube
    from matplotlib.figure import Figure

    from .variables import valid_values

    if not tile.data_vars:
        raise SpecError("the Tile has no variable to show")
    names = [bands] if isinstance(bands, str) else list(bands) if bands is not None else [next(iter(tile.data_vars))]
    unknown = [n for n in names if n not in tile.data_vars]
    if unknown or len(names) not in (1, 3):
        raise SpecError(f"bands must be one variable or three (R, G, B) of {list(tile.data_vars)}, got {names}")
    when = None
    if "time" in tile.dims:
        step = _time_step(tile, time)
        when, tile = pd.Timestamp(step.time.values), step
    y_dim, x_dim = tile.odc.spatial_dims  # y/x, or latitude/longitude on a geographic grid
    xs, ys = tile[x_dim].values, tile[y_dim].values
    dx = (xs[1] - xs[0]) if len(xs) > 1 else 1.0
    dy = (ys[1] - ys[0]) if len(ys) > 1 else -1.0
    extent = (xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2)
    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.add_subplot()
    if len(names) == 1:
        variable = tile[names[0]]
        values = variable.values
        shown = np.ma.masked_array(physical(variable), mask=~valid_values(values, variable.attrs.get("nodata")))
        image = ax.imshow(shown, extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        units = variable.attrs.get("units")
        fig.colorbar(image, ax=ax, shrink=0.8, label=names[0] + (f" [{units}]" if units else ""))
    else:
        channels, valid = [], np.ones(tile[names[0]].shape, bool)
        for name in names:
            values = tile[name].values
            ok = valid_values(values, tile[name].attrs.get("nodata"))
            channels.append(_stretch(physical(tile[name]), ok, percentile))
            valid &= ok
        rgba = np.dstack([*channels, valid.astype("float64")])
        ax.imshow(rgba, extent=extent, interpolation="nearest")
        ax.text(0.01, 0.01, f"R: {names[0]}  G: {names[1]}  B: {names[2]}", transform=ax.transAxes, fontsize=8,
                color="white", backgroundcolor="#00000080", va="bottom")
    crs = _crs_name(tile)
    ax.set_xlabel(f"x ({crs})" if crs else "x")
    ax.set_ylabel(f"y ({crs})" if crs else "y")
    label = title or ", ".join(names)
    ax.set_title(f"{label} on {when:%Y-%m-%d %H:%M}" if when is not None else label)
    return fig


def _crs_name(tile: xr.Dataset) -> str | None:
    from .crs import crs_label

    try:
        crs = tile.odc.crs
    except Exception:  # noqa: BLE001 - a Tile without odc-geo metadata is still drawn
        return None
    return crs_label(crs) if crs is not None else None


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG (100 dpi), making its folder.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or Path
        The PNG to write (overwritten if it exists).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def save_map(fmap: folium.Map, path: str | Path) -> Path:
    """Write a folium map as a self-contained HTML page, making its folder.

    Parameters
    ----------
    fmap : folium.Map
        The map.
    path : str or Path
        The HTML file to write (overwritten if it exists).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmap.save(str(path))
    return path

"""Serve Items recorded from real catalogs (tests/data) on loopback, with COGs on each asset's real grid.

Each recorded Item keeps every field it was recorded with (ids, datetimes, processing baseline,
flags, raster:bands, projection), except what must change to serve it here: each asset read by a
test gets a COG written on a window of the asset's own grid (its CRS, resolution and pixel edges
from its proj: fields), and the Item's proj:shape, proj:transform, proj:bbox, geometry and bbox
describe that window; hrefs point at the loopback server. Pixel values come from the test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from stacube.lonlat import lonlat_footprint
from stacube.testing.generate import _write_cog

DATA = Path(__file__).parents[1] / "data"


def recorded(provider: str, item_id: str) -> dict[str, Any]:
    """An Item as recorded (tests/data/<provider>/<id>.json, sources in tests/data/SOURCES.md)."""
    return json.loads((DATA / provider / f"{item_id}.json").read_text())


def _fields(item: dict[str, Any], key: str) -> dict[str, Any]:
    return {**item["properties"], **item["assets"][key]}


def crs_of(item: dict[str, Any], key: str) -> str:
    fields = _fields(item, key)
    return fields.get("proj:code") or f"EPSG:{fields['proj:epsg']}"


def asset_grid(item: dict[str, Any], key: str) -> GeoBox:
    """The asset's whole grid, from its recorded proj:shape and proj:transform."""
    fields = _fields(item, key)
    return GeoBox(tuple(fields["proj:shape"]), Affine(*fields["proj:transform"][:6]), crs_of(item, key))


@dataclass(frozen=True)
class Window:
    """A ground window inside the Items' grids: its upper-left corner as metres from the grid's origin
    (multiples of every asset resolution, so each asset's window starts on its own pixel edge) and its size."""

    dx: float = 1200.0
    dy: float = 1200.0
    size: float = 1920.0


def window_geobox(grid: GeoBox, window: Window) -> GeoBox:
    res = grid.transform.a
    n = round(window.size / res)
    return GeoBox((n, n), grid.transform * Affine.translation(window.dx / res, window.dy / res), grid.crs)


Pixels = Callable[[dict[str, Any], str, GeoBox], np.ndarray]


def localize(item: dict[str, Any], keys: Sequence[str], folder: Path, pixels: Pixels,
             window: Window = Window(), item_id: str | None = None,
             properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a recorded Item served from ``folder``: for each asset in ``keys`` a COG of
    ``pixels(item, key, geobox)`` on the asset's grid, windowed. ``item_id``/``properties`` change
    the id and properties (a test that derives a sibling of a recorded Item says so)."""
    out = copy.deepcopy(item)
    if item_id is not None:
        out["id"] = item_id
    out["properties"].update(properties or {})
    out["links"] = []
    footprint = None
    for key in keys:
        box = window_geobox(asset_grid(item, key), window)
        values = pixels(out, key, box)
        name = f"{out['id']}_{key}.tif"
        nodata = _fields(item, key).get("nodata")
        for band in _fields(item, key).get("raster:bands", []):
            nodata = band.get("nodata", nodata)
        _write_cog(folder / name, values, box, nodata)
        asset = out["assets"][key]
        asset["href"] = name
        grid = {"proj:shape": list(box.shape.yx), "proj:transform": list(box.transform)[:6],
                "proj:bbox": list(box.extent.boundingbox)}
        for fields in (asset, out["properties"]):  # wherever the recording put the grid, it is the window's now
            fields.update({k: v for k, v in grid.items() if k in fields})
        footprint = footprint or lonlat_footprint(box.extent)
    out["properties"].pop("proj:geometry", None)
    out["geometry"] = json.loads(json.dumps(footprint.__geo_interface__))
    out["bbox"] = list(footprint.bounds)
    for key in set(out["assets"]) - set(keys):  # assets not served are dropped, as a mirror would serve none
        del out["assets"][key]
    return out


def write_collection(folder: Path, items: Sequence[dict[str, Any]], collection: str) -> Path:
    """``items.json`` for ``serve_sample`` (every Item put in ``collection``, as rustac serve needs)."""
    features = [{**item, "collection": collection} for item in items]
    (folder / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return folder


def reflectance_field(box: GeoBox, seed: float = 0.0) -> np.ndarray:
    """A smooth reflectance (0.02 .. 0.45) over a window, by ground position: the truth a test checks."""
    xx, yy = np.meshgrid(box.coords["x"].values, box.coords["y"].values)
    return 0.235 + 0.215 * np.sin(xx / 700.0 + seed) * np.cos(yy / 500.0)

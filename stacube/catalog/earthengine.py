"""Earth Engine images as STAC Items: how an Earth Engine collection enters the local catalog.

The source is an ImageCollection or a single Image. Each image becomes one Item (id: the image's
last path part; ``start_datetime``/``end_datetime`` from its time span, or its update time for an
image without one; footprint geometry), with one asset per band whose href is the image's asset id
as ``earthengine://<asset id>``, and the band's native projection (``proj:code``,
``proj:transform``, ``proj:shape``) and data type (``raster:bands``) on the asset: Earth Engine
bands of one image may sit on different grids. The backend reads pixels from those assets; nothing
else of Earth Engine crosses into stacube.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from ..errors import CatalogError
from .local import DEFAULT_LAG, LocalCatalog, Window, rfc3339

HREF_SCHEME = "earthengine://"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


def numpy_dtype(data_type: dict[str, Any]) -> str:
    """The numpy dtype of an Earth Engine PixelDataType: floats by precision, integers by their range."""
    precision = data_type.get("precision", "FLOAT")
    if precision == "DOUBLE":
        return "float64"
    if precision != "INT":
        return "float32"
    low = int(float(data_type.get("range", {}).get("min", -(2**31))))
    high = int(float(data_type.get("range", {}).get("max", 2**31 - 1)))
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32"):
        if np.iinfo(name).min <= low and high <= np.iinfo(name).max:
            return name
    return "int64"


def grid_from_geobox(geobox: GeoBox) -> dict[str, Any]:
    """Earth Engine's PixelGrid (CRS code, affine transform, dimensions) for a GeoBox."""
    t = geobox.transform
    return {"crsCode": str(geobox.crs), "dimensions": {"width": geobox.shape.x, "height": geobox.shape.y},
            "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c,
                                "shearY": t.d, "scaleY": t.e, "translateY": t.f}}


def geobox_from_grid(grid: dict[str, Any]) -> GeoBox:
    """The GeoBox of an Earth Engine PixelGrid."""
    t, dims = grid["affineTransform"], grid["dimensions"]
    transform = Affine(t.get("scaleX", 1.0), t.get("shearX", 0.0), t.get("translateX", 0.0),
                       t.get("shearY", 0.0), t.get("scaleY", 1.0), t.get("translateY", 0.0))
    return GeoBox((int(dims["height"]), int(dims["width"])), transform, grid["crsCode"])


def image_to_item(asset: dict[str, Any], collection: str) -> pystac.Item:
    """One Earth Engine image (an EarthEngineAsset from ``listImages``) as a STAC Item."""
    asset_id = asset.get("id") or asset["name"].split("/assets/", 1)[-1]
    if not asset.get("bands"):
        raise CatalogError(f"Earth Engine image {asset_id!r} has no bands")
    # An image without a time of its own (a DEM, a trend over decades) is dated by its last update:
    # STAC needs a datetime, and a spatial-only cube never searches by time.
    stamp = asset.get("startTime") or asset.get("updateTime")
    if not stamp:
        raise CatalogError(f"Earth Engine image {asset_id!r} has neither startTime nor updateTime")
    start = pd.Timestamp(stamp).tz_convert("UTC")
    # Earth Engine's endTime is exclusive, STAC's end_datetime inclusive: an annual image ends the
    # microsecond before the next year starts, so a search for that next year does not find it.
    end = pd.Timestamp(asset.get("endTime") or stamp).tz_convert("UTC")
    end = max(start, end - pd.Timedelta(microseconds=1))
    footprint = Geometry(asset["geometry"], "EPSG:4326")
    item = pystac.Item(
        id=asset_id.rsplit("/", 1)[-1],
        geometry=asset["geometry"],
        bbox=list(footprint.boundingbox),
        datetime=start.to_pydatetime(),
        properties={"start_datetime": rfc3339(start), "end_datetime": rfc3339(end),
                    "earthengine:id": asset_id, **_plain(asset.get("properties", {}))},
        collection=collection,
        stac_extensions=[PROJECTION, RASTER],
    )
    for band in asset["bands"]:
        grid = geobox_from_grid(band["grid"])
        extra = {
            "earthengine:band": band["id"],
            "proj:code": str(grid.crs),
            "proj:transform": list(grid.transform)[:6],
            "proj:shape": list(grid.shape.yx),
            "raster:bands": [{"data_type": numpy_dtype(band.get("dataType", {}))}],
        }
        item.add_asset(band["id"], pystac.Asset(href=f"{HREF_SCHEME}{asset_id}", roles=["data"], extra_fields=extra))
    return item


def _plain(properties: dict[str, Any]) -> dict[str, Any]:
    """Image properties a catalog can hold: scalars and lists of scalars; names kept as Earth Engine has them."""
    return {k: v for k, v in properties.items() if isinstance(v, (str, int, float, bool)) or
            (isinstance(v, list) and all(isinstance(x, (str, int, float, bool)) for x in v))}


def list_images(collection_id: str, window: Window, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every image of ``collection_id`` whose time span and footprint meet ``window`` (paged ``listImages``).

    ``collection_id`` may also name a single Image: it is then the only image, if it meets ``window``.
    """
    import ee

    try:
        asset = ee.data.getAsset(collection_id)
    except ee.EEException as err:
        raise CatalogError(f"Earth Engine asset {collection_id!r} cannot be read: {err}") from err
    if asset.get("type") == "IMAGE":
        return [asset] if _meets(asset, window) else []
    if asset.get("type") != "IMAGE_COLLECTION":
        raise CatalogError(f"Earth Engine asset {collection_id!r} is a {asset.get('type')}, "
                           f"not an Image or ImageCollection")
    west, south, east, north = window.bbox
    params: dict[str, Any] = {"parent": collection_id, "pageSize": page_size,
                              "region": {"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                                             [east, north], [west, north],
                                                                             [west, south]]]}}
    overlaps = []  # images whose time span meets the window (an annual image ends where the year does)
    if window.end is not None:
        overlaps.append(f'startTime < "{rfc3339(window.end)}"')
    if window.start is not None:
        overlaps.append(f'endTime > "{rfc3339(window.start)}"')
    if overlaps:
        params["filter"] = " AND ".join(overlaps)
    images: list[dict[str, Any]] = []
    while True:
        try:
            page = ee.data.listImages(params)
        except ee.EEException as err:
            raise CatalogError(f"listing Earth Engine collection {collection_id!r} in {window} failed: {err}") from err
        images.extend(page.get("images", []))
        token = page.get("nextPageToken")
        if not token:
            return images
        params["pageToken"] = token


def _meets(image: dict[str, Any], window: Window) -> bool:
    """Whether a single image's footprint and time span (if it has one) meet ``window``."""
    west, south, east, north = window.bbox
    box = Geometry({"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                         [west, north], [west, south]]]}, "EPSG:4326")
    if image.get("geometry") and not Geometry(image["geometry"], "EPSG:4326").intersects(box):
        return False
    if image.get("startTime") is None:
        return True
    def utc(stamp: str) -> pd.Timestamp:
        return pd.Timestamp(stamp).tz_convert("UTC").tz_localize(None)

    start, end = utc(image["startTime"]), utc(image.get("endTime") or image["startTime"])
    # the rule of the collection filter above: startTime < window end and endTime > window start
    return (window.end is None or start < window.end) and (window.start is None or end > window.start)


def sync_earthengine_window(catalog: LocalCatalog, collection_id: str, window: Window,
                            lag: pd.Timedelta = DEFAULT_LAG, connect: Callable[[], None] | None = None) -> int:
    """Convert the images of ``window`` into the local catalog unless it is covered; returns how many were new.

    ``connect`` (initialising the client) runs only when Earth Engine is really asked.
    """
    def converted() -> list[dict[str, Any]]:
        if connect is not None:
            connect()
        return [image_to_item(image, catalog.collection).to_dict() for image in list_images(collection_id, window)]

    return catalog.sync(window, lag, converted)

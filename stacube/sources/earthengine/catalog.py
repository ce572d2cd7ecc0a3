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

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pystac
from affine import Affine
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from ...catalog.local import DEFAULT_LAG, LocalCatalog, Window, rfc3339
from ...errors import CatalogError, source_error

HREF_SCHEME = "earthengine://"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


def numpy_dtype(data_type: dict[str, Any]) -> str:
    """The numpy dtype of an Earth Engine PixelDataType: floats by precision, integers by their range.

    The REST API writes protobuf JSON, which leaves out fields that are 0: an unsigned band's range is
    ``{"max": 65535}`` with no ``min``, and a range without ``max`` ends at 0 (GDAL's EEDA driver reads
    them so). Only an integer band with no range at all is taken as Earth Engine's default 32-bit int.

    Parameters
    ----------
    data_type : dict[str, Any]
        A band's ``dataType`` (``precision`` and ``range``) as the REST API gives it.

    Returns
    -------
    str
        A numpy dtype name: the smallest integer type that holds the range, ``int64`` past int32's.
    """
    precision = data_type.get("precision", "FLOAT")
    if precision == "DOUBLE":
        return "float64"
    if precision != "INT":
        return "float32"
    bounds = data_type.get("range")
    if bounds is None:
        low, high = -(2**31), 2**31 - 1
    else:
        low, high = int(float(bounds.get("min", 0))), int(float(bounds.get("max", 0)))
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32"):
        if np.iinfo(name).min <= low and high <= np.iinfo(name).max:
            return name
    return "int64"


def grid_crs(crs: CRS) -> dict[str, str]:
    """How a PixelGrid names ``crs``: ``crsCode`` for a CRS with an EPSG code, else ``crsWkt`` (WKT1, the
    form Earth Engine writes; WKT2 where WKT1 cannot say it). A PROJ string is never sent as a code.

    Parameters
    ----------
    crs : odc.geo.crs.CRS
        The CRS.

    Returns
    -------
    dict[str, str]
        ``{"crsCode": "EPSG:n"}`` or ``{"crsWkt": ...}``.
    """
    if crs.epsg is not None:
        return {"crsCode": f"EPSG:{crs.epsg}"}
    try:
        return {"crsWkt": crs.to_wkt(version="WKT1_GDAL")}
    except Exception:  # noqa: BLE001 - pyproj raises CRSError or returns nothing for CRSs WKT1 cannot hold
        return {"crsWkt": crs.to_wkt()}


# Codes Earth Engine uses that PROJ's database lacks: MODIS sinusoidal on a sphere of 6371007.181 m
# (as GDAL reads MODIS/006/MYD09GA from the live service: ID["SR-ORG",6974]).
KNOWN_CODES = {"SR-ORG:6974": "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs +type=crs"}


def crs_of_grid(grid: dict[str, Any]) -> CRS:
    """The CRS of a PixelGrid, which carries ``crsCode`` or ``crsWkt``. A code PROJ does not know is
    read from the WKT beside it, else from ``KNOWN_CODES``, else refused by name.

    Parameters
    ----------
    grid : dict[str, Any]
        The PixelGrid (a band's ``grid``).

    Returns
    -------
    odc.geo.crs.CRS
        The CRS.

    Raises
    ------
    CatalogError
        If PROJ can read neither the code nor the WKT, or the grid has neither.
    """
    code, wkt = grid.get("crsCode"), grid.get("crsWkt")
    for value in (code, wkt, KNOWN_CODES.get(str(code))):
        if value:
            try:
                return CRS(value)
            except Exception:  # noqa: BLE001 - pyproj's CRSError; the next form may do
                continue
    if code or wkt:
        raise CatalogError(f"an Earth Engine grid names CRS {code or wkt!r}, which PROJ cannot read"
                           + ("" if wkt else " and it gives no crsWkt"))
    raise CatalogError(f"an Earth Engine grid has neither crsCode nor crsWkt: {sorted(grid)}")


def grid_from_geobox(geobox: GeoBox) -> dict[str, Any]:
    """Earth Engine's PixelGrid (CRS, affine transform, dimensions) for a GeoBox.

    Parameters
    ----------
    geobox : GeoBox
        The grid a request reads onto.

    Returns
    -------
    dict[str, Any]
        The PixelGrid: ``crsCode`` or ``crsWkt`` (``grid_crs``), ``dimensions`` and ``affineTransform``.
    """
    t = geobox.transform
    return {**grid_crs(geobox.crs), "dimensions": {"width": geobox.shape.x, "height": geobox.shape.y},
            "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c,
                                "shearY": t.d, "scaleY": t.e, "translateY": t.f}}


def geobox_from_grid(grid: dict[str, Any]) -> GeoBox:
    """The GeoBox of an Earth Engine PixelGrid (transform fields left out are protobuf's 0, scales 1).

    Parameters
    ----------
    grid : dict[str, Any]
        The PixelGrid, with ``affineTransform``, ``dimensions`` and ``crsCode`` or ``crsWkt``.

    Returns
    -------
    GeoBox
        The grid.

    Raises
    ------
    CatalogError
        If its CRS cannot be read (``crs_of_grid``).
    KeyError
        If ``grid`` lacks ``affineTransform`` or ``dimensions``.
    """
    t, dims = grid["affineTransform"], grid["dimensions"]
    transform = Affine(t.get("scaleX", 1.0), t.get("shearX", 0.0), t.get("translateX", 0.0),
                       t.get("shearY", 0.0), t.get("scaleY", 1.0), t.get("translateY", 0.0))
    return GeoBox((int(dims["height"]), int(dims["width"])), transform, crs_of_grid(grid))


def crs_fields(crs: CRS) -> dict[str, str]:
    """STAC ``proj:`` fields naming ``crs``: ``proj:code`` when it has an EPSG code, else ``proj:wkt2``.

    Parameters
    ----------
    crs : odc.geo.crs.CRS
        A band's CRS.

    Returns
    -------
    dict[str, str]
        The one field.
    """
    return {"proj:code": f"EPSG:{crs.epsg}"} if crs.epsg is not None else {"proj:wkt2": crs.to_wkt()}


def image_to_item(asset: dict[str, Any], collection: str) -> pystac.Item:
    """One Earth Engine image (an EarthEngineAsset from ``listImages``) as a STAC Item (see the module's
    docstring for what it holds).

    Parameters
    ----------
    asset : dict[str, Any]
        The image as the REST API gives it: ``id`` or ``name``, ``bands`` (each with its ``grid`` and
        ``dataType``), ``geometry``, ``startTime``/``endTime`` or ``updateTime``, ``properties``.
    collection : str
        The Item's collection (the local catalog's).

    Returns
    -------
    pystac.Item
        One asset per band, each with an ``earthengine://`` href and the band's own grid and type.

    Raises
    ------
    CatalogError
        If the image has neither ``id`` nor ``name``, no bands, no ``geometry``, neither ``startTime``
        nor ``updateTime``, a band without its ``id`` or ``grid``, a band's CRS cannot be read, or
        anything else of it cannot be read as the REST API gives it; the message names the image (and
        the band).
    """
    asset_id = asset.get("id") if isinstance(asset, dict) else None
    if not asset_id and isinstance(asset, dict) and isinstance(asset.get("name"), str):
        asset_id = asset["name"].split("/assets/", 1)[-1]
    if not isinstance(asset_id, str) or not asset_id:
        keys = sorted(asset) if isinstance(asset, dict) else type(asset).__name__
        raise CatalogError(f"an Earth Engine image has neither an id nor a name (it holds {keys})")
    try:
        return _converted(asset, asset_id, collection)
    except CatalogError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        what = f"lacks {err.args[0]!r}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise CatalogError(f"Earth Engine image {asset_id!r} cannot be converted to a STAC Item: {what}") from err


def _converted(asset: dict[str, Any], asset_id: str, collection: str) -> pystac.Item:
    """``image_to_item`` for an image whose id is known; Python's own errors are the caller's to name."""
    if not asset.get("bands"):
        raise CatalogError(f"Earth Engine image {asset_id!r} has no bands")
    if not isinstance(asset.get("geometry"), dict):
        raise CatalogError(f"Earth Engine image {asset_id!r} has no geometry (its footprint), so it cannot be "
                           "placed; it holds " + ", ".join(sorted(asset)))
    for number, band in enumerate(asset["bands"]):
        missing = [key for key in ("id", "grid") if not isinstance(band, dict) or not band.get(key)]
        if missing:
            named = band.get("id") if isinstance(band, dict) and band.get("id") else f"number {number}"
            raise CatalogError(f"Earth Engine image {asset_id!r}: band {named} has no {' and no '.join(missing)}")
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
            **crs_fields(grid.crs),
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


POLE_LIMIT = 89.99


def region_pieces(bbox: tuple[float, float, float, float], width: float = 90.0, step: float = 1.0,
                  pad: float = 0.01) -> list[dict[str, Any]]:
    """GeoJSON polygons that cover ``bbox`` whether Earth Engine reads their edges as geodesics or as
    lines of latitude and longitude.

    Earth Engine's geometries are geodesic by default, and how it reads a ``region`` is not documented:
    a ring from -180 to 180 collapses (both are one meridian), and a long edge along a parallel bows
    towards the pole. So the box is cut into pieces at most ``width`` degrees wide, edges are
    densified every ``step`` degrees (a geodesic then strays from the parallel by ~0.001 degrees at
    most) and the box is padded by ``pad`` degrees. Searching a little too wide is safe: Items are
    matched to patches exactly afterwards.

    Parameters
    ----------
    bbox : tuple[float, float, float, float]
        West, south, east, north in degrees; west > east crosses the antimeridian.
    width : float, optional
        The widest a piece may be, in degrees of longitude.
    step : float, optional
        Degrees between the vertices along each edge.
    pad : float, optional
        Degrees added on every side (never past +-180 or ``POLE_LIMIT``).

    Returns
    -------
    list[dict[str, Any]]
        GeoJSON Polygons in lon/lat.
    """
    west, south, east, north = bbox
    if east < west:  # across the antimeridian
        return region_pieces((west, south, 180.0, north), width, step, pad) + \
            region_pieces((-180.0, south, east, north), width, step, pad)
    west, east = max(west - pad, -180.0), min(east + pad, 180.0)
    # not quite to a pole: there every vertex of an edge along the parallel is one point, a ring Earth
    # Engine may refuse; what lies within 1 km of a pole and nowhere else is left out
    south, north = max(south - pad, -POLE_LIMIT), min(north + pad, POLE_LIMIT)
    count = max(1, math.ceil((east - west) / width - 1e-9))
    edges = np.linspace(west, east, count + 1)
    pieces = []
    for left, right in itertools.pairwise(edges):
        lons = np.linspace(left, right, max(2, math.ceil((right - left) / step) + 1))
        lats = np.linspace(south, north, max(2, math.ceil((north - south) / step) + 1))
        ring = ([(x, south) for x in lons] + [(right, y) for y in lats[1:]] +
                [(x, north) for x in lons[::-1][1:]] + [(left, y) for y in lats[::-1][1:]])
        pieces.append({"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in ring]]})
    return pieces


def time_filters(window: Window) -> list[str | None]:
    """AIP-160 filters that together find every image whose time span meets ``window``.

    How Earth Engine compares an image without an ``endTime`` is not documented, so no image may
    depend on it: images that start inside the window are found by ``startTime`` alone, and only
    those that start before it need ``endTime`` (an image that started before the window and has no
    end is an instant before it, which the window does not want anyway).

    Parameters
    ----------
    window : Window
        The time range searched (no start and no end: any time).

    Returns
    -------
    list[str or None]
        One ``listImages`` filter per query to make; ``[None]`` for a window without time (no filter).
    """
    if window.start is None and window.end is None:
        return [None]
    if window.start is None:
        return [f'startTime < "{rfc3339(window.end)}"']
    inside = [f'startTime >= "{rfc3339(window.start)}"']
    if window.end is not None:
        inside.append(f'startTime < "{rfc3339(window.end)}"')
    return [" AND ".join(inside), f'startTime < "{rfc3339(window.start)}" AND endTime > "{rfc3339(window.start)}"']


def list_images(collection_id: str, window: Window, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every image of ``collection_id`` whose time span and footprint meet ``window`` (paged ``listImages``,
    one query per region piece and time filter, merged by asset id and checked again here).

    ``collection_id`` may also name a single Image: it is then the only image, if it meets ``window``.

    Parameters
    ----------
    collection_id : str
        The Earth Engine asset id of an ImageCollection or an Image.
    window : Window
        The lon/lat bbox and time range searched.
    page_size : int, optional
        Images asked for per page.

    Returns
    -------
    list[dict[str, Any]]
        The images as the REST API gives them (``image_to_item`` converts them), each once.

    Raises
    ------
    CatalogError
        If the asset cannot be read, is neither an Image nor an ImageCollection, or listing it fails;
        its ``__cause__`` is the SourceError that says whether asking again may help, where there is one.
    """
    import ee

    try:
        asset = ee.data.getAsset(collection_id)
    except ee.EEException as err:  # its status (a 404, a 403) decides whether asking again may help
        failure = source_error(err) or err
        raise CatalogError(f"Earth Engine asset {collection_id!r} cannot be read: {err}") from failure
    if asset.get("type") == "IMAGE":
        return [asset] if _meets(asset, window) else []
    if asset.get("type") != "IMAGE_COLLECTION":
        raise CatalogError(f"Earth Engine asset {collection_id!r} is a {asset.get('type')}, "
                           f"not an Image or ImageCollection")
    found: dict[str, dict[str, Any]] = {}
    for region in region_pieces(window.bbox):
        for query in time_filters(window):
            params: dict[str, Any] = {"parent": collection_id, "pageSize": page_size, "region": region}
            if query:
                params["filter"] = query
            for image in _pages(collection_id, window, params):
                found.setdefault(image.get("id") or image.get("name"), image)
    return [image for image in found.values() if _meets(image, window, check_region=False)]


def _pages(collection_id: str, window: Window, params: dict[str, Any]) -> list[dict[str, Any]]:
    import ee

    images: list[dict[str, Any]] = []
    while True:
        try:
            page = ee.data.listImages(params)
        except ee.EEException as err:
            raise CatalogError(f"listing Earth Engine collection {collection_id!r} in {window} failed: "
                               f"{err}") from (source_error(err) or err)
        images.extend(page.get("images", []))
        token = page.get("nextPageToken")
        if not token:
            return images
        params = {**params, "pageToken": token}


def _meets(image: dict[str, Any], window: Window, check_region: bool = True) -> bool:
    """Whether an image's footprint (unless ``check_region`` is off) and time span meet ``window``; an
    image with a start and no end is an instant, one with neither has no time and meets every window."""
    if check_region and image.get("geometry"):
        footprint = Geometry(image["geometry"], "EPSG:4326")
        if not any(footprint.intersects(Geometry(piece, "EPSG:4326")) for piece in region_pieces(window.bbox, pad=0)):
            return False
    if image.get("startTime") is None:
        return True

    def utc(stamp: str) -> pd.Timestamp:
        return pd.Timestamp(stamp).tz_convert("UTC").tz_localize(None)

    start = utc(image["startTime"])
    end = utc(image["endTime"]) if image.get("endTime") else start
    if end <= start:  # an instant: inside the half-open window
        return (window.start is None or start >= window.start) and (window.end is None or start < window.end)
    return (window.end is None or start < window.end) and (window.start is None or end > window.start)


def sync_earthengine_window(catalog: LocalCatalog, collection_id: str, window: Window,
                            lag: pd.Timedelta = DEFAULT_LAG, connect: Callable[[], None] | None = None) -> int:
    """Convert the images of ``window`` into the local catalog unless it is covered; returns how many were new.

    ``connect`` (initialising the client) runs only when Earth Engine is really asked.

    Parameters
    ----------
    catalog : LocalCatalog
        The source's local catalog.
    collection_id : str
        The Earth Engine ImageCollection (or Image) to list.
    window : Window
        The lon/lat bbox and time range to bring in.
    lag : pandas.Timedelta, optional
        The source's publication lag (``Source.lag``).
    connect : Callable[[], None] or None, optional
        Starts the Earth Engine client before the first request; None: it is started already.

    Returns
    -------
    int
        How many Items were new (0 when the window was covered).

    Raises
    ------
    CatalogError
        If ``connect`` or ``list_images`` fails, an image cannot be converted (``image_to_item``), or the
        catalog's windows file cannot be read.
    ItemError
        If a converted image is not a STAC Item the catalog can hold.
    StorageError
        If the catalog folder cannot be written.
    """
    def converted() -> list[dict[str, Any]]:
        if connect is not None:
            connect()
        return [image_to_item(image, catalog.collection).to_dict() for image in list_images(collection_id, window)]

    return catalog.sync(window, lag, converted)

"""A loopback Earth Engine REST emulator for tests, benchmarks and the demo: no request leaves 127.0.0.1.

The real ``earthengine-api`` client talks to it (``ee.Initialize(url=emulator.url, ...)``). It serves
the discovery document and the algorithm list shipped as fixtures in the ``ee`` wheel, and the asset
methods stacube uses: ``get`` and ``listAssets`` (with the AIP-160 filter the client builds from
``listImages``' start time, end time and region, and paging). Images are held in memory as numpy
bands on a grid (CRS and affine transform).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import pandas as pd
import pyproj
import shapely
import shapely.geometry
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from ..catalog.local import rfc3339
from ..errors import CatalogError
from ..sources.earthengine.catalog import geobox_from_grid, grid_from_geobox

PUBLIC_PROJECT = "earthengine-public"


@dataclass
class EmulatedImage:
    """One Earth Engine image: an asset id (``COLLECTION/IMAGE``), a time span, a grid and bands."""

    asset_id: str
    """The image's asset id, ``COLLECTION/IMAGE``."""
    start: pd.Timestamp | None
    """None: an image without a time (a DEM, a trend), dated by updateTime."""
    end: pd.Timestamp | None
    """The end of its time span (None with ``start``)."""
    crs: str
    """Its grid's CRS, as EPSG:xxxx or WKT."""
    transform: Affine
    """Its grid's affine transform."""
    bands: dict[str, np.ndarray]
    """Band name -> its pixels on the image's grid."""
    properties: dict[str, Any] = field(default_factory=dict)
    """The image's properties, as listImages returns them."""
    masked: dict[str, np.ndarray] = field(default_factory=dict)
    """Band -> True where the image masks a pixel."""
    grid_crs: dict[str, str] | None = None
    """The grid's CRS as the service names it (e.g. an SR-ORG code with WKT)."""

    @property
    def collection(self) -> str:
        return self.asset_id.rsplit("/", 1)[0]

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.bands.values())).shape

    @property
    def footprint(self) -> Geometry:
        return GeoBox(self.shape, self.transform, self.crs).extent.to_crs("EPSG:4326")

    def asset(self) -> dict[str, Any]:
        """The image as the REST API's EarthEngineAsset."""
        grid = grid_from_geobox(GeoBox(self.shape, self.transform, self.crs))
        if self.grid_crs is not None:
            grid = {**{k: v for k, v in grid.items() if not k.startswith("crs")}, **self.grid_crs}
        return {
            "type": "IMAGE",
            "name": f"projects/{PUBLIC_PROJECT}/assets/{self.asset_id}",
            "id": self.asset_id,
            **({"startTime": rfc3339(self.start)} if self.start is not None else {}),
            **({"endTime": rfc3339(self.end)} if self.end is not None else {}),
            "updateTime": "2024-01-01T00:00:00Z",
            "geometry": self.footprint.json,
            "bands": [{"id": name, "dataType": _data_type(values.dtype), "grid": grid}
                      for name, values in self.bands.items()],
            "properties": dict(self.properties),
            "sizeBytes": str(sum(v.nbytes for v in self.bands.values())),
        }


def _data_type(dtype: np.dtype) -> dict[str, Any]:
    """Earth Engine's PixelDataType for a numpy dtype (integers carry their range). The service writes
    protobuf JSON, which leaves out a field that is 0: an unsigned range has no ``min``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return {"precision": "DOUBLE" if dtype.itemsize == 8 else "FLOAT"}
    info = np.iinfo(dtype)
    return {"precision": "INT", "range": {k: v for k, v in (("min", int(info.min)), ("max", int(info.max))) if v}}


_CLAUSE = re.compile(r'^\s*(startTime|endTime)\s*(>=|<=|>|<|=)\s*"([^"]+)"\s*$')
_INTERSECTS = re.compile(r'^\s*intersects\("(.*)"\)\s*$', re.S)


def geodesic_region(geojson: dict[str, Any]) -> shapely.Geometry:
    """A GeoJSON region as Earth Engine reads geometries by default: edges are geodesics. A ring from
    -180 to 180 encloses nothing (both are one meridian: its geodesic area is 0), and an edge along a
    parallel bows towards the pole. Returned as a lon/lat shape for planar tests (rings that cross
    180 degrees are not unwrapped: stacube never sends one)."""
    geod = pyproj.Geod(ellps="WGS84")
    shape = shapely.geometry.shape(geojson)
    polygons = []
    for polygon in getattr(shape, "geoms", [shape]):
        area, _ = geod.geometry_area_perimeter(polygon)
        if abs(area) < 1.0:
            continue
        ring: list[tuple[float, float]] = []
        coords = list(polygon.exterior.coords)
        for (x1, y1), (x2, y2) in itertools.pairwise(coords):
            ring.append((x1, y1))
            between = int(geod.inv(x1, y1, x2, y2)[2] // 20_000)
            ring += geod.npts(x1, y1, x2, y2, between) if between else []
        polygons.append(shapely.Polygon(ring).buffer(0))
    return shapely.union_all(polygons) if polygons else shapely.Polygon()


def matches(image: EmulatedImage, query: str | None) -> bool:
    """Whether ``image`` passes the AIP-160 filter the client sends (times and region; AND only)."""
    if not query:
        return True
    for clause in re.split(r"\s+AND\s+", query):
        if found := _CLAUSE.match(clause):
            key, op, value = found.groups()
            left = image.start if key == "startTime" else image.end
            if left is None:  # an image without a time fails every time filter
                return False
            right = pd.Timestamp(value).tz_localize(None) if pd.Timestamp(value).tz is None \
                else pd.Timestamp(value).tz_convert("UTC").tz_localize(None)
            if not {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right,
                    "=": left == right}[op]:
                return False
        elif found := _INTERSECTS.match(clause):
            region = geodesic_region(json.loads(found.group(1).replace("'", '"')))
            if not image.footprint.geom.intersects(region):
                return False
        else:
            raise ValueError(f"the emulator does not understand the filter clause {clause!r}")
    return True


def _discovery_document(url: str) -> dict[str, Any]:
    """The v1alpha discovery document from the ``ee`` wheel, pointed here, with listAssets' filter and view."""
    import ee

    doc = json.loads((Path(ee.__file__).parent / "tests" / "cloud_api_discovery_document.json").read_text())
    doc["rootUrl"] = doc["baseUrl"] = url.rstrip("/") + "/"
    params = doc["resources"]["projects"]["resources"]["assets"]["methods"]["listAssets"]["parameters"]
    params["filter"] = {"location": "query", "type": "string", "description": ""}
    params["view"] = {"location": "query", "type": "string", "description": ""}
    return doc


def _algorithms() -> bytes:
    import ee

    return (Path(ee.__file__).parent / "tests" / "algorithms.json").read_bytes()


MAX_REQUEST_BYTES = 48 * 1024 * 1024  # Earth Engine's limit on a pixel request, counting one mask byte per pixel
MAX_GRID_SIDE = 32768


class EarthEngineEmulator:
    """The emulator's state: images by asset id, and every request it answered (for assertions).

    ``refuse_every_other`` answers every other pixel request with 429 (a quota storm);
    ``latency_ms`` delays every pixel request, standing in for a remote service.
    """

    def __init__(self, images: list[EmulatedImage] | None = None, page_size: int = 100,
                 refuse_every_other: bool = False, latency_ms: float = 0.0):
        self.images: dict[str, EmulatedImage] = {}
        self.page_size = page_size
        self.refuse_every_other = refuse_every_other
        self.latency_ms = latency_ms
        # whether unmask's output type holds the fill (the union of both types) or stays the input's, the
        # fill clamped into it: undocumented, so tests run both
        self.unmask_widens = True
        self.requests: list[str] = []
        self.bodies: list[dict[str, Any]] = []  # every POST body as parsed (tests read the grids sent)
        self.authorizations: set[str] = set()  # Authorization headers seen (tests check credentials arrive)
        self.token_grants: list[str] = []  # service-account JWTs exchanged at /token
        self.pixel_requests = 0
        self.refused = 0
        self.url = ""
        self._lock = threading.Lock()
        for image in images or []:
            self.add(image)

    def should_refuse(self) -> bool:
        with self._lock:
            self.pixel_requests += 1
            refuse = self.refuse_every_other and self.pixel_requests % 2 == 1
            self.refused += refuse
            return refuse

    def add(self, image: EmulatedImage) -> None:
        self.images[image.asset_id] = image

    def list_assets(self, parent: str, query: str | None, page_size: int | None, token: str | None) -> dict:
        collection = _asset_id(parent)
        found = sorted((i for i in self.images.values() if i.collection == collection and matches(i, query)),
                       key=lambda i: (i.start or pd.Timestamp.min, i.asset_id))
        offset = int(token or 0)
        size = min(page_size or self.page_size, self.page_size)
        page = found[offset : offset + size]
        answer: dict[str, Any] = {"assets": [i.asset() for i in page]}
        if offset + size < len(found):
            answer["nextPageToken"] = str(offset + size)
        return answer

    def get_asset(self, name: str) -> dict[str, Any] | None:
        asset_id = _asset_id(name)
        if asset_id in self.images:
            return self.images[asset_id].asset()
        if any(i.collection == asset_id for i in self.images.values()):
            return {"type": "IMAGE_COLLECTION", "name": f"projects/{PUBLIC_PROJECT}/assets/{asset_id}",
                    "id": asset_id}
        return None


@dataclass
class Layer:
    """One band of an evaluated image on the requested grid: values, where they are valid (unmasked),
    and the image's footprint (where it has pixels at all, masked or not)."""

    values: np.ndarray
    """The band's values on the requested grid."""
    mask: np.ndarray
    """True where a value is valid (not masked)."""
    footprint: np.ndarray
    """True where the image has pixels at all, masked or not."""


Rendered = dict[str, Layer]  # band -> layer on the requested grid


def warp_nearest(values: np.ndarray, src: GeoBox, dst: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    """``values`` resampled onto ``dst`` (nearest) and where the source covers it.

    Warped as float64 with NaN outside (exact for every integer band), so that no source value is
    ever mistaken for, or altered to avoid, a nodata value.
    """
    from odc.geo.warp import rio_reproject

    wide = np.full(dst.shape.yx, np.nan)
    rio_reproject(values.astype("float64"), wide, src, dst, "nearest", src_nodata=None, dst_nodata=np.nan)
    covered = ~np.isnan(wide)
    return np.where(covered, wide, 0).astype(values.dtype), covered


def _render_image(image: EmulatedImage, dst: GeoBox) -> Rendered:
    """The image's bands on ``dst``, nearest neighbour (Earth Engine's default), masked outside the image."""
    src = GeoBox(image.shape, image.transform, image.crs)
    rendered = {}
    for name, values in image.bands.items():
        data, covered = warp_nearest(values, src, dst)
        mask = covered
        if name in image.masked:
            hidden, _ = warp_nearest(image.masked[name].astype("uint8"), src, dst)
            mask = covered & (hidden == 0)
        rendered[name] = Layer(data, mask, covered)
    return rendered


def _constant_dtype(value: Any) -> np.dtype:
    """Earth Engine's type for a constant: a float is a double, an integer the narrowest integer type."""
    if isinstance(value, bool) or isinstance(value, int):
        return np.min_scalar_type(int(value))
    return np.dtype("float64")


CASTS = {"Image.toUint8": "uint8", "Image.toByte": "uint8", "Image.toInt8": "int8", "Image.toUint16": "uint16",
         "Image.toInt16": "int16", "Image.toShort": "int16", "Image.toUint32": "uint32", "Image.toInt32": "int32",
         "Image.toInt": "int32", "Image.toInt64": "int64", "Image.toLong": "int64", "Image.toFloat": "float32",
         "Image.toDouble": "float64"}


def _cast(layer: Layer, dtype: np.dtype) -> Layer:
    """A cast as Earth Engine does it: integer targets clamp to their range (NaN and inf are not kept)."""
    values = layer.values
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.nan_to_num(values.astype("float64")), info.min, info.max)
        values = np.rint(values) if layer.values.dtype.kind == "f" else values
    return Layer(values.astype(dtype), layer.mask, layer.footprint)


def evaluate(emulator: EarthEngineEmulator, graph: dict[str, Any], dst: GeoBox) -> Rendered:
    """Evaluate the serialized expression (the subset stacube sends: load, fromImages, mosaic, unmask,
    select, casts), with Earth Engine's rules for footprints and types."""
    values = graph["values"]

    def value(node: dict[str, Any]) -> Any:
        if "constantValue" in node:
            return node["constantValue"]
        if "valueReference" in node:
            return value(values[node["valueReference"]])
        if "arrayValue" in node:
            return [value(v) for v in node["arrayValue"]["values"]]
        call = node["functionInvocationValue"]
        name, args = call["functionName"], call.get("arguments", {})
        if name == "Image.load":
            image = emulator.images.get(value(args["id"]))
            if image is None:
                raise LookupError(f"Image.load: Image asset '{value(args['id'])}' not found (does not exist or "
                                  "caller does not have access)")
            return _render_image(image, dst)
        if name == "Image.constant":
            constant = value(args["value"])
            everywhere = np.ones(dst.shape.yx, bool)
            return {"constant": Layer(np.full(dst.shape.yx, constant, dtype=_constant_dtype(constant)), everywhere,
                                      everywhere)}
        if name == "ImageCollection.fromImages":
            return value(args["images"])
        if name == "ImageCollection.mosaic":  # the last image is on top, where it is not masked
            layers = value(args["collection"])
            result: Rendered = {}
            for layer in layers:
                for band, this in layer.items():
                    if band not in result:
                        dtype = np.result_type(*[other[band].values.dtype for other in layers if band in other])
                        result[band] = Layer(np.zeros(this.values.shape, dtype), np.zeros_like(this.mask),
                                             np.zeros_like(this.footprint))
                    np.copyto(result[band].values, this.values, where=this.mask, casting="unsafe")
                    result[band].mask[this.mask] = True
                    result[band].footprint[this.footprint] = True
            return result
        if name == "Image.unmask":
            # the value's type joins the input's (a double constant makes a float32 band double);
            # sameFootprint (default true) keeps pixels outside the input's footprint masked
            image, fill = value(args["input"]), next(iter(value(args["value"]).values()))
            same = value(args["sameFootprint"]) if "sameFootprint" in args else True
            out = {}
            for band, layer in image.items():
                if not emulator.unmask_widens:  # the other reading of the docs: the input's type, fill clamped
                    fill = _cast(fill, layer.values.dtype)
                dtype = np.result_type(layer.values.dtype, fill.values.dtype)
                footprint = layer.footprint if same else layer.footprint | fill.footprint
                data = np.where(layer.mask, layer.values.astype(dtype), fill.values.astype(dtype))
                out[band] = Layer(data, layer.mask | (footprint & fill.mask), footprint)
            return out
        if name == "Image.select":
            image, wanted = value(args["input"]), value(args["bandSelectors"])
            missing = [b for b in wanted if b not in image]
            if missing:
                raise LookupError(f"Image.select: Pattern '{missing[0]}' did not match any bands.")
            return {band: image[band] for band in wanted}
        if name in CASTS:
            return {band: _cast(layer, np.dtype(CASTS[name])) for band, layer in value(args["value"]).items()}
        raise NotImplementedError(f"the emulator does not evaluate {name}")

    return value(values[graph["result"]])


def npy_bytes(rendered: Rendered, bands: list[str] | None) -> bytes:
    """The NPY answer: a structured array, one field per band in its type; masked pixels, and pixels
    outside the footprint, are 0 (as Earth Engine sends them)."""
    import io

    names = bands or list(rendered)
    first = rendered[names[0]].values
    out = np.zeros(first.shape, dtype=[(n, rendered[n].values.dtype) for n in names])
    for name in names:
        layer = rendered[name]
        out[name] = np.where(layer.mask, layer.values, 0)
    buffer = io.BytesIO()
    np.save(buffer, out, allow_pickle=False)
    return buffer.getvalue()


def request_bytes(dst: GeoBox, rendered: Rendered, bands: list[str] | None) -> int:
    """What Earth Engine counts against its request limit: band bytes plus one mask byte per pixel."""
    names = bands or list(rendered)
    pixels = dst.shape.y * dst.shape.x
    return pixels * (sum(rendered[n].values.dtype.itemsize for n in names) + 1)


def _no_constant(token: str) -> Any:
    """JSON has no NaN or Infinity, and Google's front end refuses a body that holds them."""
    raise ValueError(f"Invalid JSON payload received. Unexpected token.\n{token}\n^")


def _asset_id(name: str) -> str:
    """``projects/<p>/assets/<id>`` -> ``<id>``."""
    return unquote(name).split("/assets/", 1)[-1]


def _handler(emulator: EarthEngineEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read emulator.requests
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode())

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": {"code": status, "message": message, "status": "NOT_FOUND"}})

        def _token(self, form: dict[str, list[str]]) -> None:
            """A service account's signed JWT, or a stored user credential's refresh token, in; an access
            token out (what was granted is kept for tests to read)."""
            grant = form.get("grant_type", [""])[0]
            if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" and "assertion" in form:
                emulator.token_grants.append(form["assertion"][0])
            elif grant == "refresh_token" and "refresh_token" in form:
                emulator.token_grants.append(form["refresh_token"][0])
            else:
                return self._json(400, {"error": "invalid_grant"})
            return self._json(200, {"access_token": f"access-{len(emulator.token_grants)}", "expires_in": 3600,
                                    "token_type": "Bearer"})

        def do_GET(self, form: str | None = None) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query if form is None else form)
            path = unquote(parsed.path)
            emulator.requests.append(f"GET {path}")
            emulator.authorizations.add(self.headers.get("Authorization", ""))
            if path == "/$discovery/rest":
                return self._json(200, _discovery_document(emulator.url))
            resource = re.sub(r"^/v1\w*/", "", path)
            if re.fullmatch(r"projects/[^/]+/algorithms", resource):
                return self._send(200, _algorithms())
            if resource.endswith(":listAssets"):
                size = int(query["pageSize"][0]) if "pageSize" in query else None
                return self._json(200, emulator.list_assets(resource[: -len(":listAssets")],
                                                            query.get("filter", [None])[0], size,
                                                            query.get("pageToken", [None])[0]))
            if "/assets/" in resource:
                asset = emulator.get_asset(resource)
                return self._json(200, asset) if asset else self._error(404, f"Asset '{resource}' not found.")
            return self._error(404, f"the emulator has no {path}")

        def do_POST(self) -> None:
            path = unquote(urlparse(self.path).path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("X-HTTP-Method-Override") == "GET":
                # the client turns a GET whose URL is too long (a long region filter) into a POST of its query
                return self.do_GET(form=raw.decode())
            emulator.requests.append(f"POST {path}")
            emulator.authorizations.add(self.headers.get("Authorization", ""))
            if path == "/token":  # Google's OAuth token endpoint, for service-account keys that name it
                return self._token(parse_qs(raw.decode()))
            try:
                body = json.loads(raw or b"{}", parse_constant=_no_constant)
            except ValueError as err:
                return self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": str(err)}})
            emulator.bodies.append(body)
            resource = re.sub(r"^/v1\w*/", "", path)
            if emulator.latency_ms:
                time.sleep(emulator.latency_ms / 1000)
            if emulator.should_refuse():
                return self._json(429, {"error": {"code": 429, "message": "Too many concurrent requests.",
                                                  "status": "RESOURCE_EXHAUSTED"}})
            try:
                dst = geobox_from_grid(body["grid"])
                if max(dst.shape.yx) > MAX_GRID_SIDE:
                    message = (f"Pixel grid dimensions ({dst.shape.x}x{dst.shape.y}) must be less than or equal to "
                               f"{MAX_GRID_SIDE}.")
                    return self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message}})
                if resource.endswith(":getPixels"):
                    rendered = _render_image(emulator.images[_asset_id(resource[: -len(":getPixels")])], dst)
                elif resource.endswith("image:computePixels"):
                    rendered = evaluate(emulator, body["expression"], dst)
                else:
                    return self._error(404, f"the emulator has no {path}")
                bands = body.get("bandIds")
                size = request_bytes(dst, rendered, bands)
                if size > MAX_REQUEST_BYTES:
                    return self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                      f"Total request size ({size} bytes) must be less than or equal to "
                                      f"{MAX_REQUEST_BYTES} bytes."}})
                return self._send(200, npy_bytes(rendered, bands), "application/octet-stream")
            except (KeyError, LookupError) as err:
                return self._error(404, str(err).strip("'\""))
            except (NotImplementedError, CatalogError) as err:
                return self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": str(err)}})

    return Handler


@contextmanager
def serve_earthengine(emulator: EarthEngineEmulator) -> Iterator[EarthEngineEmulator]:
    """Run ``emulator`` on 127.0.0.1 (a free port) for the duration of the block; sets ``emulator.url``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(emulator))
    emulator.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="ee-emulator", daemon=True)
    thread.start()
    try:
        yield emulator
    finally:
        server.shutdown()
        server.server_close()

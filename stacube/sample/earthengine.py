"""A loopback Earth Engine REST emulator for tests, benchmarks and the demo: no request leaves 127.0.0.1.

The real ``earthengine-api`` client talks to it (``ee.Initialize(url=emulator.url, ...)``). It serves
the discovery document and the algorithm list shipped as fixtures in the ``ee`` wheel, and the asset
methods stacube uses: ``get`` and ``listAssets`` (with the AIP-160 filter the client builds from
``listImages``' start time, end time and region, and paging). Images are held in memory as numpy
bands on a grid (CRS and affine transform).
"""

from __future__ import annotations

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
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from ..catalog.earthengine import geobox_from_grid, grid_from_geobox
from ..catalog.local import rfc3339

PUBLIC_PROJECT = "earthengine-public"


@dataclass
class EmulatedImage:
    """One Earth Engine image: an asset id (``COLLECTION/IMAGE``), a time span, a grid and bands."""

    asset_id: str
    start: pd.Timestamp | None  # None: an image without a time (a DEM, a trend), dated by updateTime
    end: pd.Timestamp | None
    crs: str
    transform: Affine
    bands: dict[str, np.ndarray]
    properties: dict[str, Any] = field(default_factory=dict)
    masked: dict[str, np.ndarray] = field(default_factory=dict)  # band -> True where the image masks a pixel

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
        return {
            "type": "IMAGE",
            "name": f"projects/{PUBLIC_PROJECT}/assets/{self.asset_id}",
            "id": self.asset_id,
            **({"startTime": rfc3339(self.start), "endTime": rfc3339(self.end)} if self.start is not None else {}),
            "updateTime": "2024-01-01T00:00:00Z",
            "geometry": self.footprint.json,
            "bands": [{"id": name, "dataType": _data_type(values.dtype), "grid": grid}
                      for name, values in self.bands.items()],
            "properties": dict(self.properties),
            "sizeBytes": str(sum(v.nbytes for v in self.bands.values())),
        }


def _data_type(dtype: np.dtype) -> dict[str, Any]:
    """Earth Engine's PixelDataType for a numpy dtype (integers carry their range)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return {"precision": "DOUBLE" if dtype.itemsize == 8 else "FLOAT"}
    info = np.iinfo(dtype)
    return {"precision": "INT", "range": {"min": int(info.min), "max": int(info.max)}}


_CLAUSE = re.compile(r'^\s*(startTime|endTime)\s*(>=|<=|>|<|=)\s*"([^"]+)"\s*$')
_INTERSECTS = re.compile(r'^\s*intersects\("(.*)"\)\s*$', re.S)


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
            region = Geometry(json.loads(found.group(1).replace("'", '"')), "EPSG:4326")
            if not image.footprint.intersects(region):
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
        self.requests: list[str] = []
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


Rendered = dict[str, tuple[np.ndarray, np.ndarray]]  # band -> (values, mask) on the requested grid


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
    rendered = {name: warp_nearest(values, src, dst) for name, values in image.bands.items()}
    for name, masked in image.masked.items():
        values, covered = rendered[name]
        hidden, _ = warp_nearest(masked.astype("uint8"), src, dst)
        rendered[name] = values, covered & (hidden == 0)
    return rendered


def evaluate(emulator: EarthEngineEmulator, graph: dict[str, Any], dst: GeoBox) -> Rendered:
    """Evaluate the serialized expression (the subset stacube sends: load, fromImages, mosaic, unmask, select)."""
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
                raise LookupError(f"Image asset '{value(args['id'])}' not found.")
            return _render_image(image, dst)
        if name == "Image.constant":
            return {"constant": (np.full(dst.shape.yx, value(args["value"])), np.ones(dst.shape.yx, bool))}
        if name == "ImageCollection.fromImages":
            return value(args["images"])
        if name == "ImageCollection.mosaic":  # the last image is on top, where it is not masked
            layers = value(args["collection"])
            result: Rendered = {}
            for layer in layers:
                for band, (data, mask) in layer.items():
                    if band not in result:
                        result[band] = (np.zeros_like(data), np.zeros_like(mask))
                    np.copyto(result[band][0], data, where=mask)
                    result[band][1][mask] = True
            return result
        if name == "Image.unmask":
            image, fill = value(args["input"]), value(args["value"])
            fill_values = next(iter(fill.values()))[0]
            return {band: (np.where(mask, data, fill_values.astype(data.dtype)), np.ones_like(mask))
                    for band, (data, mask) in image.items()}
        if name == "Image.select":
            image, wanted = value(args["input"]), value(args["bandSelectors"])
            missing = [b for b in wanted if b not in image]
            if missing:
                raise LookupError(f"Image.select: Pattern '{missing[0]}' did not match any bands.")
            return {band: image[band] for band in wanted}
        raise NotImplementedError(f"the emulator does not evaluate {name}")

    return value(values[graph["result"]])


def npy_bytes(rendered: Rendered, bands: list[str] | None) -> bytes:
    """The NPY answer: a structured array, one field per band; masked pixels are 0 (as Earth Engine sends)."""
    import io

    names = bands or list(rendered)
    first = rendered[names[0]][0]
    out = np.zeros(first.shape, dtype=[(n, rendered[n][0].dtype) for n in names])
    for name in names:
        data, mask = rendered[name]
        out[name] = np.where(mask, data, 0)
    buffer = io.BytesIO()
    np.save(buffer, out, allow_pickle=False)
    return buffer.getvalue()


def request_bytes(dst: GeoBox, rendered: Rendered, bands: list[str] | None) -> int:
    """What Earth Engine counts against its request limit: band bytes plus one mask byte per pixel."""
    names = bands or list(rendered)
    pixels = dst.shape.y * dst.shape.x
    return pixels * (sum(rendered[n][0].dtype.itemsize for n in names) + 1)


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

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
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
            emulator.requests.append(f"POST {path}")
            emulator.authorizations.add(self.headers.get("Authorization", ""))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path == "/token":  # Google's OAuth token endpoint, for service-account keys that name it
                return self._token(parse_qs(raw.decode()))
            body = json.loads(raw or b"{}")
            resource = re.sub(r"^/v1\w*/", "", path)
            if emulator.latency_ms:
                time.sleep(emulator.latency_ms / 1000)
            if emulator.should_refuse():
                return self._json(429, {"error": {"code": 429, "message": "Too many concurrent requests.",
                                                  "status": "RESOURCE_EXHAUSTED"}})
            try:
                dst = geobox_from_grid(body["grid"])
                if max(dst.shape.yx) > MAX_GRID_SIDE:
                    return self._json(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                      f"Grid dimensions must be at most {MAX_GRID_SIDE} per side."}})
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

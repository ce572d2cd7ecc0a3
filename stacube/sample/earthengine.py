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

PUBLIC_PROJECT = "earthengine-public"


@dataclass
class EmulatedImage:
    """One Earth Engine image: an asset id (``COLLECTION/IMAGE``), a time span, a grid and bands."""

    asset_id: str
    start: pd.Timestamp
    end: pd.Timestamp
    crs: str
    transform: Affine
    bands: dict[str, np.ndarray]
    properties: dict[str, Any] = field(default_factory=dict)

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
        height, width = self.shape
        t = self.transform
        grid = {"crsCode": self.crs, "dimensions": {"width": width, "height": height},
                "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c,
                                    "shearY": t.d, "scaleY": t.e, "translateY": t.f}}
        return {
            "type": "IMAGE",
            "name": f"projects/{PUBLIC_PROJECT}/assets/{self.asset_id}",
            "id": self.asset_id,
            "startTime": _rfc3339(self.start),
            "endTime": _rfc3339(self.end),
            "geometry": self.footprint.json,
            "bands": [{"id": name, "dataType": _data_type(values.dtype), "grid": grid}
                      for name, values in self.bands.items()],
            "properties": dict(self.properties),
            "sizeBytes": str(sum(v.nbytes for v in self.bands.values())),
        }


def _rfc3339(stamp: pd.Timestamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class EarthEngineEmulator:
    """The emulator's state: images by asset id, and every request path it answered (for assertions)."""

    def __init__(self, images: list[EmulatedImage] | None = None, page_size: int = 100):
        self.images: dict[str, EmulatedImage] = {}
        self.page_size = page_size
        self.requests: list[str] = []
        self.url = ""
        for image in images or []:
            self.add(image)

    def add(self, image: EmulatedImage) -> None:
        self.images[image.asset_id] = image

    def list_assets(self, parent: str, query: str | None, page_size: int | None, token: str | None) -> dict:
        collection = _asset_id(parent)
        found = sorted((i for i in self.images.values() if i.collection == collection and matches(i, query)),
                       key=lambda i: (i.start, i.asset_id))
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

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            path = unquote(parsed.path)
            emulator.requests.append(f"GET {path}")
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

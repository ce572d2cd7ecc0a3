"""Errors a user can act on: each names the bad value and what to do about it."""

from __future__ import annotations


class StacubeError(Exception):
    """Base class of every error stacube raises on purpose."""


class SpecError(StacubeError, ValueError):
    """The CubeSpec is inconsistent (bad dtype, nodata, chunks, zone, or source/variable mismatch)."""


class ROIError(StacubeError, ValueError):
    """The region of interest is unusable (no CRS, or outside every zone of the cube)."""


class TOIError(StacubeError, ValueError):
    """The time of interest is unusable (outside the time axis, or given to a cube without time)."""


class UnknownVariableError(StacubeError, KeyError):
    """A variable name the cube does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CubeNotFoundError(StacubeError, FileNotFoundError):
    """No cube at the given path or URL."""


class CubeExistsError(StacubeError, FileExistsError):
    """A cube already exists where a new one was to be created."""


class CatalogError(StacubeError):
    """The source catalog could not be searched or synced (unreachable API, bad response)."""


class ParcelError(StacubeError, ValueError):
    """A parcel file or frame cannot be imported as it is (no id column, no CRS)."""


class ItemError(StacubeError, ValueError):
    """A catalog Item lacks what the cube needs (an asset, projection info)."""


class AssetReadError(StacubeError):
    """One asset of an Item could not be read; names its URL so the user can check that file."""

    def __init__(self, url: str, error: BaseException):
        from .signing import redact  # a signed URL or a password in one never reaches a log

        super().__init__(redact(f"{url}: {type(error).__name__}: {error}"))
        self.url = redact(url)


class PatchReadError(StacubeError):
    """A patch could not be read from its source after retries; names the patch and the URL."""

    def __init__(self, message: str, patch_id: str, urls: list[str]):
        super().__init__(message)
        self.patch_id = patch_id
        self.urls = urls


class CubeDamagedError(StacubeError):
    """Stored chunks whose bytes no longer match their checksum: names the chunks, variable and snapshot."""

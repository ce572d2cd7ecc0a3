"""Signing asset URLs at read time (redacting them for logs and records is ``stacube.redaction``).

Some catalogs serve assets that must be signed before they can be read (Planetary Computer's SAS
tokens). Tokens expire, so a URL is signed just before GDAL opens it, on a copy that lives only
inside the read: the catalog, the commit metadata and the logs keep the unsigned href.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from .errors import SpecError

# Redaction moved to its own module (errors need it, and signers raise errors); still importable from here.
from .redaction import SENSITIVE_QUERY, redact, redact_log_records, redact_url

__all__ = ["KNOWN", "SENSITIVE_QUERY", "Signer", "check_signer", "redact", "redact_log_records", "redact_url",
           "resolve_signer"]

Signer = Callable[[str], str]
# Named signers: the ready-made ones a spec may name instead of "module:function".
KNOWN = {"planetary-computer": "planetary_computer:sign"}


def check_signer(name: str) -> str:
    """A signer is a known name or "module:function"; checked when the spec is made, resolved when used."""
    target = KNOWN.get(name, name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", target):
        raise SpecError(f"signer {name!r} is neither one of {sorted(KNOWN)} nor 'module:function'")
    return name


def resolve_signer(name: str | None) -> Signer | None:
    """The function a signer name stands for (imported on first use). Signed URLs then pass through
    GDAL and rasterio, whose debug logs name them: every log record is redacted from here on."""
    if name is None:
        return None
    redact_log_records()
    module_name, _, attribute = KNOWN.get(name, name).partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        hint = " (pip install planetary-computer)" if name == "planetary-computer" else ""
        raise SpecError(f"signer {name!r} cannot be loaded{hint}: {err}") from err
    return function

"""Command-line arguments parsed the same way by every command (``stacube.cli``, ``stacube.spec_cli``)."""

from __future__ import annotations

import math


def parse_bbox(text: str, across_180: bool = False) -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` as four finite numbers, the min before the max (``across_180``: a lon/lat
    extent whose west is east of its east crosses 180 degrees, as the ready-made specs read it)."""
    from .errors import ROIError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ROIError(f"--bbox {text!r}: give four numbers minx,miny,maxx,maxy") from None
    if len(values) != 4:
        raise ROIError(f"--bbox {text!r}: give four numbers minx,miny,maxx,maxy, got {len(values)}")
    for name, value in zip(("minx", "miny", "maxx", "maxy"), values, strict=True):
        if not math.isfinite(value):
            raise ROIError(f"--bbox {text!r}: {name} is {value!r}; give four finite numbers minx,miny,maxx,maxy")
    if across_180 and values[0] > values[2]:  # a lon/lat extent from west past 180 degrees to east
        if values[1] >= values[3]:
            raise ROIError(f"--bbox {text!r}: miny must be below maxy")
        return values  # type: ignore[return-value]
    if values[0] >= values[2] or values[1] >= values[3]:
        raise ROIError(f"--bbox {text!r}: minx must be below maxx and miny below maxy"
                       + (" (west > east crosses 180 degrees)" if across_180 else ""))
    return values  # type: ignore[return-value]

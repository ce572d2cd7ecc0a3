"""Process memory: give freed memory back to the operating system between patches, and read a peak.

A patch's temporaries (the decoded source windows, conversions, compressed chunks) are tens of MB
each, freed when the patch is written. glibc keeps such freed blocks in its heaps (one arena per
thread) rather than returning them, so a run of many patches on several threads held a few hundred
MB more than the Tile it builds: an eager cold load of a 471 MB Tile peaked at 1,067 MB where
odc-stac's load of the same ROI peaked at 764 MB. ``malloc_trim`` after each patch hands them back.
Elsewhere (macOS, musl) it does nothing; ``STACUBE_MALLOC_TRIM=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable


@functools.cache
def _trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed() -> None:
    """Return the heap's free memory to the OS, where the C library can (glibc's ``malloc_trim``)."""
    trim = _trim()
    if trim is not None and os.environ.get("STACUBE_MALLOC_TRIM", "1") != "0":
        trim(0)


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB: Linux's VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss keeps the forking parent's peak across exec, so a child of a big parent
    reported the parent's); ru_maxrss where /proc is absent."""
    import resource

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

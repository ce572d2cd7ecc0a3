"""Prefect global concurrency limits per source host: ``stacube-source-<host>``.

Cap a source across every flow run with ``prefect gcl create stacube-source-<host> --limit N``
(for Earth Engine, stay under the concurrent requests a project gets). Each patch task holds a slot
of the limits for the hosts its patches read from; limits nobody created are not used at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..grid import PatchIndex
from ..sources import Source


def source_limits(source: Source, patch: PatchIndex) -> list[str]:
    """Concurrency-limit names for the hosts a patch reads from: ``stacube-source-<host>``.

    The source says which host each asset's read goes to (every Earth Engine band counts against
    the Earth Engine endpoint's host).

    Parameters
    ----------
    source : Source
        The cube's source.
    patch : PatchIndex
        A patch, with its Items.

    Returns
    -------
    list[str]
        The names, sorted, one per host of the assets the patch reads.
    """
    hosts = {source.host_of(item.assets[key].href)
             for item in patch.items for key in source.assets.values() if key in item.assets}
    return sorted(f"stacube-source-{host}" for host in hosts)


def limits_of_source(source: Source) -> Callable[[PatchIndex], list[str]]:
    """``source_limits`` for the patches of a cube whose spec has this source.

    Parameters
    ----------
    source : Source
        The cube's source.

    Returns
    -------
    Callable[[PatchIndex], list[str]]
        The limit names of a patch (``PrefectRunner.limits``).
    """
    return functools.partial(source_limits, source)


def existing_limits(names: set[str]) -> set[str]:
    """Those of ``names`` that are active Prefect global concurrency limits, asked once per run.

    Prefect's ``concurrency()`` waits on a limit that does not exist (and logs a warning each time, for
    every task), so only limits someone created are used.

    Parameters
    ----------
    names : set[str]
        Limit names.

    Returns
    -------
    set[str]
        Those that exist and are active.
    """
    if not names:
        return set()
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = set()
    with get_client(sync_client=True) as client:
        for name in sorted(names):
            try:
                if client.read_global_concurrency_limit_by_name(name).active:
                    found.add(name)
            except ObjectNotFound:
                continue
    return found

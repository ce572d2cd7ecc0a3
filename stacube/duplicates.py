"""Which of several Items of one acquisition feed a patch: a source's duplicate rule.

Providers republish acquisitions when they reprocess them: Earth Search holds
``S2B_33TYN_20220302_0_L2A`` and ``S2B_33TYN_20220302_1_L2A``, the same granule at the same instant
under two processing baselines. Mosaicking both by (datetime, id) lets the stale one win, so a
source names a rule:

``keep-all``
    every Item is read (the mosaic rule decides between them);
``newest-processing``
    Items of the same platform, tile, datetime and datastrip are one acquisition, and only the
    newest processing of it is read: the highest ``s2:processing_baseline`` (or
    ``processing:version``), then the latest ``updated``, then the greatest id. The Sentinel-2
    presets use it.

A granule whose tile two datastrips cross is published as two Items of one platform, tile and
datetime holding different ground; both must be read. Their datastrips were sensed at different
times, which ``s2:datastrip_id`` (Planetary Computer, Earth Search) or ``eopf:datastrip_id`` (CDSE)
carry as ``_S<time>_``, while a reprocessing keeps its datastrip's sensing time and changes only its
generation time. On 19 recorded pairs (tests/data/SOURCES.md) this told them apart every time, where
a footprint overlap could not: a real split half lay 95% inside the other half, and a reprocessed copy
99.1% inside the newer one. Items that name no datastrip fall back to the footprint: an older one is
superseded only where a newer one covers 98% of it, so a split half is kept rather than lost.

Superseded Items are listed in the commit metadata of the run that left them out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import shapely

from .errors import SpecError
from .grid import source_tile_name
from .timeaxis import aware_utc, stamp_or_none

if TYPE_CHECKING:
    import pystac

RULES = ("keep-all", "newest-processing")


def check_rule(rule: str) -> str:
    """A source's duplicate rule, checked when the spec is made (before any download).

    Parameters
    ----------
    rule : str
        One of ``RULES``.

    Returns
    -------
    str
        ``rule``.

    Raises
    ------
    SpecError
        If ``rule`` is not one of ``RULES``.
    """
    if rule not in RULES:
        raise SpecError(f"unknown duplicate rule {rule!r}; use one of {list(RULES)}")
    return rule


def _version(text: Any) -> tuple[int, ...]:
    """A processing version as numbers ("05.09" -> (5, 9)); nothing readable sorts first."""
    parts = []
    for part in str(text or "").replace("-", ".").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def _updated(item: pystac.Item) -> pd.Timestamp:
    """An Item's ``updated`` in UTC; absent or unreadable sorts first."""
    stamp = stamp_or_none(item.properties.get("updated"))
    return pd.Timestamp.min.tz_localize("UTC") if stamp is None else stamp


_SENSED = re.compile(r"_S(\d{8}T\d{6})(?:_|$)")
DATASTRIP_KEYS = ("s2:datastrip_id", "eopf:datastrip_id")
SAME_GROUND = 0.98  # share of an older Item's footprint a newer one must cover, for Items naming no datastrip


def datastrip_sensed(item: pystac.Item) -> str | None:
    """When the Item's datastrip was sensed (``_S<time>_`` of its datastrip id), or None if it names none.

    Parameters
    ----------
    item : pystac.Item
        The Item.

    Returns
    -------
    str or None
        ``YYYYmmddTHHMMSS``, or None.
    """
    for key in DATASTRIP_KEYS:
        value = item.properties.get(key)
        found = _SENSED.search(value) if isinstance(value, str) else None
        if found:
            return found.group(1)
    return None


def acquisition(item: pystac.Item) -> tuple[str | None, str, str | None, str | None]:
    """What makes two Items one acquisition: platform, source tile, datetime, datastrip.

    Parameters
    ----------
    item : pystac.Item
        The Item.

    Returns
    -------
    tuple[str or None, str, str or None, str or None]
        Its ``platform``; its source tile (``grid.source_tile_name``: the MGRS tile, else its id); its
        datetime in UTC ISO format (``start_datetime`` for an Item without one); when its datastrip was
        sensed (``datastrip_sensed``), None if it names none.
    """
    properties = item.properties
    when = item.datetime if item.datetime else properties.get("start_datetime")
    try:
        when = aware_utc(pd.Timestamp(when)).isoformat() if when else None
    except (TypeError, ValueError):
        when = str(when)
    return properties.get("platform"), source_tile_name(properties, item.id), when, datastrip_sensed(item)


def newness(item: pystac.Item) -> tuple:
    """Order of preference between reprocessings of one acquisition: greater is newer.

    Parameters
    ----------
    item : pystac.Item
        The Item.

    Returns
    -------
    tuple
        (processing version as numbers from ``s2:processing_baseline`` or ``processing:version``,
        ``updated`` as UTC, id): compared in that order; what is missing or unreadable sorts first.
    """
    properties = item.properties
    version = properties.get("s2:processing_baseline", properties.get("processing:version"))
    return _version(version), _updated(item), item.id


def drop_duplicates(items: Sequence[pystac.Item], rule: str) -> tuple[list[pystac.Item], list[pystac.Item]]:
    """The Items to read under ``rule``, in the order given, and the ones it superseded.

    Parameters
    ----------
    items : Sequence[pystac.Item]
        The Items that feed one patch.
    rule : str
        ``"keep-all"`` keeps every Item; ``"newest-processing"`` keeps the ``newness``-greatest Item of
        each ``acquisition``, and any older one not on the same ground (``_same_ground``).

    Returns
    -------
    tuple[list[pystac.Item], list[pystac.Item]]
        The Items to read, and the superseded ones, each in the order given.

    Raises
    ------
    SpecError
        If ``rule`` is not one of ``RULES`` (``check_rule``), however few the Items.
    """
    check_rule(rule)
    if rule == "keep-all" or len(items) < 2:
        return list(items), []
    groups: dict[tuple, list[pystac.Item]] = {}
    for item in items:
        groups.setdefault(acquisition(item), []).append(item)
    winners: set[int] = set()
    for group in groups.values():
        kept: list[pystac.Item] = []
        for item in sorted(group, key=newness, reverse=True):
            if not any(_same_ground(item, newer) for newer in kept):
                kept.append(item)
        winners.update(id(item) for item in kept)
    return [i for i in items if id(i) in winners], [i for i in items if id(i) not in winners]


def _same_ground(older: pystac.Item, newer: pystac.Item) -> bool:
    """Whether ``older`` is a reprocessing of ``newer``'s pixels, not the other half of a granule split
    across two datastrips (which shares platform, tile and datetime but not ground): by their datastrip's
    sensing time where both name one (``acquisition`` groups by it), else by ``newer`` covering
    ``SAME_GROUND`` of ``older``'s footprint. Items without a footprint count as the same ground."""
    if datastrip_sensed(older) is not None and datastrip_sensed(newer) is not None:
        return True
    if not older.geometry or not newer.geometry:
        return True
    old, new = shapely.geometry.shape(older.geometry), shapely.geometry.shape(newer.geometry)
    if not (old.is_valid and new.is_valid) or old.area == 0:
        return True
    return old.intersection(new).area >= SAME_GROUND * old.area

"""Which of several Items of one acquisition feed a patch: a source's duplicate rule.

Providers republish acquisitions when they reprocess them: Earth Search holds
``S2B_33TYN_20220302_0_L2A`` and ``S2B_33TYN_20220302_1_L2A``, the same granule at the same instant
under two processing baselines. Mosaicking both by (datetime, id) lets the stale one win, so a
source names a rule:

``keep-all``
    every Item is read (the mosaic rule decides between them);
``newest-processing``
    Items of the same platform, tile and datetime are one acquisition, and only the newest
    processing of it is read: the highest ``s2:processing_baseline`` (or ``processing:version``),
    then the latest ``updated``, then the greatest id. An older Item is superseded only where a newer
    one covers at least half its footprint: the two halves of a granule split across two datastrips
    (one platform, tile and datetime, different ground) are both read. The Sentinel-2 presets use it.

Superseded Items are listed in the commit metadata of the run that left them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import shapely

from .errors import SpecError
from .grid import source_tile_name
from .timeaxis import aware_utc

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
    value = item.properties.get("updated")
    try:
        stamp = pd.Timestamp(value) if value else None
    except (TypeError, ValueError):
        stamp = None
    if stamp is None or pd.isna(stamp):
        return pd.Timestamp.min.tz_localize("UTC")
    return aware_utc(stamp)


def acquisition(item: pystac.Item) -> tuple[str | None, str, str | None]:
    """What makes two Items one acquisition: platform, source tile, datetime.

    Parameters
    ----------
    item : pystac.Item
        The Item.

    Returns
    -------
    tuple[str or None, str, str or None]
        Its ``platform``; its source tile (``grid.source_tile_name``: the MGRS tile, else its id); its
        datetime in ISO format (``start_datetime`` for an Item without one).
    """
    properties = item.properties
    when = item.datetime.isoformat() if item.datetime else properties.get("start_datetime")
    return properties.get("platform"), source_tile_name(properties, item.id), when


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
        each ``acquisition``.

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
    """Whether ``newer`` covers at least half of ``older``'s footprint: a reprocessing of the same pixels,
    not the other half of a granule split across two datastrips (which shares platform, tile and datetime
    but not ground). Items without a footprint count as the same ground."""
    if not older.geometry or not newer.geometry:
        return True
    old, new = shapely.geometry.shape(older.geometry), shapely.geometry.shape(newer.geometry)
    if not (old.is_valid and new.is_valid) or old.area == 0:
        return True
    return old.intersection(new).area >= 0.5 * old.area

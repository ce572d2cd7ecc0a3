"""Search a small local catalog in memory: rustac reads the stac-geoparquet, cql2 matches the Items.

Starting rustac's DuckDB client has a cost per process, which is most of what a first load over
a few hundred Items pays for its catalog. Below ``MAX_ITEMS`` Items the
whole query (bbox or geometry, datetime, CQL2 filter) becomes one CQL2 expression evaluated on
each Item, with the semantics of rustac's DuckDB search (geometries meet, touching counts;
datetimes inclusive at both ends). Whatever cql2 cannot decide (an Item without a property the
filter compares) returns None, and the caller asks DuckDB instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cql2
import pyarrow.parquet as pq
import rustac

from ..cql import read_filter

MAX_ITEMS = 5000  # reading and matching this many takes about as long as starting DuckDB


def _box(bbox: Sequence[float]) -> dict[str, Any]:
    west, south, east, north = bbox
    return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                [west, south]]]}


def _datetime_terms(datetime: str) -> list[dict[str, Any]]:
    start, _, end = datetime.partition("/")
    end = end if "/" in datetime else start
    terms = []
    if start not in ("", ".."):
        terms.append({"op": ">=", "args": [{"property": "datetime"}, {"timestamp": start}]})
    if end not in ("", ".."):
        terms.append({"op": "<=", "args": [{"property": "datetime"}, {"timestamp": end}]})
    return terms


def expression(kwargs: dict[str, Any]) -> cql2.Expr | None:
    """The search as one CQL2 expression, or None when it needs DuckDB (a bbox across the antimeridian).

    Parameters
    ----------
    kwargs : dict[str, Any]
        rustac search arguments: ``bbox``, ``intersects``, ``datetime``, ``filter`` (each optional).

    Returns
    -------
    cql2.Expr or None
        Every argument and-ed (True for none).

    Raises
    ------
    SpecError
        If ``filter`` is not CQL2-JSON cql2 can read (``read_filter``).
    """
    terms: list[dict[str, Any]] = []
    if "bbox" in kwargs:
        if kwargs["bbox"][0] > kwargs["bbox"][2]:
            return None
        terms.append({"op": "s_intersects", "args": [{"property": "geometry"}, _box(kwargs["bbox"])]})
    if "intersects" in kwargs:
        terms.append({"op": "s_intersects", "args": [{"property": "geometry"}, kwargs["intersects"]]})
    if "datetime" in kwargs:
        terms += _datetime_terms(kwargs["datetime"])
    if kwargs.get("filter"):
        terms.append(read_filter(kwargs["filter"]))
    return cql2.Expr({"op": "and", "args": terms} if len(terms) > 1 else terms[0] if terms else True)


def item_count(parts: Sequence[Path]) -> int:
    """Items in ``parts``, from the Parquet footers alone.

    Parameters
    ----------
    parts : Sequence[pathlib.Path]
        stac-geoparquet files.

    Returns
    -------
    int
        Their rows, summed.
    """
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


def search(parts: Sequence[Path], kwargs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The Items of ``parts`` that match, as dicts; None if this search is one for DuckDB (which also
    names the file when a part cannot be read).

    Parameters
    ----------
    parts : Sequence[pathlib.Path]
        The catalog's parts.
    kwargs : dict[str, Any]
        rustac search arguments (``expression``).

    Returns
    -------
    list[dict[str, Any]] or None
        The matching Items; None for more than ``MAX_ITEMS`` Items, a bbox across the antimeridian,
        a part that cannot be read or a match cql2 cannot decide.

    Raises
    ------
    SpecError
        If the filter is not CQL2-JSON cql2 can read (``read_filter``).
    """
    expr = expression(kwargs)
    if expr is None:
        return None
    found = []
    try:
        if item_count(parts) > MAX_ITEMS:
            return None
        for part in parts:
            found += [item for item in rustac.read_sync(str(part))["features"] if expr.matches(item)]
    except Exception:  # noqa: BLE001 - an unreadable part, or cql2 could not decide: DuckDB answers instead
        return None
    return found

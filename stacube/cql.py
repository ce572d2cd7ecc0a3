"""A source's CQL2-JSON filter checked once, the same way where a source is made and where a catalog is searched.

Light on purpose (cql2 is imported when a filter is checked): the spec checks its source's filter, and
importing the spec must not load the catalog's pyarrow and rustac."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SpecError, shown


def read_filter(cql: Any) -> dict[str, Any]:
    """``cql`` checked to be CQL2-JSON that cql2 can read and turn into a query, as a dict.

    Parameters
    ----------
    cql : Any
        CQL2-JSON on the Items' properties.

    Returns
    -------
    dict[str, Any]
        ``cql`` as a dict.

    Raises
    ------
    SpecError
        If ``cql`` is not a mapping (CQL2 text, say), or cql2 cannot read it or write it as SQL (an
        unknown form, an operator given the wrong number of arguments); the message names it.
    """
    if not isinstance(cql, Mapping):
        raise SpecError(f"filter {shown(cql)} is not CQL2-JSON: give a mapping such as "
                        "{'op': '<', 'args': [{'property': 'eo:cloud_cover'}, 20]} "
                        "(cql2.Expr(text).to_json() turns CQL2 text into one)")
    import cql2

    try:
        cql2.Expr(dict(cql)).to_sql()
    except Exception as err:  # cql2 raises plain Exceptions (and ValueErrors)
        raise SpecError(f"filter {shown(dict(cql))} is not CQL2-JSON that cql2 can read: {err}") from err
    return dict(cql)

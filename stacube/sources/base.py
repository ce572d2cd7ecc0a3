"""What every source kind provides: the ``Source`` protocol (a value stored in the cube's spec) and the
``Backend`` protocol (pystac Items and an odc-geo GeoBox in, arrays in the cube's dtypes and
conventions out).

Protocols and shared checks only: each kind's folder implements them, and its source value names
its own catalog sync and backend, so nothing outside a kind's folder asks which kind it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import pystac

from ..cql import read_filter
from ..errors import SpecError
from ..grid import PatchIndex
from ..timeaxis import duration_problem

if TYPE_CHECKING:
    from ..catalog import LocalCatalog, Window
    from ..variables import Variable


class PatchData(dict[str, np.ndarray]):
    """Variable name -> 2-D array on the patch GeoBox, in the cube's dtype, nodata and convention.

    Made as a dict is; ``clipped`` and ``judged`` start empty. Both go into the commit metadata."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clipped: dict[str, int] = {}
        """Per variable, how many pixels' converted values lay outside what the dtype holds and were
        clipped into it (variables with none are left out)."""
        self.judged: dict[str, str] = {}
        """Per Item id, how its pixels decided a convention its metadata left open, and why."""


class Backend(Protocol):
    """Reads patches for one source kind; nothing source-specific crosses this boundary.

    Made by ``Source.backend(variables)``; pickled to other processes (Dask workers) with its run's task."""

    def check_items(self, items: list[pystac.Item]) -> None:
        """Refuse, before anything is read, an Item a read could not use, so that bad input fails the
        run at once rather than after its downloads (``run.start_run`` calls it for every planned Item).

        Parameters
        ----------
        items : list[pystac.Item]
            The Items of every patch of the run.

        Raises
        ------
        ItemError
            If an Item lacks what a read needs (an asset or band for a variable, its projection), the
            message naming the Item and the asset.
        RadiometryError
            If an Item's numbers cannot be brought into a variable's convention (``stacube.radiometry``).
        """

    def read(self, patch: PatchIndex) -> PatchData:
        """The patch's variables mosaicked from ``patch.items`` onto ``patch.geobox``, first valid pixel
        wins in the Items' (datetime, id) order; pixels no Item covers hold the variable's nodata.

        A source's failure is raised as the SourceError it is, so that a runner knows whether to ask
        again; an error that is no source's (a bug, memory) is raised as it is.

        Parameters
        ----------
        patch : PatchIndex
            The patch, with its Items attached (``patch.items``, checked by ``check_items``).

        Returns
        -------
        PatchData
            One array of ``patch.geobox``'s shape per variable, in its dtype, nodata and convention.

        Raises
        ------
        TransientSourceError
            If the source failed in a way asking again may fix (a 429 or 5xx, a dropped or stalled
            connection, a truncated answer); a runner retries the patch.
        PermanentSourceError
            If the source refused for good (another 4xx, a missing file).
        AssetReadError
            If one asset could not be read: names its URL, ``permanent`` says whether asking again may help.
        RadiometryError
            If an Item's numbers cannot be brought into a variable's convention.
        """


class Source(Protocol):
    """A cube's source: stored in its spec as ``to_json()``, found again by ``kind`` (``stacube.sources``).

    Planning searches the local catalog the source's ``sync`` fills, with its ``filter``, ``lag`` and
    ``duplicates`` rule; its ``backend`` reads the Items found, bringing each Item's numbers into the
    cube's convention by its ``radiometry`` policy."""

    kind: ClassVar[str]
    """The source kind's name in a stored spec: "stac" or "earthengine"."""
    api_url: str
    """Where the source is served; with ``collection`` it names the source's local catalog."""
    collection: str
    """The collection whose Items (or images) the cube holds."""
    publication_lag: str
    """How long after a date the source may still publish Items for it (a pandas Timedelta string)."""
    radiometry: str
    """How each Item's numbers become physical values (a ``stacube.radiometry`` policy)."""
    duplicates: str
    """Which of several Items of one acquisition are read (a ``stacube.duplicates`` rule)."""
    filter: Mapping[str, Any] | None
    """CQL2-JSON applied when searching the local catalog (None: every Item)."""

    @property
    def assets(self) -> Mapping[str, str]:
        """Cube variable -> the Item asset key that holds it (the spec's variables, each once)."""

    @property
    def lag(self) -> pd.Timedelta:
        """``publication_lag`` as a Timedelta: a synced window that ended less than this before its
        sync is synced again, and a recent patch without data is not recorded as filled."""

    @property
    def label(self) -> str:
        """The source as a run's commit metadata names it: ``kind:api_url#collection``."""

    def host_of(self, href: str) -> str:
        """The host a read of an asset goes to (what per-host request limits count).

        Parameters
        ----------
        href : str
            The asset's URL, as the Item holds it.

        Returns
        -------
        str
            The host name; ``"local"`` for a URL without one (a local file).
        """

    def sync(self, catalog: LocalCatalog, window: Window) -> int:
        """Bring a window of the source into the local catalog unless earlier syncs cover it, so that
        planning, which only ever asks the local catalog, finds its Items (``LocalCatalog.sync``).

        Parameters
        ----------
        catalog : LocalCatalog
            The source's local catalog (``Cube.catalog``).
        window : Window
            The lon/lat bbox and time range to bring in.

        Returns
        -------
        int
            How many Items were new to the catalog (0 when the window was covered already).

        Raises
        ------
        CatalogError
            If the source cannot be searched or listed (its ``__cause__`` says whether asking again may
            help), or the catalog's windows file cannot be read.
        ItemError
            If the source returned something that is not a STAC Item the catalog can hold; nothing of
            that window is added.
        StorageError
            If the catalog folder cannot be written (no space, read-only, permission denied).
        """

    def backend(self, variables: Mapping[str, Variable]) -> Backend:
        """What reads this source's Items into ``variables`` (imported only when a cube first reads).

        Parameters
        ----------
        variables : Mapping[str, Variable]
            The cube's variables (``CubeSpec.variables``): dtype, nodata and convention to read into.

        Returns
        -------
        Backend
            The kind's backend for this source.
        """

    def to_json(self) -> dict[str, Any]:
        """The source as the cube's stored spec keeps it (``kind`` included); ``from_json`` of the
        kind's class, or ``stacube.sources.source_from_json``, reads it back.

        Returns
        -------
        dict[str, Any]
            JSON-ready: ``kind`` and every field that defines the source.
        """


def check_lag(publication_lag: str) -> None:
    """Refuse, when the spec is made, a ``publication_lag`` that is no duration of 0 or more.

    Parameters
    ----------
    publication_lag : str
        A pandas Timedelta string (``"3D"``, ``"12h"``).

    Raises
    ------
    SpecError
        If ``publication_lag`` is no duration (``timeaxis.duration_problem``): a bare number (nanoseconds to
        pandas), ISO 8601 months or years, what ``pd.Timedelta`` cannot read or reads as no time (None,
        ``"NaT"``), or a negative one.
    """
    _lag, problem = duration_problem(publication_lag)
    if problem == "is negative":
        raise SpecError(f"publication_lag {publication_lag!r} is negative: a source publishes after a date, not before")
    if problem is not None:  # "3" is 3 ns to pandas: yesterday's patches would be recorded as settled
        raise SpecError(f"publication_lag {publication_lag!r} {problem}: give a duration such as '3D' ('0D': none)")


def check_filter(cql: Any) -> None:
    """Refuse, when the spec is made, a ``filter`` cql2 cannot read, so that a search never meets it.

    The local catalog's search applies the same rule (``stacube.cql.read_filter``).

    Parameters
    ----------
    cql : Any
        CQL2-JSON (a mapping), or None (or an empty mapping) for none.

    Raises
    ------
    SpecError
        If ``cql`` is not a mapping (CQL2 text, say), or cql2 cannot read it or turn it into a query
        (an unknown form, an operator given the wrong number of arguments); the message names it.
    """
    if cql is None or (isinstance(cql, Mapping) and not cql):
        return
    read_filter(cql)

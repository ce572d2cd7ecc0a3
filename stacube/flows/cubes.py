"""The cube a flow run works on: opened, or created on a deployment's first run from the spec it names.

A deployment names its cube's spec in the flows' ``spec`` parameter, in one of three forms:

- a ready-made dataset and its arguments: ``{"dataset": "arcticdem", "resolution": 32}``; the keys
  are the keyword arguments of ``stacube.datasets.arcticdem_spec`` (``sentinel2``:
  ``sentinel2_l2a_spec``, ``alphaearth``: ``alphaearth_spec``, ``tctrend``: ``tctrend_spec``),
  JSON lists standing for tuples (``"bbox": [11.0, 47.0, 11.2, 47.1]``, ``"chunks": [1024, 1024]``);
- the path of a spec file, as ``stacube spec ... --out`` or ``CubeSpec.save`` writes it (relative to
  the run's working folder: ``$STACUBE_PROJECT_DIR`` in ``deploy/prefect.yaml``);
- a whole spec, as ``CubeSpec.to_json()`` makes it.

Where no cube is, the run creates it (of several first runs at once, one creates it and the others
open it: ``stacube.store.create_repository``). Where one is, it is used only if it is the cube the
spec describes; otherwise the run fails before anything is read, naming both and what differs. A
spec whose time axis reaches further than the cube's (Sentinel-2 "until today") grows the cube's.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from ..cube import Cube
from ..errors import CubeExistsError, CubeNotFoundError, SpecError
from ..spec import CubeSpec
from ..timeaxis import TOI, select_steps

READY_MADE = {"arcticdem": "arcticdem_spec", "sentinel2": "sentinel2_l2a_spec", "alphaearth": "alphaearth_spec",
              "tctrend": "tctrend_spec"}
SPEC_HELP = ('the flow\'s spec parameter: a ready-made dataset ({"dataset": "arcticdem", "resolution": 32}), '
             "a spec file (stacube spec arcticdem --resolution 32 --out dem-spec.json) or a whole spec")
SHOWN = 8  # differences named in an error; the rest are counted

log = logging.getLogger(__name__)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def spec_from_parameter(spec: CubeSpec | str | os.PathLike | Mapping[str, Any] | None
                        ) -> tuple[CubeSpec, str] | None:
    """The CubeSpec a ``spec`` flow parameter names, and how to name where it came from in messages;
    None for None. Anything malformed is a SpecError naming the parameter's value.

    Parameters
    ----------
    spec : CubeSpec, str, os.PathLike, Mapping[str, Any] or None
        A CubeSpec, a spec file's path (relative to the working folder), a ready-made dataset with
        its arguments (a ``dataset`` key), or a whole spec as ``CubeSpec.to_json()`` makes it.

    Returns
    -------
    tuple[CubeSpec, str] or None
        The spec and where it came from (``spec file 'dem.json'``); None when ``spec`` is None.

    Raises
    ------
    SpecError
        If the file does not exist, cannot be read or holds no valid spec; a ready-made dataset's name
        is given as a path; the dataset is unknown, its arguments are not its function's, or the
        function refuses them; the mapping is no valid spec; or ``spec`` is of another type.
    """
    if spec is None:
        return None
    if isinstance(spec, CubeSpec):
        return spec, f"the spec {spec.name!r}"
    if isinstance(spec, str | os.PathLike):
        path = os.fspath(spec)
        if path in READY_MADE and not os.path.exists(path):
            raise SpecError(f"spec {path!r}: no such file; for the ready-made dataset write "
                            f'{{"dataset": "{path}", ...}} with its arguments')
        try:
            return CubeSpec.load(path), f"spec file {path!r}"
        except SpecError as err:
            if os.path.isabs(path):
                raise
            raise SpecError(f"{err} (relative to the run's working folder {os.getcwd()!r})") from err
    if not isinstance(spec, Mapping):
        raise SpecError(f"spec must be {SPEC_HELP}; got {type(spec).__name__} {spec!r}")
    if "dataset" not in spec:
        try:
            return CubeSpec.from_json(spec), "the spec given as JSON"
        except SpecError as err:
            raise SpecError(f"spec {_short(spec)}: {err} (a ready-made dataset is named by a 'dataset' key)") from err
    return _ready_made(spec), f"dataset {_short(dict(spec))}"


def _ready_made(spec: Mapping[str, Any]) -> CubeSpec:
    from .. import datasets

    name = spec["dataset"]
    if name not in READY_MADE:
        raise SpecError(f"spec {_short(dict(spec))}: unknown dataset {name!r}; ready-made datasets are "
                        f"{', '.join(sorted(READY_MADE))}")
    make = getattr(datasets, READY_MADE[name])
    arguments = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "dataset"}
    signature = inspect.signature(make)
    try:
        signature.bind(**arguments)
    except TypeError as err:
        raise SpecError(f"spec {_short(dict(spec))}: {err}; {name} takes {', '.join(signature.parameters)} "
                        f"(the arguments of stacube.datasets.{READY_MADE[name]})") from None
    try:
        return make(**arguments)
    except (SpecError, ValueError, TypeError) as err:
        raise SpecError(f"spec {_short(dict(spec))}: {err}") from err


def open_cube(cube_url: str | os.PathLike, spec: Any = None, catalog_dir: str | os.PathLike | None = None,
              logger: Any = None, toi: TOI | None = None) -> Cube:
    """The cube at ``cube_url``; created from ``spec`` (see ``spec_from_parameter``) if there is none.

    Given a spec, an existing cube must be the cube it describes (``CubeSpec.differences``): else a
    SpecError names both and what differs, and nothing is written. Without one, a missing cube is a
    CubeNotFoundError that says how a deployment creates it.

    Parameters
    ----------
    cube_url : str or os.PathLike
        The cube's location.
    spec : Any, optional
        A ``spec`` flow parameter (``spec_from_parameter``); None: the cube must exist.
    catalog_dir : str or os.PathLike or None, optional
        The folder of the local catalogs; None: ``default_catalog_root()``.
    logger : Any, optional
        Where to log the creation or growth (a flow run's logger); None: this module's.
    toi : TOI or None, optional
        The run's period, checked against the time axis the cube will have before anything is created or
        grown: a TOI outside it fails with the cube as it was.

    Returns
    -------
    Cube
        The cube, opened or created; its time axis grown to the spec's end where the spec reaches further.

    Raises
    ------
    SpecError
        If ``spec`` is malformed or describes another cube than the one there, ``cube_url`` is no cube
        location, or the cube holds a spec stacube refuses.
    CubeNotFoundError
        If no cube is there and no ``spec`` is given.
    CubeExistsError
        If something that is no cube is in the way of creating it.
    StorageError
        If the cube is to be created and the place cannot be written.
    S3AccessError
        If S3 does not answer after its tries.
    CubeChangedError
        If growing the time axis kept meeting other commits.
    TOIError
        If ``toi`` lies outside the time axis the cube will have; nothing is created or grown.
    """
    logger = logger or log
    given = spec_from_parameter(spec)
    url = os.fsdecode(cube_url)
    if given is None:
        try:
            cube = Cube.open(cube_url, catalog_dir)
        except CubeNotFoundError as err:
            raise CubeNotFoundError(f"{err}; or give {SPEC_HELP}, and the first run creates the cube") from None
        if toi is not None:
            select_steps(cube.spec.time, toi)
        return cube
    wanted, origin = given
    try:
        cube = Cube.open(cube_url, catalog_dir)
    except CubeNotFoundError:
        if toi is not None:
            select_steps(wanted.time, toi)  # before the cube is created
        try:
            cube = Cube.create(cube_url, wanted, catalog_dir)
        except CubeExistsError as exists:
            try:  # another run created it meanwhile: it must be the same cube
                cube = Cube.open(cube_url, catalog_dir)
            except CubeNotFoundError:
                raise exists from None  # something else is in the way (a folder of other files)
        else:
            logger.info("created cube %r at %s from %s", wanted.name, url, origin)
            return cube
    differences = cube.spec.differences(wanted, ("the cube", "the spec"))
    if differences:
        more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
        raise SpecError(
            f"the cube at {url!r} ({cube.spec.name!r}) is not the cube this run's {origin} describes "
            f"({wanted.name!r}): {'; '.join(differences[:SHOWN])}{more}. Point cube_url at another path, "
            f"or the spec at this cube's own (stacube cube info {url} --json)")
    grows = wanted.time is not None and cube.spec.time is not None and wanted.time[-1] > cube.spec.time[-1]
    if toi is not None:  # against the axis the run will read, before it grows
        select_steps(wanted.time if grows else cube.spec.time, toi)
    if grows:
        cube.extend_time(wanted.time[-1], metadata=flow_run_metadata())
        logger.info("time axis of %s grown to %s, as %s reaches", url, cube.spec.time[-1], origin)
    return cube


def flow_run_metadata() -> dict[str, Any]:
    """The flow run a commit belongs to (id, name, flow), for its metadata; empty outside a flow run."""
    from prefect import runtime
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return {}
    return {"flow_run_id": str(runtime.flow_run.id), "flow_run_name": runtime.flow_run.name,
            "flow": runtime.flow_run.flow_name}

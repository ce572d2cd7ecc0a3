"""Runners execute a run's per-patch tasks. The local runner uses threads (no Prefect).

A runner calls ``task(patch)`` for every patch with bounded concurrency, retrying a failing patch
with exponential backoff; each attempt calls the task afresh, so each attempt writes into a fresh
fork. If a patch still fails, remaining work is cancelled and a PatchReadError names the patch
and the URL; or, with ``skip_failed``, the patch comes back as a PatchFailure and the others go on
(a pipeline where one corrupt granule must not hold back the rest).

Runners by name: ``runner_named("local")`` is the thread runner here; any other name is looked up in
the ``stacube.runners`` entry-point group, where an installed package declares a factory. stacube
declares its own Prefect runner there (``prefect = "stacube.flows.download:prefect_runner"`` in
pyproject.toml), as xarray declares its own dask chunk manager: the core finds it by name without
importing ``stacube.flows``, and a third party's runner is found the same way.
"""

from __future__ import annotations

import logging
import numbers
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import PatchReadError, RunCancelled, SpecError, is_permanent, storage_failure
from .grid import PatchIndex, source_tile_name
from .redaction import redact, redact_url

log = logging.getLogger(__name__)
R = TypeVar("R")
__all__ = ["RUNNER_ENTRY_POINTS", "HostingRunner", "LocalRunner", "PatchFailure", "RunCancelled", "Runner",
           "describe_failure", "failure_of", "is_permanent", "runner_named"]
RUNNER_ENTRY_POINTS = "stacube.runners"


def patch_urls(patch: PatchIndex) -> list[str]:
    """Every asset URL of the patch's Items, each once, sorted."""
    return sorted({asset.href for item in patch.items for asset in item.assets.values()})


def describe_failure(patch: PatchIndex, error: BaseException, attempts: int) -> PatchReadError:
    """The error a run fails with when a patch failed for good, naming what a user checks: the patch, its
    Items and the files (those the error names, else the patch's first five), with any credential in a
    URL redacted.

    Parameters
    ----------
    patch : PatchIndex
        The patch, with its Items.
    error : BaseException
        Its last attempt's error (to be the ``__cause__``).
    attempts : int
        How many attempts were made.

    Returns
    -------
    PatchReadError
        The error, to be raised ``from error``; its ``urls`` are the files named (else every URL), redacted.
    """
    urls = patch_urls(patch)
    named = [u for u in urls if u in str(error) or u.rsplit("/", 1)[-1] in str(error)]
    shown = named or urls[:5]
    more = "" if named or len(urls) <= 5 else f" (and {len(urls) - 5} more)"
    items = ", ".join(item.id for item in patch.items) or "none"
    return PatchReadError(
        redact(f"patch {patch.id} failed after {attempts} attempt(s): {type(error).__name__}: {error}; "
               f"items: {items}; url: {', '.join(shown)}{more}"),
        patch.id,
        [redact_url(u) for u in named or urls],
    )


@dataclass
class PatchFailure:
    """A patch that failed for good in a run that skips failures: neither written nor recorded as filled,
    so the next run tries it again."""

    patch_id: str
    """The patch's id."""
    message: str
    """Why it failed: the text of the PatchReadError the run would otherwise have raised."""
    urls: list[str]
    """The files the error names (else every file of the patch), redacted."""
    items: list[str]
    """The ids of its Items."""
    tiles: list[str]
    """The source tiles of its Items (MGRS for Sentinel-2), each once."""


def failure_of(patch: PatchIndex, error: BaseException, attempts: int) -> PatchFailure:
    """A patch that failed for good, as a run that skips failures keeps it (and logs it as a warning).

    Parameters
    ----------
    patch : PatchIndex
        The patch, with its Items.
    error : BaseException
        Its last attempt's error.
    attempts : int
        How many attempts were made.

    Returns
    -------
    PatchFailure
        What ``describe_failure`` says of it, with its Items and their source tiles.
    """
    described = describe_failure(patch, error, attempts)
    log.warning("%s", described)
    return PatchFailure(patch.id, str(described), described.urls, [item.id for item in patch.items],
                        sorted({source_tile_name(item.properties, item.id) for item in patch.items}))


class Runner(Protocol):
    """Executes a run's per-patch tasks; ``name`` goes into the commit metadata."""

    name: str
    """The runner's name in the commit metadata and ``RunReport.runner`` (``"local"``, ``"prefect"``)."""

    def imap(self, task: Callable[[PatchIndex], R], patches: Sequence[PatchIndex]) -> Iterator[R]:
        """``task`` for every patch, each result as it lands (in the order patches finish); raises
        PatchReadError on a failed patch (with ``skip_failed``, that patch's result is a PatchFailure instead).

        A failing patch is tried again, afresh, unless its error is permanent (``is_permanent``);
        once one fails for good the others stop early and the run is lost. Leaving the iterator early
        (``close()``, or an error in the caller's loop) stops the patches not started. The run reads
        each result where it lands, so a patch's values are handed over (a cold load pastes them into
        its Tile) without a callback into the workers. (A runner written before ``imap``, with only a
        ``map`` that returns every result at the end, still runs: its results land all at once.)

        Parameters
        ----------
        task : Callable[[PatchIndex], R]
            Reads and writes one patch (``run.PatchTask``); each attempt calls it anew.
        patches : Sequence[PatchIndex]
            The patches, with their Items.

        Yields
        ------
        R
            ``task``'s result per patch, as each finishes (a PatchFailure for a patch skipped).

        Raises
        ------
        PatchReadError
            If a patch failed for good (after its retries, or at once for a permanent error), naming
            the patch, its Items and URLs; its ``__cause__`` is the last error. With ``skip_failed``,
            only when storage refuses the writes (a full disk fails every patch alike).
        """
        ...


class HostingRunner(Runner, Protocol):
    """A runner that holds the whole run, not only its patches: the Prefect runner runs it inside a flow
    run, so that the run's commit, logs and artifacts belong to that flow run.

    ``host(execute, cube, about)`` calls ``execute(self, metadata)`` where it runs the run (``metadata``:
    what the commit should say of it, e.g. the flow run's id) and returns its RunReport; ``cube`` is the
    ``stacube.Cube`` the run writes to and ``about`` says what was planned in JSON-ready values
    (``patches``: the ids, ``roi``: lon/lat GeoJSON or None, ``message``). ``Cube.run`` calls ``host``
    when a runner has it, and ``execute(runner, {})`` otherwise."""

    def host(self, execute: Callable[[Runner, dict[str, Any]], Any], cube: Any, about: dict[str, Any]) -> Any:
        """Run ``execute`` where the runner holds the whole run (see the class docstring).

        Parameters
        ----------
        execute : Callable[[Runner, dict[str, Any]], Any]
            Runs the run with the runner it is given and what the commit should say of the host.
        cube : stacube.Cube
            The cube the run writes to.
        about : dict[str, Any]
            What was planned: ``patches`` (ids), ``roi`` (lon/lat GeoJSON or None), ``message``.

        Returns
        -------
        RunReport
            What ``execute`` returned.
        """
        ...


def runner_named(name: str, *, concurrency: int | None = None, progress: bool | None = None,
                 skip_failed: bool = False) -> Runner:
    """The runner ``name`` stands for, with these settings (None: the runner's default).

    ``"local"``: threads in this process. Any other name: the factory an installed package declares
    under the ``stacube.runners`` entry-point group, called with the same keywords (``"prefect"``, from
    ``stacube[prefect]``). Raises SpecError (a ValueError) for a name nothing declares, or whose package
    is missing.

    Parameters
    ----------
    name : str
        ``"local"``, or a name declared in the ``stacube.runners`` entry-point group.
    concurrency : int or None, optional
        Patches in flight at once; None: the runner's default (8 for ``"local"``).
    progress : bool or None, optional
        Whether to show progress; None: the runner's default (a bar on a terminal, for ``"local"``).
    skip_failed : bool, optional
        Whether a patch failing for good comes back as a PatchFailure instead of failing the run.

    Returns
    -------
    Runner
        A new runner.

    Raises
    ------
    SpecError
        If no installed package declares ``name``, or its factory cannot be imported (for
        ``"prefect"``: ``stacube[prefect]`` is not installed). It is a ValueError, as this error was
        before.
    """
    if name == "local":
        return LocalRunner(concurrency=concurrency or 8, progress=progress, skip_failed=skip_failed)
    from importlib.metadata import entry_points

    declared = entry_points(group=RUNNER_ENTRY_POINTS)
    found = [point for point in declared if point.name == name]
    if not found:
        names = sorted({"local", *(point.name for point in declared)})
        raise SpecError(f"unknown runner {name!r}; use one of {names} or a Runner instance")
    try:
        factory = found[0].load()
    except ImportError as err:
        raise SpecError(f"runner {name!r} ({found[0].value}) cannot be imported: {err} "
                        f"(for 'prefect': pip install 'stacube[prefect]')") from err
    return factory(concurrency=concurrency, progress=progress, skip_failed=skip_failed)


def _first_failure(failed: list[Future], pending: set[Future], stop: threading.Event,
                   order: dict[Future, int]) -> BaseException:
    """The error a run fails with once ``failed`` came back with errors: the first patch's own failure
    (a PatchReadError, or a bug), never a RunCancelled of a patch stopped because of it.

    When only cancellations came back, the failure that caused them is still on its way (the patch set
    ``stop`` and is describing its error): patches not started are dropped, the running ones are waited
    for, and the first real failure among them is raised."""
    real = [f for f in failed if not isinstance(f.exception(), RunCancelled)]
    if not real:
        stop.set()
        for future in pending:
            future.cancel()
        wait(pending)
        real = [f for f in pending if not f.cancelled() and f.exception() is not None
                and not isinstance(f.exception(), RunCancelled)]
    return min(real or failed, key=order.__getitem__).exception()


def check_count(name: str, value: object, least: int) -> int:
    """A runner's count (``concurrency``, ``retries``, ``patches_per_task``) as a whole number of at least
    ``least``, or a SpecError naming it: a negative one gave runs that read nothing (no batch for any patch).

    Parameters
    ----------
    name : str
        The count's name, for the message.
    value : object
        What was given.
    least : int
        The smallest allowed.

    Returns
    -------
    int
        ``value``.

    Raises
    ------
    SpecError
        If ``value`` is a bool, not a whole number, or below ``least``.
    """
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or value < least:
        raise SpecError(f"{name} {value!r} must be a whole number, {least} or more")
    return int(value)


@dataclass
class LocalRunner:
    """Threads in this process; ``concurrency`` patches in flight at once."""

    concurrency: int = 8
    """Patches in flight at once, each in a thread of its own (at least 1)."""
    retries: int = 3
    """How many times a failing patch is tried again (``retries + 1`` attempts in all); a permanent
    error (``is_permanent``) is not tried again."""
    backoff: float = 0.5
    """Seconds before the first retry; doubles each time, with jitter (0.5 to 1.5 times)."""
    progress: bool | None = None
    """Whether to show a progress bar on stderr: patches, MB written (the values' uncompressed size:
    what is stored is smaller, by the codecs' compression), rate, ETA. None: when stderr is a terminal."""
    skip_failed: bool = False
    """A patch failing for good comes back as a PatchFailure; the run goes on. Storage refusing writes
    (a full disk, a read-only cube) still fails the run."""
    name: str = "local"
    """The runner's name in the commit metadata (``Runner.name``)."""

    def __post_init__(self) -> None:
        """Refuse, naming it, a count a run could not keep (SpecError)."""
        check_count("concurrency", self.concurrency, 1)
        check_count("retries", self.retries, 0)

    def _attempts(self, task: Callable[[PatchIndex], R], patch: PatchIndex, stop: threading.Event) -> R:
        for attempt in range(self.retries + 1):
            if stop.is_set():
                raise RunCancelled(patch.id)
            try:
                return task(patch)
            except Exception as error:
                # What a retry cannot fix (stacube.errors.is_permanent) is not retried. Storage refusing
                # writes (a full disk, a read-only cube) fails every patch alike: it ends the run even
                # when failures are skipped.
                final = attempt == self.retries or is_permanent(error)
                if final and self.skip_failed and storage_failure(error) is None:
                    return failure_of(patch, error, attempt + 1)  # type: ignore[return-value]
                if final or stop.is_set():
                    stop.set()  # the run is lost: let the other patches stop early
                    raise describe_failure(patch, error, attempt + 1) from error
                delay = self.backoff * 2**attempt * (0.5 + random.random())
                log.warning("patch %s attempt %d failed (%s); retrying in %.1f s", patch.id, attempt + 1, error, delay)
                stop.wait(delay)
        raise AssertionError("unreachable")

    def imap(self, task: Callable[[PatchIndex], R], patches: Sequence[PatchIndex]) -> Iterator[R]:
        """``task`` for every patch, in ``concurrency`` threads, each result as it lands.

        Parameters, yields and errors as ``Runner.imap``. At most ``concurrency`` patches are running or
        finished and not yet taken: the next patch starts when a result is taken, so a slow caller holds
        back the reads and the results waiting for it stay bounded (a cold load's patch values). Once a
        patch fails, the run raises a patch's own failure, never the RunCancelled of a patch that
        stopped because of it: patches not started are dropped, and those running are let end first,
        so a failure still on its way wins over a cancellation that came back sooner. Of several
        failures that came back together, the first patch's is raised."""
        for _, result in self._completed(task, patches):
            yield result

    def map(self, task: Callable[[PatchIndex], R], patches: Sequence[PatchIndex]) -> list[R]:
        """``task`` for every patch, as ``imap``, the results in the order of ``patches``.

        Parameters
        ----------
        task : Callable[[PatchIndex], R]
            Reads and writes one patch; each attempt calls it anew.
        patches : Sequence[PatchIndex]
            The patches, with their Items.

        Returns
        -------
        list[R]
            ``task``'s result per patch, in the order of ``patches`` (a PatchFailure for a patch skipped).

        Raises
        ------
        PatchReadError
            As ``imap``.
        """
        results = dict(self._completed(task, patches))
        return [results[i] for i in range(len(patches))]

    def _completed(self, task: Callable[[PatchIndex], R], patches: Sequence[PatchIndex]) -> Iterator[tuple[int, R]]:
        """(position in ``patches``, result) as patches finish, at most ``concurrency`` not yet taken."""
        if not patches:
            return
        from tqdm.auto import tqdm

        disable = None if self.progress is None else not self.progress  # None: tqdm shows it on a terminal only
        bar = tqdm(total=len(patches), unit="patch", desc="download", disable=disable, leave=True,
                   dynamic_ncols=True)
        written = 0
        waiting = iter(enumerate(patches))
        order: dict[Future, int] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="stacube-patch") as pool:
            stop = threading.Event()
            pending: set[Future] = set()

            def start_next() -> None:
                following = next(waiting, None)
                if following is not None:
                    future = pool.submit(self._attempts, task, following[1], stop)
                    order[future] = following[0]
                    pending.add(future)

            for _ in range(max(1, self.concurrency)):
                start_next()
            try:
                while pending:
                    done, still = wait(pending, return_when=FIRST_COMPLETED)
                    pending.intersection_update(still)
                    failed = [f for f in done if f.exception() is not None]
                    if failed:
                        raise _first_failure(failed, pending, stop, order)
                    for future in sorted(done, key=order.__getitem__):
                        result = future.result()
                        written += getattr(result, "nbytes", 0)
                        bar.set_postfix_str(f"{written / 1e6:.1f} MB uncompressed", refresh=False)
                        bar.update(1)
                        yield order[future], result
                        start_next()  # once the caller took the result: what waits for it stays bounded
            except BaseException:  # a failure, the caller's error, or the caller leaving (GeneratorExit)
                stop.set()
                for future in pending:
                    future.cancel()
                raise
            finally:
                bar.close()

"""Progress of a download where a Prefect run shows it (it has no terminal): the log and a progress artifact."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from ..grid import PatchIndex


class RunProgress:
    """Patches done of the total, MB written (uncompressed), rate and ETA in the flow run's log, and a
    progress artifact (the UI's progress bar), every ``every`` seconds and at the end.

    Parameters
    ----------
    total : int
        The run's patches.
    every : float, optional
        Seconds between log lines and artifact updates.
    """

    def __init__(self, total: int, every: float = 10.0):
        self.total, self.every, self.count, self.nbytes = total, every, 0, 0
        self.started = self.logged = time.monotonic()
        self.artifact = create_progress_artifact(0.0, key="stacube-download-progress",
                                                 description=f"stacube download: {total} patches")

    def done(self, batch: Sequence[PatchIndex], results: Sequence[Any]) -> None:
        """A batch finished, with its results (none if it failed: it counts as done, its error is raised elsewhere).

        Parameters
        ----------
        batch : Sequence[PatchIndex]
            The batch's patches.
        results : Sequence[Any]
            Their results (``nbytes`` is summed where they have it).
        """
        self.count += len(batch)
        self.nbytes += sum(getattr(r, "nbytes", 0) for r in results)
        now = time.monotonic()
        if now - self.logged < self.every and self.count < self.total:
            return
        self.logged = now
        rate = self.count / max(now - self.started, 1e-9)
        eta = (self.total - self.count) / rate if rate else float("inf")
        get_run_logger().info("download: %d/%d patches, %.1f MB uncompressed, %.1f patches/s, ETA %.0f s", self.count,
                              self.total, self.nbytes / 1e6, rate, eta)
        update_progress_artifact(self.artifact, 100.0 * self.count / self.total)

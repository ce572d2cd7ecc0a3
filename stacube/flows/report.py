"""A download's report in its flow run: a log line, an error line per failed patch, and a markdown artifact."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from ..run import RunReport

ARTIFACT_ROWS = 500  # a flow run over thousands of patches keeps a readable artifact; the commit lists them all


def publish(report: RunReport, cube_url: str) -> None:
    """``report`` in the current flow run's log, and as the ``stacube-download`` artifact when the run
    committed or lost patches.

    Parameters
    ----------
    report : RunReport
        The run's report.
    cube_url : str
        The cube, as the artifact names it.
    """
    logger = get_run_logger()
    logger.info("%s", report)
    for failure in report.patches_failed.values():
        logger.error("%s", failure.message)
    if report.snapshot_id or report.patches_failed:
        create_markdown_artifact(report_markdown(report, cube_url), key="stacube-download",
                                 description=f"stacube download into {cube_url}")


def report_markdown(report: RunReport, cube_url: str) -> str:
    """The artifact: the snapshot, totals, and a row per patch (written, without data, pending, failed),
    at most ``ARTIFACT_ROWS`` of them.

    Parameters
    ----------
    report : RunReport
        The run's report.
    cube_url : str
        The cube, as the heading names it.

    Returns
    -------
    str
        Markdown.
    """
    def row(pid: str, outcome: str) -> str:
        nbytes, seconds = report.patch_figures.get(pid, (0, 0.0))
        return f"| {pid} | {outcome} | {nbytes / 1e6:.2f} | {seconds:.2f} |"

    provisional = set(report.patches_provisional)
    rows = [row(pid, "written, provisional (recent: read again by the next run)" if pid in provisional else "written")
            for pid in report.patches_written]
    rows += [row(pid, "no source data") for pid in report.patches_empty]
    rows += [f"| {pid} | pending (recent, no data yet) | 0.00 | 0.00 |" for pid in report.patches_pending]
    rows += [f"| {pid} | **FAILED**, left for the next run: {failure.message} | 0.00 | 0.00 |"
             for pid, failure in report.patches_failed.items()]
    shown = "\n".join(rows[:ARTIFACT_ROWS])
    more = f"\n\n{len(rows) - ARTIFACT_ROWS} more patches are listed in the snapshot's metadata." \
        if len(rows) > ARTIFACT_ROWS else ""
    return (
        f"## stacube download into `{cube_url}`\n\n"
        f"snapshot **{report.snapshot_id}**, {len(report.patches_written)} patches written, "
        f"{report.bytes_written / 1e6:.1f} MB (uncompressed) in {report.seconds:.1f} s, "
        f"{report.patches_already_filled} already filled\n\n"
        f"| patch | outcome | MB uncompressed | seconds |\n| --- | --- | ---: | ---: |\n{shown}{more}\n"
    )

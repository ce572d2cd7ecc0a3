"""Flow-run heartbeats off for an ad hoc run in the caller's own process.

Prefect joins its flow-run heartbeat thread, which sleeps in one-second steps, when a flow ends, so
every ad hoc run would wait for it; what that costs is measured by ``bench/orchestration.py`` and
reported in the README's Prefect section. Heartbeats let an automation mark a run whose process
died as crashed: that matters for deployments, whose worker runs keep them, not for a run in the
caller's own process, which sees the failure itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def without_idle_heartbeats() -> Iterator[None]:
    """Flow-run heartbeats off inside, unless the user set ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``.

    The settings are copied, not rebuilt: ``temporary_settings`` would re-read every settings source
    (environment, profiles, toml files) for each run.
    """
    from prefect.context import SettingsContext, get_settings_context

    context = get_settings_context()
    settings = context.settings
    if "heartbeat_frequency" in settings.flows.model_fields_set:
        yield
        return
    quiet = settings.model_copy(update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    with SettingsContext(profile=context.profile, settings=quiet):
        yield

"""Credentials a flow run takes from Prefect blocks, never from its parameters or logs."""

from __future__ import annotations

import json
import os
import tempfile


def use_earthengine_secret(block_name: str) -> None:
    """Make the Prefect Secret block ``block_name`` this process's Earth Engine credential.

    The block holds an OAuth access token or a service-account key (JSON); a key is written to a
    file only this user can read. The value goes to the environment ``stacube.sources.earthengine.client`` reads,
    never to a log line.

    Parameters
    ----------
    block_name : str
        The Secret block's name.

    Raises
    ------
    ValueError
        If no Secret block ``block_name`` exists (Prefect's error).
    json.JSONDecodeError
        If the value starts with ``{`` but is not JSON (a ValueError too).
    """
    from prefect.blocks.system import Secret

    value = Secret.load(block_name).get()
    key = value if isinstance(value, dict) else None
    if key is None and isinstance(value, str) and value.lstrip().startswith("{"):
        key = json.loads(value)
    if key is not None:
        fd, path = tempfile.mkstemp(prefix="stacube-ee-key-", suffix=".json")
        with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
            json.dump(key, out)
        os.environ["STACUBE_EE_KEY_FILE"] = path
        os.environ.pop("STACUBE_EE_TOKEN", None)
    else:
        os.environ["STACUBE_EE_TOKEN"] = str(value)

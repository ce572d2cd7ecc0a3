"""Credentials a flow run takes from Prefect blocks, never from its parameters or logs."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator

from ..errors import SpecError


@contextlib.contextmanager
def use_earthengine_secret(block_name: str) -> Iterator[None]:
    """Make the Prefect Secret block ``block_name`` this process's Earth Engine credential while the block
    runs (``with use_earthengine_secret(name): ...``).

    The block holds an OAuth access token or a service-account key (JSON); a key is written to a
    file only this user can read, and deleted when the block ends, where the environment
    ``stacube.sources.earthengine.client`` reads is put back as it was: no copy of the key stays on disk
    after a flow run, however many runs a worker serves. The value never goes to a log line.

    Parameters
    ----------
    block_name : str
        The Secret block's name.

    Raises
    ------
    SpecError
        If there is no Secret block ``block_name`` (Prefect's ValueError is its cause), it cannot be
        loaded as a Secret, or its value starts with ``{`` but is not JSON; names the block, never the value.
    """
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:
        value = Secret.load(block_name).get()
    except ValueError as err:
        if isinstance(err.__cause__, ObjectNotFound):  # Prefect's "Unable to find block document named ..."
            raise SpecError(f"earthengine_secret {block_name!r}: there is no Prefect Secret block of that name; "
                            "create it (prefect block create secret) or name one that exists") from err
        # another ValueError (pydantic's, of a block whose data is no Secret) may quote the value: not shown
        raise SpecError(f"earthengine_secret {block_name!r}: the Prefect block of that name cannot be loaded as a "
                        f"Secret ({type(err).__name__})") from None
    key = value if isinstance(value, dict) else None
    if key is None and isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            key = json.loads(value)
        except json.JSONDecodeError as err:  # its ``doc`` is the secret: never chained, never shown
            raise SpecError(f"earthengine_secret {block_name!r}: the Secret block's value starts with '{{' but is "
                            f"no JSON service-account key (line {err.lineno}, column {err.colno})") from None
    before = {name: os.environ.get(name) for name in ("STACUBE_EE_KEY_FILE", "STACUBE_EE_TOKEN")}
    path = None
    try:
        if key is not None:
            fd, path = tempfile.mkstemp(prefix="stacube-ee-key-", suffix=".json")
            with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
                json.dump(key, out)
            os.environ["STACUBE_EE_KEY_FILE"] = path
            os.environ.pop("STACUBE_EE_TOKEN", None)
        else:
            os.environ["STACUBE_EE_TOKEN"] = str(value)
        yield
    finally:
        for name, was in before.items():
            if was is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = was
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

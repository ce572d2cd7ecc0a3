"""The Earth Engine client, initialised once per process for a source, with credentials from outside.

Credentials come, in this order, from ``STACUBE_EE_TOKEN`` (an OAuth access token), from a
service-account key file named by ``STACUBE_EE_KEY_FILE`` or ``GOOGLE_APPLICATION_CREDENTIALS``,
or from the credential ``earthengine authenticate`` stored for the user. They are never written to
logs, errors, commit metadata or the catalog: errors name the variable or the file, not its content.
Prefect flows may fill these variables from a Secret block before the first request.

Every request has a deadline (``STACUBE_EE_DEADLINE_S``, default 300 s): a service that stops
answering fails the patch, to be retried, instead of hanging the run. The client itself retries a
429, a 5xx or a timeout ``STACUBE_EE_MAX_RETRIES`` times (default 5) with random exponential backoff.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

from ...errors import CatalogError

_LOCK = threading.Lock()
_READY: tuple[Any, ...] | None = None  # (api_url, project, credential, deadline, retries) initialised


def _fingerprint() -> str:
    """A value that changes when the credentials do (a refreshed token, another key file), cheap to
    compute on every read: the credentials themselves are built only when it changes."""
    token = os.environ.get("STACUBE_EE_TOKEN")
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()
    for variable in ("STACUBE_EE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS"):
        path = os.environ.get(variable)
        if path:
            try:
                changed = os.stat(path).st_mtime_ns
            except OSError:
                changed = -1
            return f"{variable}:{path}:{changed}"
    return "stored"


def _credentials() -> tuple[Any, str]:
    """The credentials to use and a label naming their origin (never their content)."""
    token = os.environ.get("STACUBE_EE_TOKEN")
    if token:
        import google.oauth2.credentials

        return google.oauth2.credentials.Credentials(token=token), "STACUBE_EE_TOKEN"
    for variable in ("STACUBE_EE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS"):
        path = os.environ.get(variable)
        if not path:
            continue
        import ee

        try:
            email = json.loads(open(path).read())["client_email"]
        except (OSError, ValueError, KeyError) as err:
            raise CatalogError(f"{variable} names {path!r}, which is not a readable service-account key file "
                               f"({type(err).__name__})") from None
        return ee.ServiceAccountCredentials(email, key_file=path), f"{variable}={path}"
    return "persistent", "the stored Earth Engine credential"  # ee reads ~/.config/earthengine/credentials


def initialize(api_url: str, project: str | None) -> None:
    """Initialise ``ee`` for ``api_url`` and ``project`` unless this process already did with these
    credentials. Called before every patch read: the usual path is one comparison, no lock.

    Parameters
    ----------
    api_url : str
        The Earth Engine endpoint (``EarthEngineSource.api_url``).
    project : str or None
        The Google Cloud project (``EarthEngineSource.project``).

    Raises
    ------
    CatalogError
        If the key file a variable names cannot be read as a service-account key,
        ``STACUBE_EE_DEADLINE_S`` or ``STACUBE_EE_MAX_RETRIES`` is not a number or is negative, or
        Earth Engine refuses to start (the message names the credential's origin, never its content).
    """
    global _READY
    wanted = (api_url, project, _fingerprint(), deadline_seconds(), os.environ.get("STACUBE_EE_MAX_RETRIES"))
    if _READY == wanted:
        return
    import ee

    with _LOCK:
        if _READY == wanted:
            return
        credentials, origin = _credentials()
        try:
            ee.Initialize(credentials=credentials, project=project, url=api_url)
            ee.data.setDeadline(1000 * deadline_seconds())
            ee.data.setMaxRetries(_env_number("STACUBE_EE_MAX_RETRIES", 5, int))
        except Exception as err:  # noqa: BLE001 - the client raises many kinds; the message names what was tried
            raise CatalogError(f"cannot start Earth Engine at {api_url} for project {project!r} with {origin}: "
                               f"{type(err).__name__}: {_without_secrets(str(err))}") from None
        _READY = wanted


def _env_number(name: str, default: float, kind: type = float) -> Any:
    value = os.environ.get(name, str(default))
    try:
        number = kind(value)
    except ValueError:
        raise CatalogError(f"{name}={value!r} is not a number") from None
    if number < 0:
        raise CatalogError(f"{name}={value!r} must not be negative")
    return number


def deadline_seconds() -> float:
    """How long one Earth Engine request may take, in seconds: ``STACUBE_EE_DEADLINE_S``, else (or for 0) 300.

    Raises
    ------
    CatalogError
        If ``STACUBE_EE_DEADLINE_S`` is not a number or is negative.
    """
    return _env_number("STACUBE_EE_DEADLINE_S", 300.0) or 300.0


def _without_secrets(text: str) -> str:
    token = os.environ.get("STACUBE_EE_TOKEN")
    return text.replace(token, "***") if token else text

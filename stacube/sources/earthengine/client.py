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

from ...errors import (
    CatalogError,
    PermanentSourceError,
    SpecError,
    TransientSourceError,
    causes,
    is_permanent,
    source_error,
)

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


class _StartFailure(Exception):
    """Why Earth Engine did not start, in words that hold no secret, and what kind of failure it is;
    ``initialize`` raises it as the error its caller expects."""

    def __init__(self, message: str, *, setting: bool = False, transient: bool = False):
        super().__init__(message)
        self.setting = setting  # a STACUBE_EE_* variable is unusable
        self.transient = transient  # Earth Engine did not answer: asking again may help


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
            credentials = ee.ServiceAccountCredentials(email, key_file=path)
        except (OSError, ValueError, KeyError, TypeError) as err:  # no file, no JSON, no key in it
            raise _StartFailure(f"{variable} names {path!r}, which is not a readable service-account key file "
                                f"({type(err).__name__})") from None
        return credentials, f"{variable}={path}"
    return "persistent", "the stored Earth Engine credential"  # ee reads ~/.config/earthengine/credentials


def initialize(api_url: str, project: str | None, *, reading: bool = False) -> None:
    """Initialise ``ee`` for ``api_url`` and ``project`` unless this process already did with these
    credentials. Called before every patch read: the usual path is one comparison, no lock.

    Parameters
    ----------
    api_url : str
        The Earth Engine endpoint (``EarthEngineSource.api_url``).
    project : str or None
        The Google Cloud project (``EarthEngineSource.project``).
    reading : bool, optional
        Whether a patch read asks (``EarthEngineBackend.read``): a failure is then raised as the error
        a runner decides by, not as a CatalogError (see Raises).

    Raises
    ------
    CatalogError
        If the key file a variable names cannot be read as a service-account key,
        ``STACUBE_EE_DEADLINE_S`` or ``STACUBE_EE_MAX_RETRIES`` is not a number or is negative, or
        Earth Engine refuses to start (the message names the credential's origin, never its content).
        With ``reading``, the same failures are raised as these instead:
    SpecError
        With ``reading``: ``STACUBE_EE_DEADLINE_S`` or ``STACUBE_EE_MAX_RETRIES`` is unusable.
    PermanentSourceError
        With ``reading``: the key file cannot be read, or Earth Engine refuses the credential or the
        project (an HTTP 4xx, or its own refusal without one: no stored credential, no project).
        Asking again cannot help, so a runner does not.
    TransientSourceError
        With ``reading``: Earth Engine did not answer (a timeout, a dropped connection, a 429 or 5xx
        after the client's own retries); a runner asks again.
    """
    try:
        _initialize(api_url, project)
    except _StartFailure as failure:
        if not reading:
            raise CatalogError(str(failure)) from None
        if failure.setting:
            raise SpecError(str(failure)) from None
        kind = TransientSourceError if failure.transient else PermanentSourceError
        raise kind(str(failure), api_url) from None


def _initialize(api_url: str, project: str | None) -> None:
    """``initialize``, its failures raised as ``_StartFailure``."""
    global _READY
    deadline = _deadline()
    wanted = (api_url, project, _fingerprint(), deadline, os.environ.get("STACUBE_EE_MAX_RETRIES"))
    if _READY == wanted:
        return
    import ee

    with _LOCK:
        if _READY == wanted:
            return
        credentials, origin = _credentials()
        max_retries = _env_number("STACUBE_EE_MAX_RETRIES", 5, int)
        try:
            ee.Initialize(credentials=credentials, project=project, url=api_url)
            ee.data.setDeadline(1000 * deadline)
            ee.data.setMaxRetries(max_retries)
        except Exception as err:  # noqa: BLE001 - the client raises many kinds; the message names what was tried
            raise _StartFailure(f"cannot start Earth Engine at {api_url} for project {project!r} with {origin}: "
                                f"{type(err).__name__}: {_without_secrets(str(err))}",
                                transient=_unanswered(err)) from None
        _READY = wanted


def _unanswered(error: BaseException) -> bool:
    """Whether Earth Engine did not answer while starting (a timeout, a dropped connection, a 429 or
    5xx) rather than refused. The errors below Earth Engine's own decide (``source_error``): an
    EEException alone (no stored credential, no project) is a refusal asking again does not change."""
    import ee

    for cause in causes(error):
        if isinstance(cause, ee.EEException):
            continue
        failure = source_error(cause)
        if failure is not None:
            return not is_permanent(failure)
    return False


def _env_number(name: str, default: float, kind: type = float) -> Any:
    value = os.environ.get(name, str(default))
    try:
        number = kind(value)
    except ValueError:
        raise _StartFailure(f"{name}={value!r} is not a number", setting=True) from None
    if number < 0:
        raise _StartFailure(f"{name}={value!r} must not be negative", setting=True)
    return number


def _deadline() -> float:
    return _env_number("STACUBE_EE_DEADLINE_S", 300.0) or 300.0


def deadline_seconds() -> float:
    """How long one Earth Engine request may take, in seconds: ``STACUBE_EE_DEADLINE_S``, else (or for 0) 300.

    Raises
    ------
    CatalogError
        If ``STACUBE_EE_DEADLINE_S`` is not a number or is negative.
    """
    try:
        return _deadline()
    except _StartFailure as failure:
        raise CatalogError(str(failure)) from None


def _without_secrets(text: str) -> str:
    token = os.environ.get("STACUBE_EE_TOKEN")
    return text.replace(token, "***") if token else text

"""Keeping signatures and credentials out of everything stacube prints or records.

Whatever stacube prints or records of a URL (errors, logs, commit metadata, reports) goes through
``redact`` first. A leaf: it imports nothing of stacube, so ``errors`` can use it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that carry a secret (a SAS or presigned URL's signature, tokens, keys); the rest of a
# SAS (its start, expiry, permissions) is kept, since it tells when and why a read failed.
SENSITIVE_QUERY = frozenset({"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
                             "x-goog-signature", "x-goog-credential", "token", "access_token", "key", "api_key",
                             "apikey", "subscription-key"})
_URL = re.compile(r"(?:https?|s3|gs|az|ftp)://[^\s'\"<>]+", re.I)


def redact_url(url: str) -> str:
    """``url`` without user info and without signing or credential query parameters (their values
    become ``REDACTED``), so it can be shown and stored."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SENSITIVE_QUERY for k, _ in pairs):
            query = urlencode([(k, "REDACTED" if k.lower() in SENSITIVE_QUERY else v) for k, v in pairs], safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """``text`` with every URL in it redacted (see ``redact_url``)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), str(text))


_SECRET_IN_URL = re.compile(r"[?&](?:" + "|".join(re.escape(k) for k in SENSITIVE_QUERY) + r")=|://[^/\s@]+@", re.I)
_redacting = False


def redact_log_records() -> None:
    """Redact signatures and user info in every log record made in this process, whichever library logs
    it (rasterio names the URLs it opens at DEBUG); installed once, and cheap for records without URLs."""
    global _redacting
    if _redacting:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is left to logging's own handling
            return record
        if _SECRET_IN_URL.search(message):
            record.msg, record.args = redact(message), ()
        return record

    logging.setLogRecordFactory(factory)
    _redacting = True

"""Signed URLs and URLs with credentials are shown and stored without their secrets."""

import pytest

from stacube.signing import redact, redact_url, resolve_signer
from stacube.spec import SpecError


@pytest.mark.parametrize(("url", "expected"), [
    ("https://acct.blob.core.windows.net/c/a.tif?st=2024&se=2025&sp=rl&sv=2021&sig=AbC%2Bd",
     "https://acct.blob.core.windows.net/c/a.tif?st=2024&se=2025&sp=rl&sv=2021&sig=REDACTED"),
    ("https://b.s3.amazonaws.com/k.tif?X-Amz-Credential=AKIA&X-Amz-Signature=ff&X-Amz-Date=1",
     "https://b.s3.amazonaws.com/k.tif?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Date=1"),
    ("http://user:PASS@127.0.0.1:8000/api", "http://REDACTED@127.0.0.1:8000/api"),
    ("http://127.0.0.1/x.tif?token=abc&band=1", "http://127.0.0.1/x.tif?token=REDACTED&band=1"),
    ("http://127.0.0.1/x.tif", "http://127.0.0.1/x.tif"),
])
def test_urls_lose_their_secrets(url, expected):
    assert redact_url(url) == expected


def test_text_with_urls_is_redacted_everywhere():
    text = "HTTP error on 'https://a.blob.core.windows.net/c/x.tif?sig=SECRET': 403; also http://u:PASS@h/y"
    shown = redact(text)
    assert "SECRET" not in shown and "PASS" not in shown and "x.tif" in shown and "403" in shown


def test_a_signer_is_a_function_resolved_when_used():
    assert resolve_signer("os.path:basename")("http://h/a/b.tif") == "b.tif"
    assert resolve_signer(None) is None
    with pytest.raises(SpecError, match="cannot be loaded"):
        resolve_signer("no_such_module_here:sign")

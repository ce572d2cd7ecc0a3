"""A URL signer for the tests, standing in for Planetary Computer's: the token comes from the environment
at read time (as a SAS token comes from its API), never from the spec or the catalog."""

from __future__ import annotations

import os


def sign(href: str) -> str:
    return f"{href}{'&' if '?' in href else '?'}sig={os.environ['STACUBE_TEST_SIGNATURE']}"

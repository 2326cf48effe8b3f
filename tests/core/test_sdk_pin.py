"""The SDK internals ``mads.core.sdk`` reaches were checked on one SDK version: the one the
lock installs. A new SDK version fails here until ``sdk.py`` is checked on it again."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from mads.core import sdk

LOCK = Path(__file__).resolve().parents[2] / "requirements" / "mads.txt"


def test_the_installed_sdk_is_the_one_sdk_py_was_checked_on() -> None:
    assert version("mcp") == sdk.CHECKED_ON


def test_the_lock_pins_that_sdk() -> None:
    assert f"mcp=={sdk.CHECKED_ON}" in LOCK.read_text()

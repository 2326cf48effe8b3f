"""npm packages the tests run (the conformance suite, the reference servers), installed
exactly as their ``package-lock.json`` pins them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def installed(folder: Path, entry: Path) -> Path:
    """``entry`` (a file under ``folder/node_modules``), after ``npm ci`` in ``folder`` if it
    is not there yet. A test fails, naming the fix, when npm is missing or the install fails."""
    if not entry.exists():
        if shutil.which("npm") is None:
            pytest.fail("npm is not installed (Debian: apt-get install nodejs npm)")
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {folder} failed:\n{done.stderr[-2000:]}")
    return entry

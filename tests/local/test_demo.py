"""README's main command, ``scripts/demo`` (init, up, smoke, down), run from a directory that
holds only what a fresh clone has (the already-bootstrapped virtualenv linked in)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.local.conftest import REPO, Group


def test_scripts_demo_runs_the_guide_end_to_end(tmp_path: Path) -> None:
    stamp = REPO / ".venv" / ".madgroup-installed"
    if not stamp.exists() or (REPO / "pyproject.toml").stat().st_mtime > stamp.stat().st_mtime:
        pytest.skip("scripts/bootstrap would reinstall the virtualenv; run it first")
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for rel in ("scripts/demo", "scripts/bootstrap", ".env.example", "pyproject.toml"):
        shutil.copy2(REPO / rel, checkout / rel)
    (checkout / ".venv").symlink_to(REPO / ".venv")
    group = Group(checkout / "unused")  # only for a free port offset and a clean env
    env = {**group.env, "MADGROUP_PORT_OFFSET": str(group.offset), "MAD_HEARTBEAT_S": "0.5"}
    try:
        result = subprocess.run(
            [str(checkout / "scripts" / "demo")],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "The MAD group is up" in result.stdout
        assert "smoke: all 8 steps of the guide passed (2-9)" in result.stdout
        assert "redis stopped" in result.stdout  # and down ran
        assert (checkout / ".env").exists()
    finally:
        group.root = checkout
        group.cleanup()

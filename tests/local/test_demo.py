"""README's main command, ``scripts/demo`` (init, up, smoke, down), run from a directory that
holds only what a fresh clone has (the already-bootstrapped virtualenv linked in)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.local_group import Group
from tests.support.mad_process import REPO


def _checkout(tmp_path: Path) -> Path:
    stamp = REPO / ".venv" / ".madgroup-installed"
    if not stamp.exists() or (REPO / "pyproject.toml").stat().st_mtime > stamp.stat().st_mtime:
        pytest.skip("scripts/bootstrap would reinstall the virtualenv; run it first")
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for rel in ("scripts/demo", "scripts/bootstrap", ".env.example", "pyproject.toml"):
        shutil.copy2(REPO / rel, checkout / rel)
    (checkout / ".venv").symlink_to(REPO / ".venv")
    return checkout


def test_scripts_demo_runs_the_guide_end_to_end(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    group = Group(checkout / "unused")  # only for a free port offset and a clean env
    env = {**group.env, "MADGROUP_PORT_OFFSET": str(group.offset), "MAD_HEARTBEAT_S": "0.5"}
    _demo_passes(checkout, group, env)


def test_scripts_demo_runs_beside_what_holds_the_guides_ports(tmp_path: Path) -> None:
    """A newcomer's busy machine: something (a system redis-server, say) holds 6379. The
    demo runs the group on the first offset where every port is free, and says so."""
    checkout = _checkout(tmp_path)
    group = Group(checkout / "unused")  # a clean env, without MADGROUP_PORT_OFFSET
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 6379))
        holder.listen()
    except OSError:
        pass  # already held by something else: the same situation
    try:
        out = _demo_passes(checkout, group, {**group.env, "MAD_HEARTBEAT_S": "0.5"})
    finally:
        holder.close()
    assert "demo: the guide's ports are taken here; running the group" in out


def _demo_passes(checkout: Path, group: Group, env: dict[str, str]) -> str:
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
        return result.stdout
    finally:
        group.root = checkout
        group.cleanup()

"""A MAD group run by the real ``madgroup`` CLI (the local runner) in a throw-away project
directory, on ports no other test uses; a test module outside tests/local takes the fixture
with ``from tests.support.local_group import group as group``."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from madgroup import topology
from madgroup.local import ports, processes, readiness

from tests.support.mad_process import REPO
from tests.support.waiting import wait_for

MADGROUP = str(Path(sys.executable).parent / "madgroup")


def free_offset() -> int:
    """A port offset where every component's port is free right now (below the kernel's
    ephemeral range, 32768+, so no client socket takes them meanwhile)."""
    offset = ports.free_offset(random.sample(range(12000, 24000, 7), 200))
    assert offset is not None, "no free port offset"
    return offset


class Group:
    """One project directory (``.env.example`` only, like a fresh clone) and its group."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / ".env.example", root / ".env.example")
        self.offset = free_offset()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MADGROUP_")}
        self.env.update(env or {})

    @property
    def state_dir(self) -> Path:
        return self.root / ".madgroup"

    def mg(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [MADGROUP, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"madgroup {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def up(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.mg("up", "--port-offset", str(self.offset), *args, **kwargs)

    def port(self, name: str) -> int:
        return topology.component(name).port + self.offset

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text())
        return state

    def pid(self, name: str) -> int:
        return int(self.state()["components"][name]["pid"])

    def log(self, name: str) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def events(self) -> list[tuple[float, str, str, str]]:
        """(time, component, event, detail) from the supervisor's events log."""
        out = []
        path = self.state_dir / "events.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = [*line.split(" ", 4), ""]
            out.append((float(parts[1][2:]), parts[2], parts[3], parts[4]))
        return out

    def password(self) -> str:
        for line in (self.root / ".env").read_text().splitlines():
            if line.startswith("REDIS_PASSWORD="):
                return line.split("=", 1)[1]
        raise AssertionError("no REDIS_PASSWORD in .env")

    def write_env(self, extra: str) -> None:
        with (self.root / ".env").open("a") as out:
            out.write(extra)

    def wait_status(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll a MAD's /status (what mad-status prints) until ``predicate(report)``."""

        def check() -> dict[str, Any] | None:
            report = readiness.mad_status(self.port(name), timeout=2.0)
            return report if report is not None and predicate(report) else None

        return wait_for(check, timeout=timeout, interval=0.1, what=f"{name} /status")

    def cleanup(self) -> None:
        """Stop everything this group started, whatever state the test left it in."""
        if (self.state_dir / "state.json").exists():
            self.mg("down", check=False, timeout=60)
            state = self.state()
            pid = state.get("supervisor_pid")
            if pid and processes.alive(pid, None):
                os.kill(pid, signal.SIGKILL)
            for c in state["components"].values():
                if processes.alive(c.get("pid"), c.get("ticks")):
                    os.kill(c["pid"], signal.SIGKILL)


def bus_connected(report: dict[str, Any]) -> str | None:
    """The "Conversation Bus Connected" value of a /status report."""
    for line in report.get("lines", []):
        if line["label"] == "Conversation Bus Connected":
            return str(line["value"])
    return None


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    g = Group(tmp_path / "project", env={"MAD_HEARTBEAT_S": "0.5"})
    try:
        yield g
    finally:
        g.cleanup()

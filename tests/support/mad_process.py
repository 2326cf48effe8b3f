"""A MAD started the way every substrate starts it (``mad-run <name>``), as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from madgroup import topology

from tests.support import processes
from tests.support.ports import free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def bus_user(name: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` as the local runner hands it to MAD ``name``: its own bus user when ``env``
    holds that user's password (``GRACE_BUS_PASSWORD``...), and no other bus password."""
    own = env.get(topology.bus_password_variable(name))
    kept = {k: v for k, v in env.items() if not k.endswith("_BUS_PASSWORD")}
    if own:
        kept.update(REDIS_USERNAME=name, REDIS_PASSWORD=own)
    return kept


class MadProcess:
    def __init__(self, name: str, workdir: Path, env: dict[str, str], port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "operator")]),
            "PYTHONUNBUFFERED": "1",
            "MAD_HOST": "127.0.0.1",
            "MAD_PORT": str(self.port),
            "MAD_HEARTBEAT_S": "0.5",
            **bus_user(name, env),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> MadProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mads.core.cli.run", self.name],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
            )
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(self.ready, timeout=timeout, what=f"{self.name} /readyz")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``mad-cli``/``mad-status`` as the guide does inside this MAD's environment."""
        command, *rest = args
        module = {"mad-cli": "mads.core.cli.call", "mad-status": "mads.core.cli.status"}[command]
        return subprocess.run(
            [sys.executable, "-m", module, *rest],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

"""A real ``redis-server`` on a free loopback port, with a password, for tests."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import redis
from madgroup import topology

from mads.core.bus import Bus
from tests.support import processes
from tests.support.ports import free_port
from tests.support.waiting import wait_for


class RedisServer:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        appendonly: bool = True,
        bus_users: bool = True,
    ) -> None:
        """``bus_users``: Redis runs with the group's ACL file, as every substrate runs it
        (the administrator's password, and a user per MAD that the MADs started by the
        tests connect as); False: ``requirepass`` only."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap installs it)")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(24)
        self.bus_passwords = (
            {user: secrets.token_urlsafe(24) for user in topology.bus_users()} if bus_users else {}
        )
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """For a MAD process: the administrator's password and every bus user's (as
        ``.env`` has them); :class:`~tests.support.mad_process.MadProcess` keeps only its
        own user's, as the local runner does."""
        return {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.port),
            "REDIS_PASSWORD": self.password,
            **{topology.bus_password_variable(u): p for u, p in self.bus_passwords.items()},
        }

    def user_client(self, user: str) -> redis.Redis:
        """A client logged in as MAD ``user``'s bus user."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=user,
            password=self.bus_passwords[user],
            socket_timeout=5,
        )

    def client(self, authenticated: bool = True) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password if authenticated else None,
            socket_timeout=5,
        )

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            *self._auth(),
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=15, what=f"redis-server on port {self.port}")
        return self

    def _auth(self) -> list[str]:
        if not self.bus_passwords:
            return ["--requirepass", self.password]
        acl = self.workdir / "users.acl"
        acl.write_text(topology.acl_file(self.password, self.bus_passwords))
        acl.chmod(0o600)
        return ["--aclfile", str(acl)]

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        processes.stop(self.process, kill=kill)
        self.process = None


async def connected_bus(server: RedisServer, sender: str, **options: Any) -> Bus:
    """A :class:`Bus` on ``server`` as ``sender`` (administrator's password; ``options``
    as :class:`Bus` takes them), started and connected."""
    bus = Bus(
        host="127.0.0.1",
        port=server.port,
        password=server.password,
        sender_id=sender,
        **options,
    )
    await bus.start()
    assert await bus.wait_connected(10)
    return bus

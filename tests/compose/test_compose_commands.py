"""What the compose services run, executed for real where this machine can: the Redis
command line and healthcheck against a real redis-server, a MAD healthcheck against an HTTP
server, and the commands equal to the topology's (the local runner runs the same)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from madgroup import topology
from madgroup.resolved import resolve
from madgroup.spec import MadGroupSpec

from tests.support import processes
from tests.support.ports import free_port
from tests.support.waiting import wait_for

PASSWORD = "aBcDeFgHiJkLmNoPqRsTuVwXyZ123456"


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _replace_after(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def test_each_service_runs_the_topology_command(compose: dict[str, Any], interpolated) -> None:
    """The argv compose starts equals the resolved component's command (its topology command
    with its declared options, e.g. Redis's maxmemory), which the local runner and the
    operator run too, except that Redis reads its users from the ACL file the credentials
    service writes instead of ``--requirepass`` (no password on its command line)."""
    group = resolve(MadGroupSpec())
    for comp in topology.COMPONENTS:
        expected = group.of(comp.name).command(users_file="/run/madgroup/users.acl")
        if not comp.is_mad:
            assert expected[3:5] == ["--aclfile", "/run/madgroup/users.acl"]
        got = interpolated(compose["services"][comp.name]["command"], {"REDIS_PASSWORD": PASSWORD})
        assert got == expected, comp.name
        assert PASSWORD not in got
    for name in topology.MAD_NAMES:
        assert compose["services"][name]["command"] == ["mad-run", name]


@pytest.fixture()
def compose_redis(
    compose: dict[str, Any], interpolated, tmp_path: Path
) -> Iterator[tuple[int, dict[str, Any]]]:
    """redis-server started with the compose file's own arguments (port and dir moved)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server/redis-cli not installed (scripts/bootstrap installs them)")
    port = free_port()
    credentials = tmp_path / "credentials"
    # What the compose file's credentials service runs, with the same command.
    one_shot = compose["services"]["bus_users"]["command"]
    written = subprocess.run(
        [str(Path(sys.executable).parent / one_shot[0]), str(credentials)],
        env={**os.environ, "REDIS_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert written.returncode == 0, written.stderr
    argv = interpolated(compose["services"]["redis"]["command"], {"REDIS_PASSWORD": PASSWORD})
    argv = _replace_after(argv, "--port", str(port))
    argv = _replace_after(argv, "--dir", str(tmp_path))
    argv = _replace_after(argv, "--aclfile", str(credentials / "redis" / "users.acl"))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: _accepts(port),
            timeout=10,
            what="redis-server to start with the compose file's arguments",
        )
        yield port, compose["services"]["redis"]
    finally:
        processes.stop(proc)


def _cli(port: int, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
    )
    return (result.stdout + result.stderr).strip()


def test_redis_refuses_clients_without_the_password(compose_redis) -> None:
    port, _ = compose_redis
    # The guide's step 2: without the password NOAUTH, with it PONG.
    assert "NOAUTH" in _cli(port, "ping")
    assert _cli(port, "--no-auth-warning", "--pass", PASSWORD, "ping") == "PONG"
    appendonly = _cli(port, "--no-auth-warning", "--pass", PASSWORD, "config", "get", "appendonly")
    assert appendonly.split() == ["appendonly", "yes"]
    assert "WRONGPASS" in _cli(port, "--no-auth-warning", "--pass", "wrong", "ping")


def _run_redis_healthcheck(
    port: int, svc: dict[str, Any], password: str, interpolated, tmp_path: Path
) -> int:
    """The healthcheck as the container runs it: the password from the file the credentials
    service writes (here in ``tmp_path``), never from the environment."""
    kind, script = svc["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    (tmp_path / "admin_password").write_text(password)
    script = (
        interpolated(script, {})
        .replace("-p 6379", f"-p {port}")
        .replace("/run/madgroup/admin_password", str(tmp_path / "admin_password"))
    )
    env = {**os.environ, "REDIS_PASSWORD": "not this one"}
    env.pop("REDISCLI_AUTH", None)
    return subprocess.run(["sh", "-c", script], env=env, timeout=10).returncode


def test_redis_healthcheck_passes_only_with_the_password(
    compose_redis, interpolated, tmp_path: Path
) -> None:
    port, svc = compose_redis
    assert _run_redis_healthcheck(port, svc, PASSWORD, interpolated, tmp_path) == 0
    assert _run_redis_healthcheck(port, svc, "wrong", interpolated, tmp_path) != 0


class _Readyz(http.server.BaseHTTPRequestHandler):
    ready = False

    def do_GET(self) -> None:
        ok = self.path == "/readyz" and type(self).ready
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"not ready")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_mad_healthcheck_follows_readyz(compose: dict[str, Any]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for name in topology.MAD_NAMES:
            kind, python, *flags, code = compose["services"][name]["healthcheck"]["test"]
            assert (kind, python, flags) == ("CMD", "python", ["-I", "-S", "-c"])
            code = code.replace(
                f"'127.0.0.1',{topology.component(name).port})", f"'127.0.0.1',{port})"
            )
            argv = [shutil.which("python3") or "python3", *flags, code]
            _Readyz.ready = False
            refused = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            assert refused.returncode == 1, name
            assert refused.stderr.strip() == "not ready: HTTP/1.0 503 Service Unavailable"
            _Readyz.ready = True
            assert subprocess.run(argv, capture_output=True, timeout=10).returncode == 0, name
    finally:
        server.shutdown()
        server.server_close()
    # Nothing listening: one line, no traceback (docker inspect shows the probe's output).
    down = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert down.returncode == 1
    assert down.stderr.startswith("not ready: [Errno 111]"), down.stderr

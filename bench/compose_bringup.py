#!/usr/bin/env python3
"""Bring-up overhead of ``docker-compose up -d`` on a real engine.

In one run, in a throw-away copy of the repository, with the images already built:

1. each component alone: created with ``docker-compose up -d --no-deps <service>`` once the
   ones before it are up; its start-to-ready time is from the container's ``StartedAt`` to
   the first answer of its own readiness check (``/readyz``, or an authenticated PING for
   Redis), polled from the host on the container's address every 10 ms;
2. ``docker-compose up -d`` of the whole group from nothing: the wall time until every
   container reports ``healthy`` (the gate compose itself waits on between services);
3. the machine's busy CPU over 30 s with the group up and idle, against 30 s with no
   group: what healthchecks (an exec each) and the MADs' heartbeats cost in steady state.

Prints the per-component times, the ratio wall / sum(alone) (goal <= 1.5), the CPU, and
the images' sizes (goal <= 200 MB), saying whether the python base is the official image
or this machine's stand-in.

    tests/e2e/compose/engine .venv/bin/python bench/compose_bringup.py [--interval 1s]

``--interval`` renders the copy's healthchecks with another interval, to compare.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

import yaml  # noqa: E402

from tests.e2e.compose.harness import GuideHost, copy_repository, trust_host_cas  # noqa: E402

SERVICES = ("redis", "sequential_thinking", "grace", "rogers", "fiedler")
PORTS = {"redis": 6379, "sequential_thinking": 8000, "grace": 8001, "rogers": 8002, "fiedler": 8003}
GOAL = 1.5


class DockerAPI(http.client.HTTPConnection):
    """The engine's API on its unix socket: a start or an inspect in about a millisecond,
    where the docker CLI takes a tenth of a second (that would be counted as start time)."""

    def __init__(self, path: str = "/var/run/docker.sock") -> None:
        super().__init__("localhost")
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)

    def call(self, method: str, path: str) -> Any:
        self.request(method, path)
        response = self.getresponse()
        body = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {body[:200]!r}")
        return json.loads(body) if body else None


def container(host: GuideHost, service: str) -> dict:
    cid = host.sh(f"docker-compose ps -q {service}").output.strip()
    return DockerAPI().call("GET", f"/containers/{cid}/json")


def started_at(info: dict) -> float:
    stamp = info["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    head, _, frac = stamp.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + float("0." + (frac or "0"))


def address(info: dict) -> str:
    networks = info["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def ready(service: str, ip: str, password: str) -> bool:
    try:
        if service == "redis":
            with socket.create_connection((ip, 6379), timeout=0.5) as s:
                s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                replies = s.makefile("rb")
                return replies.readline() == b"+OK\r\n" and replies.readline() == b"+PONG\r\n"
        with urllib.request.urlopen(f"http://{ip}:{PORTS[service]}/readyz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def alone(host: GuideHost, password: str) -> dict[str, float]:
    """Create each container, then start it ourselves and poll at once: from its process's
    start to its first ready answer, with no compose client latency in between."""
    took = {}
    for service in SERVICES:
        host.sh(f"docker-compose up --no-start --no-deps {service}", timeout=300)
        cid = host.sh(f"docker-compose ps -q {service}").output.strip()
        api = DockerAPI()
        api.call("POST", f"/containers/{cid}/start")
        info = api.call("GET", f"/containers/{cid}/json")
        ip = address(info)
        while not ready(service, ip, password):
            time.sleep(0.01)
        took[service] = time.time() - started_at(info)
    host.sh("docker-compose down --volumes", timeout=300)
    return took


def all_healthy(host: GuideHost) -> float:
    """``docker-compose up -d`` from nothing until every container says healthy, watched
    on the engine's API every 20 ms while compose works."""
    filters = urllib.parse.quote(
        json.dumps({"label": [f"com.docker.compose.project={host.project}"]})
    )
    api = DockerAPI()
    t0 = time.time()
    compose = subprocess.Popen(
        ["docker-compose", "up", "-d"],
        cwd=host.workdir,
        env=host.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            listed = api.call("GET", f"/containers/json?filters={filters}")
            healthy = [c for c in listed if c["Status"].endswith("(healthy)")]
            if len(healthy) == len(SERVICES):
                return time.time() - t0
            if time.time() - t0 > 600:
                raise SystemExit("the group did not become healthy in 10 minutes")
            time.sleep(0.02)
    finally:
        compose.wait(timeout=600)


def busy_cpu_share(seconds: float = 30) -> float:
    """The machine's busy CPU over ``seconds`` (all cores, from /proc/stat), in cores."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    cores = len([ln for ln in Path("/proc/stat").read_text().splitlines() if ln[:3] == "cpu"]) - 1
    return (busy1 - busy0) / (total1 - total0) * cores


IMAGES = (
    "ghcr.io/madgroup/sequential-thinking:0.1.0",
    "ghcr.io/madgroup/grace:0.1.0",
    "ghcr.io/madgroup/rogers:0.1.0",
    "ghcr.io/madgroup/fiedler:0.1.0",
)
BASE = "python:3.11-slim-bookworm"
SIZE_GOAL_MB = 200


def image_sizes() -> None:
    api = DockerAPI()
    base = api.call("GET", f"/images/{BASE}/json")
    stand_in = (base["Config"].get("Labels") or {}).get("io.madgroup.stand-in") == "true"
    kind = "local stand-in built from debootstrap" if stand_in else "official image"
    print(f"base {BASE}: {base['Size'] / 1e6:.0f} MB ({kind})")
    for image in IMAGES:
        size = api.call("GET", f"/images/{image}/json")["Size"] / 1e6
        print(f"  {image}: {size:.0f} MB (goal <= {SIZE_GOAL_MB} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", help="healthcheck interval to render instead, e.g. 1s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_repository(REPO, Path(tmp))
        trust_host_cas(workdir)
        host = GuideHost(workdir, f"madgroup-bench-{int(time.time())}")
        compose = workdir / "docker-compose.yml"
        doc = yaml.safe_load(compose.read_text())
        interval = doc["services"]["grace"]["healthcheck"]["interval"]
        if args.interval:
            for svc in doc["services"].values():
                svc["healthcheck"]["interval"] = args.interval
            compose.write_text(yaml.safe_dump(doc, sort_keys=False))
            interval = args.interval
        password = "bench-" + str(time.time_ns())
        (workdir / ".env").write_text(f"REDIS_PASSWORD={password}\n")
        host.secrets.append(password)
        try:
            host.sh("docker-compose build", timeout=1800)
            own = alone(host, password)
            without = busy_cpu_share()
            wall = all_healthy(host)
            idle_group = busy_cpu_share()
        finally:
            host.sh("docker-compose down --volumes", check=False, timeout=300)

    floor = sum(own.values())
    print(f"healthcheck interval: {interval}")
    for service, took in own.items():
        print(f"  {service:<20} start-to-ready alone: {took:6.3f} s")
    print(f"sum of the components alone: {floor:6.3f} s")
    print(f"docker-compose up -d until all healthy: {wall:6.3f} s")
    print(f"ratio: {wall / floor:.2f} (goal <= {GOAL})")
    print(
        f"machine CPU with the group up and idle: {idle_group * 100:.1f}% of a core "
        f"(without the group: {without * 100:.1f}%): healthchecks, heartbeats and the "
        "MADs' own checks"
    )
    image_sizes()


if __name__ == "__main__":
    main()

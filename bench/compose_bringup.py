#!/usr/bin/env python3
"""Bring-up overhead of ``docker-compose up -d`` on a real engine.

In one run, in a throw-away copy of the repository with the committed
``docker-compose.yml``, after ``docker-compose build``:

1. each service on its own, in the file's ``depends_on`` order, so that everything it
   depends on is already up: created with ``docker-compose up --no-start --no-deps``, then
   started on the engine's API and watched at once. A service's own start-to-ready runs
   from the container's ``StartedAt`` to the first answer of its readiness check, polled
   from the host on the container's address every 10 ms (``/readyz``, or an authenticated
   PING for Redis); for the credentials one-shot (``bus_users``, which Redis waits for), to
   its exit with status 0 (``FinishedAt``). Then everything is taken down with its volumes;
2. ``docker-compose up -d`` of the whole group from nothing: the wall time until every
   long-running container reports ``healthy`` (the gate compose itself waits on);
3. the machine's busy CPU over 30 s with the group up and idle, against 30 s with no
   group: what healthchecks (an exec each) and the MADs' heartbeats cost in steady state.

Prints the engine's and compose's versions, each service's own time, the ratio
wall / sum of the services' own times (goal <= 1.5), the CPU, and the images' sizes (goal
<= 200 MB for a MAD image), saying whether each base image is the official one or this
machine's local stand-in (``tests/e2e/compose/base-images`` labels those
``io.madgroup.stand-in=true``). A benchmark, not a test: it reports, it never asserts.
Every wait has a deadline; whatever happens, the group is taken down with its volumes.

    flock /tmp/docker.lock tests/e2e/compose/engine \\
        .venv/bin/python bench/compose_bringup.py [--interval 1s] [--no-operator]

``--interval`` renders the copy's healthchecks with another interval, to compare.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

import yaml  # noqa: E402

from tests.e2e.compose.harness import (  # noqa: E402
    CommandFailed,
    GuideHost,
    copy_repository,
    trust_host_cas,
)

GOAL = 1.5
SIZE_GOAL_MB = 200
READY_DEADLINE_S = 120
"""How long one service may take from its start to ready, alone; the MADs take well under
a second, a stand-in Redis a fraction of one."""
GROUP_DEADLINE_S = 600
OPERATOR_IMAGE = "ghcr.io/madgroup/operator:0.1.0"
BASES = {"python": "python:3.11-slim-bookworm", "redis": "redis:7.2-alpine"}
T = TypeVar("T")


class Failed(SystemExit):
    """The benchmark cannot go on: one line saying why, then the details."""

    def __init__(self, message: str) -> None:
        super().__init__(f"compose_bringup: {message}")


class DockerAPI(http.client.HTTPConnection):
    """The engine's API on its unix socket: a start or an inspect in about a millisecond,
    where the docker CLI takes a tenth of a second (that would be counted as start time)."""

    def __init__(self, path: str = "/var/run/docker.sock") -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)

    def call(self, method: str, path: str) -> Any:
        self.request(method, path)
        response = self.getresponse()
        body = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {body[:200]!r}")
        return json.loads(body) if body else None


def until(
    attempt: Callable[[], T | None],
    *,
    deadline_s: float,
    what: str,
    poll_s: float,
    details: Callable[[], str] = lambda: "",
) -> T:
    """``attempt()`` until it gives a value; past the deadline, stop the run saying what
    did not happen, then ``details()`` (``attempt`` may raise Failed itself, for a state
    that cannot change any more)."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = attempt()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {deadline_s:g} s waiting for {what}{details()}")
        time.sleep(poll_s)


def engine_time(stamp: str) -> float:
    """An engine timestamp (RFC 3339 with nanoseconds) as a Unix time."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


def address(info: dict[str, Any]) -> str:
    networks = info["NetworkSettings"]["Networks"]
    return str(next(iter(networks.values()))["IPAddress"])


def container_id(host: GuideHost, service: str) -> str:
    cid = host.sh(f"docker-compose ps -a -q {service}", timeout=60).output.strip()
    if not cid:
        raise Failed(f"docker-compose created no container for {service}")
    return cid


def logs_tail(host: GuideHost, service: str) -> str:
    out = host.sh(f"docker-compose logs --no-color --tail=15 {service}", check=False).output
    return f"; its last log lines:\n{out.strip() or '(none)'}"


class Service:
    """One service of the compose file: how it counts as ready, and what it waits for."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.depends_on = list(spec.get("depends_on", {}))
        self.one_shot = bool((spec.get("healthcheck") or {}).get("disable"))
        env = spec.get("environment") or {}
        self.port = int(env["MAD_PORT"]) if "MAD_PORT" in env else None

    def ready(self, ip: str, password: str) -> bool:
        try:
            if self.port is None:  # Redis
                with socket.create_connection((ip, 6379), timeout=0.5) as s:
                    s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                    replies = s.makefile("rb")
                    return replies.readline() == b"+OK\r\n" and replies.readline() == b"+PONG\r\n"
            with urllib.request.urlopen(f"http://{ip}:{self.port}/readyz", timeout=0.5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    @property
    def check(self) -> str:
        if self.one_shot:
            return "exit with status 0"
        return "an authenticated PING" if self.port is None else f"GET :{self.port}/readyz"


def services_in_order(compose_file: Path) -> list[Service]:
    """The compose file's services, each after everything it ``depends_on``."""
    specs = yaml.safe_load(compose_file.read_text())["services"]
    pending = {name: Service(name, spec) for name, spec in specs.items()}
    ordered: list[Service] = []
    while pending:
        free = [s for s in pending.values() if all(d not in pending for d in s.depends_on)]
        if not free:
            raise Failed(f"depends_on has a cycle among {sorted(pending)}")
        for svc in free:
            ordered.append(pending.pop(svc.name))
    return ordered


def own_start_to_ready(host: GuideHost, svc: Service, password: str) -> float:
    """Create ``svc`` (its dependencies are up), start it on the API, poll at once."""
    host.sh(f"docker-compose up --no-start --no-deps {svc.name}", timeout=300)
    cid = container_id(host, svc.name)
    api = DockerAPI()
    api.call("POST", f"/containers/{cid}/start")
    info = api.call("GET", f"/containers/{cid}/json")
    what = f"{svc.name} to {'finish' if svc.one_shot else 'answer ' + svc.check}"

    def state() -> dict[str, Any]:
        return dict(api.call("GET", f"/containers/{cid}/json")["State"])

    def gave_up(now: dict[str, Any]) -> NoReturn:
        raise Failed(
            f"{svc.name} exited with status {now['ExitCode']} before {svc.check}"
            + logs_tail(host, svc.name)
        )

    if svc.one_shot:

        def finished() -> dict[str, Any] | None:
            now = state()
            if now["Status"] != "exited":
                return None
            if now["ExitCode"] != 0:
                gave_up(now)
            return now

        done = until(
            finished,
            deadline_s=READY_DEADLINE_S,
            what=what,
            poll_s=0.01,
            details=lambda: logs_tail(host, svc.name),
        )
        return engine_time(done["FinishedAt"]) - engine_time(done["StartedAt"])

    ip = address(info)
    polls = 0

    def answered() -> float | None:
        nonlocal polls
        if svc.ready(ip, password):
            return time.time()
        polls += 1
        if polls % 100 == 0 and (now := state())["Status"] != "running":  # about every second
            gave_up(now)
        return None

    at = until(
        answered,
        deadline_s=READY_DEADLINE_S,
        what=what,
        poll_s=0.01,
        details=lambda: logs_tail(host, svc.name),
    )
    return at - engine_time(info["State"]["StartedAt"])


def alone(host: GuideHost, services: list[Service], password: str) -> dict[str, float]:
    """Each service's own start-to-ready, one at a time; then all taken down."""
    took: dict[str, float] = {}
    try:
        for svc in services:
            took[svc.name] = own_start_to_ready(host, svc, password)
    finally:
        host.sh("docker-compose down --volumes", check=False, timeout=300)
    return took


def all_healthy(host: GuideHost, services: list[Service]) -> float:
    """``docker-compose up -d`` from nothing until every long-running container says
    healthy, watched on the engine's API every 20 ms while compose works."""
    expected = {s.name for s in services if not s.one_shot}
    filters = urllib.parse.quote(
        json.dumps({"label": [f"com.docker.compose.project={host.project}"]})
    )
    what = f"every service of docker-compose up -d to be healthy ({', '.join(sorted(expected))})"
    api = DockerAPI()
    with tempfile.TemporaryFile() as output:
        t0 = time.time()
        compose = subprocess.Popen(
            ["docker-compose", "up", "-d"],
            cwd=host.workdir,
            env=host.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

        def said() -> str:
            output.seek(0)
            return output.read().decode(errors="replace")[-3000:]

        def healthy() -> float | None:
            listed = api.call("GET", f"/containers/json?filters={filters}")
            up = {
                c["Labels"].get("com.docker.compose.service")
                for c in listed
                if c["Status"].endswith("(healthy)")
            }
            if expected <= up:
                return time.time() - t0
            if compose.poll() not in (None, 0):
                raise Failed(
                    f"docker-compose up -d exited with status {compose.returncode}:\n{said()}"
                )
            return None

        try:
            return until(
                healthy,
                deadline_s=GROUP_DEADLINE_S,
                what=what,
                poll_s=0.02,
                details=lambda: f"; docker-compose up -d said:\n{said()}",
            )
        finally:
            try:
                compose.wait(timeout=120)
            except subprocess.TimeoutExpired:
                compose.kill()
                compose.wait()


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


def base_kind(image: str) -> str:
    labels = DockerAPI().call("GET", f"/images/{image}/json")["Config"].get("Labels") or {}
    if labels.get("io.madgroup.stand-in") == "true":
        return "local stand-in built from debootstrap, not the official image"
    return "the official image"


def venv_mb(image: str) -> float:
    """The size of the image's /opt/venv, from a throw-away container."""
    out = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "du", image, "-sk", "/opt/venv"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    ).stdout.split()
    return int(out[0]) * 1024 / 1e6 if out else float("nan")


def image_sizes(host: GuideHost, with_operator: bool) -> None:
    api = DockerAPI()
    for image in BASES.values():
        size = api.call("GET", f"/images/{image}/json")["Size"] / 1e6
        print(f"base {image}: {size:.0f} MB ({base_kind(image)})")
    doc = yaml.safe_load((host.workdir / "docker-compose.yml").read_text())
    built = sorted({svc["image"] for svc in doc["services"].values() if "build" in svc})
    if with_operator:
        built.append(OPERATOR_IMAGE)
    base = api.call("GET", f"/images/{BASES['python']}/json")["Size"] / 1e6
    for image in built:
        size = api.call("GET", f"/images/{image}/json")["Size"] / 1e6
        goal = f", goal <= {SIZE_GOAL_MB} MB" if image != OPERATOR_IMAGE else ""
        print(
            f"  {image}: {size:.0f} MB (base {base:.0f} MB, /opt/venv "
            f"{venv_mb(image):.0f} MB{goal})"
        )


def versions() -> tuple[str, str]:
    engine = DockerAPI().call("GET", "/version")
    compose = subprocess.run(
        ["docker-compose", "version", "--short"], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    return f"Docker Engine {engine['Version']}", f"docker-compose {compose}"


def stop_on_sigterm() -> None:
    """SIGTERM (``timeout``, a killed job) ends the run like Ctrl-C: through the teardown."""

    def handler(signum: int, frame: object) -> NoReturn:
        raise Failed(f"stopped by signal {signum}; taking the group down")

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--interval", help="healthcheck interval to render instead, e.g. 1s")
    parser.add_argument(
        "--no-operator", action="store_true", help="do not build the operator image"
    )
    args = parser.parse_args()
    stop_on_sigterm()
    engine, compose_version = versions()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="madgroup-bench-") as tmp:
        workdir = copy_repository(REPO, Path(tmp))
        trust_host_cas(workdir)
        host = GuideHost(workdir, f"madgroup-bench-{int(time.time())}")
        compose = workdir / "docker-compose.yml"
        doc = yaml.safe_load(compose.read_text())
        interval = doc["services"]["grace"]["healthcheck"]["interval"]
        if args.interval:
            for svc in doc["services"].values():
                if not svc.get("healthcheck", {}).get("disable"):
                    svc["healthcheck"]["interval"] = args.interval
            compose.write_text(yaml.safe_dump(doc, sort_keys=False))
            interval = args.interval
        services = services_in_order(compose)
        password = "bench-" + str(time.time_ns())
        (workdir / ".env").write_text(f"REDIS_PASSWORD={password}\n")
        host.secrets.append(password)
        try:
            print("building the images (docker-compose build) ...", flush=True)
            host.sh("docker-compose build", timeout=1800)
            if not args.no_operator:
                host.sh(
                    f"docker build -q -f docker/Dockerfile --target operator -t {OPERATOR_IMAGE} .",
                    timeout=1800,
                )
            print("each service on its own ...", flush=True)
            own = alone(host, services, password)
            without = busy_cpu_share()
            print("docker-compose up -d ...", flush=True)
            wall = all_healthy(host, services)
            idle_group = busy_cpu_share()
        except CommandFailed as exc:
            raise Failed(f"a command failed:\n{exc}") from None
        finally:
            print("taking the group down (docker-compose down --volumes)", flush=True)
            host.sh("docker-compose down --volumes --remove-orphans", check=False, timeout=300)

        floor = sum(own.values())
        print(f"{engine}, {compose_version}; healthcheck interval {interval}")
        print(
            f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
            f"on {os.cpu_count()} cores: other work on the machine slows every number below"
        )
        for svc in services:
            print(f"  {svc.name:<20} own start-to-ready {own[svc.name]:6.3f} s ({svc.check})")
        print(f"sum of the services' own start-to-ready: {floor:6.3f} s")
        print(f"docker-compose up -d until all healthy:  {wall:6.3f} s")
        verdict = "meets" if wall / floor <= GOAL else "misses"
        print(f"ratio: {wall / floor:.2f} ({verdict} the goal <= {GOAL})")
        print(
            f"machine CPU with the group up and idle: {idle_group * 100:.1f}% of a core "
            f"(without the group: {without * 100:.1f}%): healthchecks, heartbeats and the "
            "MADs' own checks"
        )
        if without > 0.25 * (os.cpu_count() or 1):
            print(
                "  (other work kept the machine busy without the group too: the difference "
                "says little; run it on a quiet machine)"
            )
        image_sizes(host, with_operator=not args.no_operator)
    return 0


if __name__ == "__main__":
    sys.exit(main())

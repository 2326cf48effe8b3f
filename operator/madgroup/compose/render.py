"""Render the committed ``docker-compose.yml`` from the shared topology.

Everything a service runs with (image, command, port, environment, start gates, readiness
check) comes from :mod:`madgroup.topology`; this module only says how compose spells it.
"""

from __future__ import annotations

from typing import Any

import yaml

from madgroup import topology
from madgroup.topology import Component

COMPOSE_FILE = "docker-compose.yml"
DOCKERFILE = "docker/Dockerfile"
ENV_FILE = ".env"
NETWORK = "madgroup"
RESTART_POLICY = "unless-stopped"
PUBLISH_ADDRESS_VARIABLE = "GRACE_PUBLISH_ADDRESS"
DEFAULT_PUBLISH_ADDRESS = "127.0.0.1"
LOGGING: dict[str, Any] = {
    "driver": "json-file",
    "options": {"max-size": "10m", "max-file": "3"},
}
"""The deployment guide's log rotation (5.2.3), on every service."""

HEALTHCHECK_TIMING: dict[str, str | int] = {
    "interval": "5s",
    "timeout": "3s",
    "retries": 5,
    "start_period": "30s",
}

HEADER = """\
# MAD Group on one host with Docker: `docker compose up -d` (or `docker-compose up -d`).
# Start order is enforced by healthchecks (depends_on: service_healthy):
#   redis <- sequential_thinking <- grace <- rogers <- fiedler
# Configuration and secrets come from .env (cp .env.example .env; set REDIS_PASSWORD).
#
# Generated from operator/madgroup/topology.py by `madgroup render compose`.
# Do not edit by hand: change the topology or the renderer and render again.
"""


def compose_argument(arg: str) -> str:
    """Translate Kubernetes-style ``$(VAR)`` in a command argument into compose
    interpolation. Compose refuses to start when the variable is unset or empty, so Redis
    can never come up without a password."""
    return topology.VARIABLE.sub(
        lambda m: f"${{{m.group(1)}:?{m.group(1)} must be set in {ENV_FILE}}}", arg
    )


def compose_command(comp: Component) -> list[str]:
    """The topology's command line, spelled for compose (same arguments)."""
    return [compose_argument(arg) for arg in comp.command()]


def volume_name(comp: Component) -> str:
    return f"{comp.name}_data"


def build_target(comp: Component) -> str:
    """The stage of ``docker/Dockerfile`` that builds this MAD's image."""
    return comp.dns_name


def _address(name: str) -> tuple[str, int]:
    """Services reach each other by compose service name on the private network."""
    return name, topology.component(name).port


def healthcheck(comp: Component) -> dict[str, Any]:
    """Readiness, the same as every substrate: ``/readyz`` for a MAD, an authenticated PING
    for Redis (the password comes from the container's environment, never the command line;
    ``$$`` keeps compose from interpolating it)."""
    if comp.probe.kind == "redis":
        test: list[str] = [
            "CMD-SHELL",
            f'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli -p {comp.port} ping | grep -q PONG',
        ]
    else:
        url = f"http://127.0.0.1:{comp.port}{comp.probe.path}"
        test = [
            "CMD",
            "python",
            "-c",
            f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)",
        ]
    return {"test": test, **HEALTHCHECK_TIMING}


def service(comp: Component) -> dict[str, Any]:
    svc: dict[str, Any] = {"image": comp.image()}
    if comp.is_mad:
        svc["build"] = {
            "context": ".",
            "dockerfile": DOCKERFILE,
            "target": build_target(comp),
        }
        svc["init"] = True
    svc["command"] = compose_command(comp)
    svc["env_file"] = [ENV_FILE]
    env = topology.environment(comp, _address, allowed_hosts=[comp.name])
    if env:
        svc["environment"] = env
    gates = topology.gates(comp)
    if gates:
        svc["depends_on"] = {name: {"condition": "service_healthy"} for name in gates}
    svc["healthcheck"] = healthcheck(comp)
    svc["restart"] = RESTART_POLICY
    if comp.exposed:
        svc["ports"] = [
            f"${{{PUBLISH_ADDRESS_VARIABLE}:-{DEFAULT_PUBLISH_ADDRESS}}}:{comp.port}:{comp.port}"
        ]
    if comp.data_path:
        svc["volumes"] = [f"{volume_name(comp)}:{comp.data_path}"]
    if comp.is_mad:
        svc["read_only"] = True
        svc["tmpfs"] = ["/tmp"]
        svc["cap_drop"] = ["ALL"]
    svc["security_opt"] = ["no-new-privileges:true"]
    svc["networks"] = [NETWORK]
    svc["logging"] = LOGGING
    return svc


def compose_document() -> dict[str, Any]:
    return {
        "services": {comp.name: service(comp) for comp in topology.start_order()},
        "networks": {NETWORK: {"driver": "bridge"}},
        "volumes": {volume_name(c): {} for c in topology.COMPONENTS if c.data_path},
    }


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors/aliases (the shared logging dict is written out in full)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_compose() -> str:
    body = yaml.dump(
        compose_document(),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    return HEADER + "\n" + body


def render_files() -> dict[str, str]:
    return {COMPOSE_FILE: render_compose()}

"""The two Docker Composes the deployment guide runs under, one pass each.

- ``v2``: Docker Compose v2. ``docker compose`` is the Docker CLI's plugin (the README's
  spelling); the guide's ``docker-compose`` is the same binary run standalone, first on the
  pass's ``PATH``.
- ``v1``: docker-compose 1.x (Debian 12's 1.29.2) as the guide's ``docker-compose``, first
  on the pass's ``PATH``.

``tests/e2e/compose/engine`` installs what is missing; where it could not, the reason it
passes in ``MADGROUP_COMPOSE_V1_UNAVAILABLE`` / ``MADGROUP_COMPOSE_V2_UNAVAILABLE`` is the
pass's skip reason. What the two print differently (container names, ``ps``'s status) is
what docs/packaging.md says each prints; the tests expect it of the pass's flavour.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLAVOURS = ("v2", "v1")
"""v2 first: the README's compose; the v1 pass then reuses the images v2 built."""
ENGINE_HINT = "tests/e2e/compose/engine installs it"


@dataclass(frozen=True)
class Compose:
    flavour: str
    program: Path
    """The ``docker-compose`` this pass puts first on ``PATH``."""
    version: str
    """What ``docker-compose version`` says, first line."""
    bin_dir: Path
    """Holds ``docker-compose``, a link to ``program``."""

    @property
    def label(self) -> str:
        return f"compose-{self.flavour}"

    @property
    def spelling(self) -> str:
        """How this pass types the README's compose commands: ``docker compose`` (v2's
        plugin form, verbatim); v1 has no plugin form, so its ``docker-compose``."""
        return "docker compose" if self.flavour == "v2" else "docker-compose"

    def container(self, project: str, service: str) -> str:
        """The name compose gives a service's first container."""
        if self.flavour == "v2":
            return f"{project}-{service}-1"
        return f"{project}_{service}_1"

    def healthy_row(self, project: str, service: str) -> re.Pattern[str]:
        """``ps``'s line for a running, healthy container of ``service``: v1's State column
        says ``Up (healthy)``; v2's STATUS column says how long it has been up, as ``docker
        ps`` does (``Up 4 seconds (healthy)``), after a SERVICE column."""
        name = re.escape(self.container(project, service))
        if self.flavour == "v2":
            status = r"Up [A-Za-z0-9 ]+ \(healthy\)"
            return re.compile(rf"^{name}\s.*\s{re.escape(service)}\s.*\s{status}(\s|$)", re.M)
        return re.compile(rf"^{name}\s.*\sUp \(healthy\)(\s|$)", re.M)


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _plugin_path() -> str | None:
    """Where the Docker CLI found its compose plugin."""
    listed = _output(["docker", "info", "--format", "{{json .ClientInfo.Plugins}}"])
    try:
        plugins = json.loads(listed or "[]")
    except ValueError:
        return None
    return next((p.get("Path") for p in plugins or [] if p.get("Name") == "compose"), None)


def _find_v2() -> Path | str:
    if not _output(["docker", "compose", "version", "--short"]).lstrip("v").startswith("2."):
        return f"no Docker Compose v2 answers as docker compose; {ENGINE_HINT}"
    plugin = _plugin_path()
    if plugin is None or not Path(plugin).is_file():
        return "docker compose answers, but docker info names no compose plugin file"
    return Path(plugin)


def _find_v1() -> Path | str:
    candidates = [os.environ.get("MADGROUP_COMPOSE_V1"), shutil.which("docker-compose")]
    for candidate in [*candidates, "/usr/bin/docker-compose"]:
        if (
            candidate
            and Path(candidate).is_file()
            and _output([candidate, "version", "--short"]).startswith("1.")
        ):
            return Path(candidate)
    return f"no docker-compose 1.x on PATH or in /usr/bin; {ENGINE_HINT} (Debian's)"


def find(flavour: str, bin_dir: Path) -> Compose | str:
    """The flavour's compose with ``bin_dir/docker-compose`` linked to it, or why not."""
    reason = os.environ.get(f"MADGROUP_COMPOSE_{flavour.upper()}_UNAVAILABLE")
    if reason:
        return reason
    found = _find_v2() if flavour == "v2" else _find_v1()
    if isinstance(found, str):
        return found
    link = bin_dir / "docker-compose"
    link.symlink_to(found)
    version = _output([str(link), "version"]).splitlines()
    if not version:
        return f"{link} -> {found} does not answer 'docker-compose version'"
    return Compose(flavour=flavour, program=found, version=version[0], bin_dir=bin_dir)


PLUGIN_HOST_TOOLS = ("docker", "timeout", "grep", "dirname", "date", "hostname")
"""The Docker CLI and the programs scripts/mad_health_check.sh runs."""


def plugin_only_path(directory: Path) -> str:
    """A ``PATH`` as on a host where Compose v2 came only as the Docker CLI's plugin
    (Docker's own packages install no ``docker-compose``): ``directory`` with links to the
    Docker CLI and the few programs the health script runs, and nothing else."""
    for tool in PLUGIN_HOST_TOOLS:
        found = shutil.which(tool)
        if found is None:
            raise AssertionError(f"{tool} is not on PATH")
        (directory / tool).symlink_to(found)
    return str(directory)

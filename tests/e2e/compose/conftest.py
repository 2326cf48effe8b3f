"""The compose end-to-end run: one Docker engine, two passes (Docker Compose v2, then
docker-compose 1.x: :mod:`tests.e2e.compose.flavours`), in each a copy of the repository
and a group per module.

The tests in this folder are the deployment guide's steps in order; once one fails, the
rest of its module in that pass are skipped (they would only fail for the same reason).
The group is always taken down with its volumes, and the run checks that no container,
network or volume is left. The v1 pass reuses the images the v2 pass built (the guide's
``--build`` steps rebuild them from the layer cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.compose import flavours
from tests.e2e.compose.flavours import Compose
from tests.e2e.compose.harness import (
    EventLog,
    GuideHost,
    copy_repository,
    port_holder,
    project_name,
    remove_abandoned_projects,
    remove_project_images,
    trust_host_cas,
)
from tests.support.evidence import record

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
GRACE_PORT = 8001  # published by docker-compose.yml, as the guide shows
ENGINE_HINT = "tests/e2e/compose/engine scripts/test installs and starts one"

_failed: dict[tuple[str, str], str] = {}
"""(module, flavour) -> the first test of it that failed."""
_outcomes: dict[str, Counter[str]] = {}
"""flavour label -> how many of its tests passed, failed, were skipped."""
_fresh_host: list[str] = []
"""Set once the images an earlier run built were removed: once per session, so later
modules and the second pass reuse what the first one built."""


def _flavour(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return str(callspec.params.get("compose", "")) if callspec is not None else ""


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if (
        call.excinfo is not None
        and call.when == "call"
        and not call.excinfo.errisinstance(pytest.skip.Exception)
    ):
        _failed.setdefault((str(item.path), _flavour(item)), item.name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    earlier = _failed.get((str(item.path), _flavour(item)))
    if earlier is not None:
        pytest.skip(f"an earlier step of the guide failed ({earlier})")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for flavour in flavours.FLAVOURS:
        if f"[compose-{flavour}]" in report.nodeid:
            counts = _outcomes.setdefault(f"compose-{flavour}", Counter())
            if report.when == "call" or report.outcome != "passed":
                counts[report.outcome] += 1


def _engine_answers() -> str | None:
    """None when an engine answers, else why not."""
    reason = os.environ.get("MADGROUP_DOCKER_UNAVAILABLE")
    if reason:
        return reason
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker did not answer ({exc}); {ENGINE_HINT}"
    if done.returncode != 0:
        return f"no Docker engine answers; {ENGINE_HINT}"
    return None


@pytest.fixture(scope="session")
def engine() -> str:
    reason = _engine_answers()
    if reason:
        pytest.skip(reason)
    base = subprocess.run([str(HERE / "base-images")], capture_output=True, text=True, timeout=1200)
    sys.stdout.write(base.stdout)
    for line in base.stdout.splitlines():
        if line.startswith("base-images: ") and ": " in line.removeprefix("base-images: "):
            record("base image", line.removeprefix("base-images: "))
    if base.returncode != 0:
        pytest.fail(f"the base images could not be provided:\n{base.stdout}{base.stderr}")
    return base.stdout


def _engine_version() -> str:
    return subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


@pytest.fixture(scope="session", params=flavours.FLAVOURS, ids=lambda f: f"compose-{f}")
def compose(
    request: pytest.FixtureRequest, engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Compose]:
    """One pass of the guide: its Docker Compose, and its record in the run's summary (the
    versions it ran, its outcome and how long it took)."""
    found = flavours.find(request.param, tmp_path_factory.mktemp(f"compose-{request.param}"))
    if isinstance(found, str):
        pytest.skip(found)
    described = f"docker-compose is {found.program} ({found.version})"
    if found.flavour == "v2":
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        described += f", docker compose is the docker CLI's plugin ({plugin})"
    record("compose e2e", f"{found.label} pass: {described}; Docker Engine {_engine_version()}")
    started = time.monotonic()
    yield found
    counts = _outcomes.get(found.label, Counter())
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no tests"
    record(
        "compose e2e",
        f"{found.label} pass ({found.version}): {summary} in {time.monotonic() - started:.0f} s",
    )


@pytest.fixture(scope="module")
def host(
    request: pytest.FixtureRequest,
    engine: str,
    compose: Compose,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GuideHost]:
    workdir = copy_repository(ROOT, tmp_path_factory.mktemp(f"clone-{compose.flavour}"))
    cas = trust_host_cas(workdir)
    if cas:
        print(f"image builds trust this host's extra CA certificates: {', '.join(cas)}")
    stale = [] if _fresh_host else remove_project_images(ROOT / "docker-compose.yml")
    _fresh_host.append("done")
    if stale:
        print(f"removed images an earlier run built, as on a fresh host: {', '.join(stale)}")
    abandoned = remove_abandoned_projects()
    if abandoned:
        print(f"removed what killed earlier runs left on the engine: {', '.join(abandoned)}")
    holder = port_holder(GRACE_PORT)
    if holder:
        pytest.fail(
            f"127.0.0.1:{GRACE_PORT} is taken, and the guide publishes Grace there: {holder}"
        )
    project = project_name(uuid.uuid4().hex[:8])
    events = EventLog(project, workdir.parent / "docker-events.jsonl")
    guide = GuideHost(workdir=workdir, project=project, events=events, compose=compose)
    try:
        yield guide
    finally:
        failed = (str(request.path), compose.flavour) in _failed
        if failed or os.environ.get("MADGROUP_E2E_LOGS"):
            logs = guide.sh("docker-compose ps; docker-compose logs --no-color", check=False)
            print(logs.output[-20000:])
        guide.sh("docker-compose down --volumes --remove-orphans", check=False, timeout=300)
        events.close()

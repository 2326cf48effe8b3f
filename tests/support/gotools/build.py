"""Build the tests' Go programs from their pinned modules, once per version.

Each tool's programs land in ``<cache>/<name>-<version>-<key>/``, where the key hashes
what decides the result (go.mod, go.sum, the link flags, the Go version). A second run
finds them there and builds nothing. A build goes to a temporary folder renamed into place
when complete, under a lock, so an interrupted or concurrent build never leaves half a tool.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.support.gotools.tools import ALL_TOOLS, Tool


class BuildError(RuntimeError):
    """A tool could not be built; the message names it and ends with go's own words."""


def cache_root() -> Path:
    base = os.environ.get("MADGROUP_KUBE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "madgroup" / "go-tools"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the test cluster is built from Go modules, and `go` is not on PATH "
            "(Debian: apt-get install golang, or a Go 1.26 toolchain)"
        )
    return go


def _go_version(go: str) -> str:
    return subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _key(tool: Tool, go_version: str) -> str:
    digest = hashlib.sha256()
    for part in (
        (tool.module / "go.mod").read_bytes(),
        (tool.module / "go.sum").read_bytes(),
        "\n".join(tool.packages).encode(),
        "\n".join(tool.ldflags).encode(),
        "\n".join((*tool.tags, f"cgo={tool.cgo}")).encode(),
        go_version.encode(),
    ):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Outcome:
    tool: str
    version: str
    programs: list[str]
    built: bool  # False: taken from the cache
    seconds: float
    directory: str


def _say(line: str) -> None:
    print(f"go tools: {line}", file=sys.stderr, flush=True)


def _build(tool: Tool, go: str, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {
        **os.environ,
        "CGO_ENABLED": "1" if tool.cgo else "0",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly",
    }
    if tool.cgo and shutil.which("cc") is None:
        raise BuildError(f"{tool.name} needs cgo, and there is no C compiler (Debian: gcc)")
    if tool.packages:
        _go_build(tool, go, env, partial)
    if tool.data is not None:
        _copy_data(tool, go, env, partial / "data")
    partial.rename(target)


def _go_build(tool: Tool, go: str, env: dict[str, str], into: Path) -> None:
    """Each program with ``-o`` naming it (go would name etcd's ``server``); the build
    cache shares the compiled packages between them."""
    for package, program in zip(tool.packages, tool.programs, strict=True):
        command = [
            go,
            "build",
            "-trimpath",
            *(["-tags", ",".join(tool.tags)] if tool.tags else []),
            "-ldflags",
            " ".join(("-s", "-w", *tool.ldflags)),
            "-o",
            str(into / program),
            package,
        ]
        result = subprocess.run(
            command, cwd=tool.module, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or not (into / program).is_file():
            shutil.rmtree(into, ignore_errors=True)
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise BuildError(f"building {program} ({tool.name} {tool.version}) failed:\n{tail}")


def _copy_data(tool: Tool, go: str, env: dict[str, str], into: Path) -> None:
    """The YAML files of the named folders of a dependency, downloaded (and checked
    against our go.sum) into the module cache."""
    assert tool.data is not None
    module, folders = tool.data
    result = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=tool.module,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        source = Path(json.loads(result.stdout)["Dir"])
    except (ValueError, KeyError):
        raise BuildError(
            f"downloading {module} for {tool.name} failed: {result.stderr.strip()[-500:]}"
        ) from None
    into.mkdir()
    for folder in folders:
        for path in sorted((source / folder).glob("*.yaml")):
            if path.name != "kustomization.yaml":
                shutil.copyfile(path, into / path.name)


def ensure(tools: Iterable[Tool] = ALL_TOOLS) -> list[Outcome]:
    """Every tool's programs, built when the cache lacks them. Says what it does."""
    go = _go()
    go_version = _go_version(go)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for tool in tools:
            target = root / f"{tool.name}-{tool.version}-{_key(tool, go_version)}"
            started = time.monotonic()
            if target.is_dir():
                outcomes.append(
                    Outcome(tool.name, tool.version, list(tool.programs), False, 0.0, str(target))
                )
                _say(f"{tool.name} {tool.version}: cached in {target} (nothing to build)")
                continue
            what = ", ".join(tool.programs) or "nothing (data only)"
            _say(
                f"{tool.name} {tool.version}: building {what} from Go modules with "
                f"{go_version}{tool.cold_note}"
            )
            _build(tool, go, target)
            seconds = time.monotonic() - started
            _say(f"{tool.name} {tool.version}: built in {seconds:.0f} s into {target}")
            outcomes.append(
                Outcome(tool.name, tool.version, list(tool.programs), True, seconds, str(target))
            )
    (root / "last-ensure.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    return outcomes


def last_ensure() -> list[Outcome]:
    """What the last :func:`ensure` did (for a run's summary), or nothing."""
    try:
        data = json.loads((cache_root() / "last-ensure.json").read_text())
    except (OSError, ValueError):
        return []
    return [Outcome(**item) for item in data]


def binaries(tools: Iterable[Tool] = ALL_TOOLS) -> dict[str, Path]:
    """Program name -> path, for tools already built; raises naming what is missing."""
    go = _go()
    go_version = _go_version(go)
    root = cache_root()
    found: dict[str, Path] = {}
    for tool in tools:
        target = root / f"{tool.name}-{tool.version}-{_key(tool, go_version)}"
        if not target.is_dir():
            raise BuildError(
                f"{tool.name} {tool.version} is not built: run `.venv/bin/python -m "
                "tests.support.gotools build` (scripts/test does it before the suite)"
            )
        for program in tool.programs:
            found[program] = target / program
    return found

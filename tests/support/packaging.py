"""Fixtures for the packaging and compose tests: the repository's paths, the validators they
run and a reader for the committed ``docker-compose.yml`` that interpolates variables as
compose does. A folder's conftest takes them with ``from tests.support.packaging import ...``."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gotools import build
from tests.support.gotools.tools import tool
from tests.support.mad_process import REPO

ROOT = REPO


def _find_tool(name: str, *extra: Path) -> str | None:
    """A tool from the project's virtualenv, the places given, or $PATH."""
    for candidate in (Path(sys.executable).parent / name, *extra):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def dev_tool() -> Callable[[str], str]:
    """A validator installed with the project's dev extras: missing means a broken setup,
    so the test fails instead of skipping."""

    def find(name: str) -> str:
        path = _find_tool(name)
        if path is None:
            pytest.fail(f"{name} not found: install the dev extras (scripts/bootstrap)")
        return path

    return find


@pytest.fixture(scope="session")
def helm() -> str:
    """helm as the Kubernetes end-to-end tests install the chart with: built from its Go
    module (tests/support/gotools; scripts/test builds it before the suite)."""
    try:
        return str(build.binaries([tool("helm")])["helm"])
    except build.BuildError as exc:
        pytest.skip(f"no helm for the chart tests: {exc}")


@pytest.fixture(scope="session")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="session")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class InterpolationError(ValueError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-spec interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if missing else value
        if op in (":?", "?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return value
        return value or ""

    return _VARIABLE.sub(one, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


@pytest.fixture(scope="session")
def interpolated() -> Callable[[Any, Mapping[str, str]], Any]:
    """Interpolate a parsed compose document (or any part of it) with an environment."""
    return interpolate_tree

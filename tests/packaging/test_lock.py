"""The lock files in requirements/ agree with pyproject.toml and with each other.

``scripts/lock`` writes them; the images install them with ``--require-hashes`` and CI
installs ``requirements/dev.txt`` the same way. These checks fail while a dependency in
pyproject.toml has no satisfying pin, a pin is missing a dependency of a locked package,
a pin lacks a hash, or two locks disagree on a version.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PROJECT = "madgroup"
# Which extras of the project each lock holds.
EXTRAS = {"mads": set(), "operator": {"operator"}, "dev": {"operator", "dev"}}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None
    hashes: tuple[str, ...]

    def applies(self) -> bool:
        return self.marker is None or Requirement(f"x ; {self.marker}").marker.evaluate()


def read_lock(path: Path) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+?)(?:\s*;\s*([^-][^#]*?))?\s+(--hash.*)?$", line)
        if not m:
            assert not line.strip() or line.lstrip().startswith("#"), f"{path.name}: {line!r}"
            continue
        name, version, marker, hashes = m.groups()
        pins[canonicalize_name(name)] = Pin(
            canonicalize_name(name),
            version,
            marker.strip() if marker else None,
            tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", hashes or "")),
        )
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def top_level(extras: set[str]) -> list[Requirement]:
    """The project's requirements with ``extras``, self-references expanded."""
    optional = project().get("optional-dependencies", {})
    wanted = list(project()["dependencies"])
    for extra in sorted(extras):
        wanted += optional[extra]
    return [r for r in map(Requirement, wanted) if canonicalize_name(r.name) != PROJECT]


def closure(roots: list[Requirement]) -> dict[str, set[str]]:
    """Every distribution the roots need in this environment, with the extras asked of it,
    read from the installed metadata (CI's .venv holds exactly requirements/dev.txt)."""
    needed: dict[str, set[str]] = {}
    todo = [(canonicalize_name(r.name), set(r.extras)) for r in roots if applies(r, {""})]
    while todo:
        name, extras = todo.pop()
        if name in needed and extras <= needed[name]:
            continue
        asked = needed.setdefault(name, set())
        asked |= extras
        for text in importlib.metadata.requires(name) or []:
            dep = Requirement(text)
            if applies(dep, asked | {""}):
                todo.append((canonicalize_name(dep.name), set(dep.extras)))
    return needed


def applies(req: Requirement, extras: set[str]) -> bool:
    environment = default_environment()
    return req.marker is None or any(
        req.marker.evaluate({**environment, "extra": extra}) for extra in extras
    )


@pytest.fixture(scope="module", params=sorted(EXTRAS))
def lock(request: pytest.FixtureRequest) -> tuple[str, dict[str, Pin]]:
    return request.param, read_lock(LOCKS / f"{request.param}.txt")


def test_every_pin_has_hashes(lock: tuple[str, dict[str, Pin]]) -> None:
    name, pins = lock
    assert pins, f"{name}.txt pins nothing"
    assert [p.name for p in pins.values() if not p.hashes] == []


def test_pyproject_requirements_are_satisfied_by_the_lock(
    lock: tuple[str, dict[str, Pin]],
) -> None:
    name, pins = lock
    for req in top_level(EXTRAS[name]):
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req} (pyproject.toml) is not in requirements/{name}.txt"
        assert req.specifier.contains(pin.version, prereleases=True), (
            f"requirements/{name}.txt pins {pin.name}=={pin.version}, pyproject.toml asks {req}"
        )


def test_the_lock_holds_exactly_what_the_project_needs(
    lock: tuple[str, dict[str, Pin]],
) -> None:
    name, pins = lock
    needed = closure(top_level(EXTRAS[name]))
    applicable = {n for n, p in pins.items() if p.applies()}
    assert sorted(set(needed) - set(pins)) == [], f"needed but not in {name}.txt"
    assert sorted(applicable - set(needed)) == [], f"in {name}.txt but needed by nothing"


def test_the_locks_agree_on_every_version() -> None:
    locks = {name: read_lock(LOCKS / f"{name}.txt") for name in EXTRAS}
    for name, pins in locks.items():
        for other, other_pins in locks.items():
            for pkg in set(pins) & set(other_pins):
                assert pins[pkg].version == other_pins[pkg].version, (name, other, pkg)


def test_this_environment_is_the_dev_lock() -> None:
    """CI and scripts/bootstrap install requirements/dev.txt with --require-hashes."""
    pins = read_lock(LOCKS / "dev.txt")
    for pin in pins.values():
        if pin.applies():
            assert importlib.metadata.version(pin.name) == pin.version, pin.name


def test_mad_images_do_not_get_the_operator_libraries() -> None:
    mads = read_lock(LOCKS / "mads.txt")
    for library in ("kopf", "kubernetes"):
        assert library not in mads
        assert library in read_lock(LOCKS / "operator.txt")

"""Which compose ``madgroup report|backup|restore --compose`` runs: the guide's
``docker-compose`` when installed, else the Docker CLI's plugin (``docker compose``), else
one line naming both. Programs here are small scripts on a ``PATH`` of the test's own that
log how they were called; the real ones run in tests/e2e/compose (both passes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from madgroup.compose.operations import Compose, compose_program
from madgroup.errors import CommandError

PS_SERVICES = "redis\nfiedler\n"


def program(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> {folder}/calls\n{body}\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    return tmp_path


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_the_guides_docker_compose_first(bin_dir: Path, project: Path) -> None:
    standalone = program(bin_dir, "docker-compose", f"printf '{PS_SERVICES}'")
    program(bin_dir, "docker", "exit 0")
    assert compose_program() == [str(standalone)]
    compose = Compose(project)
    assert compose.spelling == "docker-compose"
    assert compose.running() == ["redis", "fiedler"]
    calls = (bin_dir / "calls").read_text().splitlines()
    assert calls == [f"{standalone} ps --services --filter status=running"]


def test_the_docker_plugin_without_docker_compose(bin_dir: Path, project: Path) -> None:
    docker = program(bin_dir, "docker", f"printf '{PS_SERVICES}'")
    assert compose_program() == [str(docker), "compose"]
    compose = Compose(project)
    assert compose.spelling == "docker compose"
    assert compose.running() == ["redis", "fiedler"]
    calls = (bin_dir / "calls").read_text().splitlines()
    assert calls[-1] == f"{docker} compose ps --services --filter status=running"


def test_a_failing_command_is_named_as_typed(bin_dir: Path, project: Path) -> None:
    program(bin_dir, "docker", "echo 'no such service: fiedler' >&2; exit 1")
    with pytest.raises(CommandError, match=r"^docker compose exec -T fiedler: no such service"):
        Compose(project, [str(bin_dir / "docker"), "compose"]).exec("fiedler", ["true"])


def test_neither_says_so_in_one_line(bin_dir: Path, project: Path) -> None:
    program(bin_dir, "docker", "echo \"docker: 'compose' is not a docker command.\" >&2; exit 1")
    with pytest.raises(CommandError) as refused:
        Compose(project)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("neither docker-compose nor the docker compose plugin")

"""The group is data: a sixth MAD installed as a package of its own with an entry point (the
toy of tests/support/toy_mad.py) is in the topology, the compose rendering, the CRD and the
Kubernetes objects, and the local runner's group, with no change in the control plane. Each
check runs where the toy is installed (a fresh interpreter, or the real ``madgroup``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.local_group import Group
from tests.support.mad_process import REPO
from tests.support.toy_mad import NAME as TOY
from tests.support.toy_mad import TOOL, installed

MADGROUP = str(Path(sys.executable).parent / "madgroup")
FIVE = ["redis", "sequential_thinking", "grace", "rogers", "fiedler"]


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return installed(tmp_path_factory.mktemp("site"))


def where_installed(code: str, env: dict[str, str]) -> Any:
    """Run ``code`` (which prints JSON) in an interpreter that has the toy installed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_control_plane_names_no_such_mad() -> None:
    named = [
        str(path.relative_to(REPO))
        for path in (REPO / "operator" / "madgroup").rglob("*.py")
        if re.search(rf"\b{TOY}\b", path.read_text(), re.IGNORECASE)
    ]
    assert named == []


def test_it_joins_the_topology_after_the_five_in_the_guides_order(
    toy_env: dict[str, str],
) -> None:
    found = where_installed(
        "import json\n"
        "from madgroup import topology\n"
        f"toy = topology.component({TOY!r})\n"
        "print(json.dumps({'names': topology.COMPONENT_NAMES, 'users': topology.bus_users(),"
        " 'guide': topology.gates(toy), 'graph': topology.gates(toy, 'graph')}))",
        toy_env,
    )
    assert found["names"] == [*FIVE, TOY]
    assert found["guide"] == ["redis", "fiedler"]  # after the one before it, as the guide goes
    assert found["graph"] == ["redis"]  # it talks to the bus only
    assert TOY in found["users"]


def test_it_is_a_compose_service(toy_env: dict[str, str], tmp_path: Path) -> None:
    subprocess.run(
        [MADGROUP, "render", "compose", "--root", str(tmp_path)],
        env={**os.environ, **toy_env},
        capture_output=True,
        check=True,
        timeout=60,
    )
    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    service = compose["services"][TOY]
    assert service["command"] == ["mad-run", TOY]
    env = service["environment"]
    assert (env["MAD_NAME"], env["MAD_PORT"], env["REDIS_USERNAME"]) == (TOY, "8009", TOY)
    assert env["REDIS_PASSWORD"] == ""  # its own bus password, from the credentials' file
    assert env["REDIS_PASSWORD_FILE"] == "/run/madgroup/bus_password"
    assert set(service["depends_on"]) == {"redis", "fiedler"}
    assert f"{TOY}_credentials:/run/madgroup/{TOY}" in compose["services"]["bus_users"]["volumes"]


def test_it_is_in_the_crd_and_gets_its_objects(toy_env: dict[str, str]) -> None:
    found = where_installed(
        "import json\n"
        "from madgroup.kube import crd, objects\n"
        "from madgroup.resolved import resolve\n"
        "schema = crd.crd_manifest()['spec']['versions'][0]['schema']['openAPIV3Schema']\n"
        "spec = crd.parse({'toy': {'replicas': 2}})\n"
        "owner = objects.Owner('demo', 'team-a', 'uid')\n"
        "made = objects.component_objects(owner, spec, resolve(spec).of('toy'))\n"
        "print(json.dumps({'field': schema['properties']['spec']['properties']['toy'],"
        " 'objects': made, 'secrets': [s.name for s in objects.generated_secrets(owner, spec)]}))",
        toy_env,
    )
    assert {"image", "replicas", "resources", "busPasswordSecretRef"} <= set(
        found["field"]["properties"]
    )
    kinds = {m["kind"]: m for m in found["objects"]}
    assert {"Service", "Deployment", "PodDisruptionBudget"} <= set(kinds)
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_USERNAME"]["value"] == TOY
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "demo-toy-bus"
    assert "demo-toy-bus" in found["secrets"]


def test_the_local_runner_brings_it_up(toy_env: dict[str, str], tmp_path: Path) -> None:
    group = Group(tmp_path / "project", env={**toy_env, "MAD_HEARTBEAT_S": "0.5"})
    try:
        group.mg("init")
        assert "TOY_BUS_PASSWORD=" in (group.root / ".env").read_text()
        group.up()
        assert group.state()["components"][TOY]["phase"] == "ready"
        status = group.mg("exec", TOY, "mad-status")
        assert "[ToyV1 Status]" in status.stdout and "- Status: HEALTHY" in status.stdout
        echoed = group.mg("exec", TOY, "mad-cli", TOOL, '{"text": "hello"}')
        assert json.loads(echoed.stdout) == {"text": "hello"}
    finally:
        group.cleanup()

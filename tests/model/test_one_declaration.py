"""One MadGroup file, every substrate: the committed sample brought up locally (``up -f``,
then the guide's smoke checks), rendered for compose (the committed rendering, byte for
byte) and rolled out on the API-server emulator (Ready=True); a change of Fiedler's LLM
in the file changes Fiedler's environment the same way on all three, and its key is never
in what any of them writes; an invalid file gets the same one line everywhere."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from madgroup.compose.render import render_files
from madgroup.kube import crd, objects
from madgroup.resolved import resolve
from madgroup.spec import InvalidSpecError, read_document
from pydantic import BaseModel

from tests.support.kube import (
    Apiserver,
    Operator,
    condition,
    create_group,
    has_condition,
    roll_out,
)
from tests.support.local_group import Group
from tests.support.sample import SAMPLE, sample_with
from tests.support.waiting import async_wait_for

REPO = Path(__file__).resolve().parents[2]
LLM_KEY_VARIABLE = "OPENAI_KEY"


def test_the_sample_runs_locally_and_passes_the_guides_checks(tmp_path: Path) -> None:
    local = Group(tmp_path / "project", env={"MAD_HEARTBEAT_S": "0.5"})
    local.mg("init")
    try:
        local.up("-f", str(SAMPLE))
        smoke = local.mg("smoke")
        assert "smoke: all 8 steps of the guide passed" in smoke.stdout
    finally:
        local.cleanup()


def test_the_sample_renders_the_committed_compose_file() -> None:
    files = render_files(read_document(SAMPLE))
    assert files["docker-compose.yml"] == (REPO / "docker-compose.yml").read_text()


async def test_the_sample_rolls_out_to_ready_on_the_emulator(
    apiserver: Apiserver, operator: Operator
) -> None:
    raw = yaml.safe_load(SAMPLE.read_text())
    await create_group(apiserver, "sample", raw["spec"])
    await roll_out(apiserver, "sample")  # the kubelet's part, played by the test
    assert condition(apiserver, "sample", "Ready")["reason"] == "AllComponentsReady"


def llm_spec() -> dict[str, Any]:
    return {
        "fiedler": {
            "llm": {
                "provider": "openai",
                "baseUrl": "http://llm.example:11434/v1",
                "model": "llama3.1",
                "apiKeySecretRef": {"name": "llm", "key": LLM_KEY_VARIABLE},
            }
        }
    }


EXPECTED = {
    "FIEDLER_LLM_PROVIDER": "openai",
    "FIEDLER_LLM_BASE_URL": "http://llm.example:11434/v1",
    "FIEDLER_LLM_MODEL": "llama3.1",
}


def test_the_llm_declared_once_reaches_fiedler_on_every_substrate(tmp_path: Path) -> None:
    path = sample_with(tmp_path, llm_spec())
    api_key = "sk-" + secrets.token_urlsafe(24)

    # compose: the values, and the key by reference to .env
    compose = render_files(read_document(path))["docker-compose.yml"]
    env = yaml.safe_load(compose)["services"]["fiedler"]["environment"]
    assert {k: env[k] for k in EXPECTED} == EXPECTED
    assert env["FIEDLER_LLM_API_KEY"].startswith(f"${{{LLM_KEY_VARIABLE}:?")
    assert "FIEDLER_LLM_PROVIDER" not in yaml.safe_load(compose)["services"]["grace"].get(
        "environment", {}
    )

    # Kubernetes: the values, and the key from the Secret it names
    declared = crd.parse(read_document(path).raw_spec)
    owner = objects.Owner("demo", "default", "uid")
    fiedler = resolve(declared).of("fiedler")
    kube_env = {e["name"]: e for e in objects.environment(owner, declared, fiedler)}
    assert {k: kube_env[k]["value"] for k in EXPECTED} == EXPECTED
    assert kube_env["FIEDLER_LLM_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "llm", "key": LLM_KEY_VARIABLE}
    }

    # local: the values, and the key read from .env by name
    local = Group(tmp_path / "project", env={"MAD_HEARTBEAT_S": "0.5"})
    local.mg("init")
    local.write_env(f"{LLM_KEY_VARIABLE}={api_key}\n")
    try:
        local.up("-f", str(path), "redis", "sequential_thinking", "fiedler")
        environ = Path(f"/proc/{local.pid('fiedler')}/environ").read_bytes().split(b"\0")
        seen = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        assert {k: seen[k] for k in EXPECTED} == EXPECTED
        assert seen["FIEDLER_LLM_API_KEY"] == api_key
        status = local.mg("exec", "fiedler", "mad-status", check=False)
        written = [
            compose,
            yaml.safe_dump(objects.component_objects(owner, declared, fiedler)),
            status.stdout + status.stderr,
            local.mg("status").stdout,
            (local.state_dir / "state.json").read_text(),
            (local.state_dir / "declaration.json").read_text(),
            *(p.read_text(errors="replace") for p in (local.state_dir / "logs").glob("*.log")),
            (local.state_dir / "events.log").read_text(),
        ]
        assert not [text for text in written if api_key in text], "the API key leaked"
    finally:
        local.cleanup()


INVALID = [
    ({"grace": {"replicas": 0}}, "spec.grace.replicas: should be greater than or equal to 1"),
    ({"fiedler": {"colour": "blue"}}, 'unknown field "spec.fiedler.colour"'),
    (
        {"fiedler": {"replicas": 2}},
        "spec.fiedler.replicas: more than one replica needs store.type postgresql (the "
        "SQLite store has one writer, so Fiedler runs one replica on it)",
    ),
    ({"rogers": {"replicas": 2}}, "spec.rogers.replicas: should be less than or equal to 1"),
    (
        {"fiedler": {"store": {"type": "postgresql"}}},
        "spec.fiedler.store: type postgresql needs uriSecretRef",
    ),
    (
        {"grace": {"oauth": {"staticTokens": False}}},
        "spec.grace.oauth: staticTokens: false needs an issuer (or nobody gets in)",
    ),
]


@pytest.mark.parametrize(("bad", "message"), INVALID)
async def test_an_invalid_file_gets_the_same_line_everywhere(
    tmp_path: Path, apiserver: Apiserver, operator: Operator, bad: dict[str, Any], message: str
) -> None:
    path = sample_with(tmp_path, bad)
    local = Group(tmp_path / "project")
    local.mg("init")
    up = local.up("-f", str(path), check=False)
    render = local.mg("render", "compose", "-f", str(path), "--stdout", check=False)
    assert (up.returncode, render.returncode) == (2, 2)
    assert up.stderr == render.stderr == f"madgroup: {message}\n"

    await create_group(apiserver, "invalid", yaml.safe_load(path.read_text())["spec"])
    await async_wait_for(
        has_condition(apiserver, "invalid", "Stalled", "True", "InvalidSpec"),
        what="the operator's Stalled condition",
    )
    assert condition(apiserver, "invalid", "Stalled")["message"] == message
    with pytest.raises(InvalidSpecError):
        crd.parse(yaml.safe_load(path.read_text())["spec"])


def kube_only_fields() -> set[str]:
    """The fields kube/crd.py adds to the neutral model, at any depth."""
    from madgroup import spec

    def fields(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
        out: dict[str, type[BaseModel] | None] = {}
        for name, info in model.model_fields.items():
            inner = info.annotation
            nested = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
            out[name] = nested
        return out

    def added(kube: type[BaseModel], neutral: type[BaseModel] | None) -> set[str]:
        found = set()
        ours = fields(neutral) if neutral is not None else {}
        for name, nested in fields(kube).items():
            if name not in ours:
                found.add(name)
            elif nested is not None:
                found |= added(nested, ours[name])
        return found

    return added(crd.KubeMadGroupSpec, spec.MadGroupSpec)


def test_kubernetes_only_fields_are_refused_elsewhere_by_name(tmp_path: Path) -> None:
    from madgroup.spec import KUBERNETES_ONLY

    assert kube_only_fields() == KUBERNETES_ONLY
    path = sample_with(
        tmp_path, {"grace": {"serviceType": "LoadBalancer"}, "image": {"pullPolicy": "Always"}}
    )
    local = Group(tmp_path / "project")
    local.mg("init")
    up = local.up("-f", str(path), check=False)
    render = local.mg("render", "compose", "-f", str(path), "--stdout", check=False)
    expected = (
        "madgroup: spec.image.pullPolicy: only Kubernetes honours it; remove it for docker "
        "compose and the local runner; spec.grace.serviceType: only Kubernetes honours it; "
        "remove it for docker compose and the local runner\n"
    )
    assert (up.returncode, render.returncode) == (2, 2)
    assert up.stderr == render.stderr == expected
    assert not (local.state_dir / "state.json").exists()
    # Kubernetes takes them.
    declared = crd.parse(read_document(path).raw_spec)
    assert declared.grace.serviceType == "LoadBalancer"


PLACEMENT_AND_SCALING = {
    "sequentialThinking": {
        "resources": {"requests": {"cpu": "100m"}},
        "autoscaling": {"maxReplicas": 4},
    },
    "grace": {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "disruptionBudget": {"maxUnavailable": 1},
    },
    "rogers": {
        "nodeSelector": {"disktype": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "priorityClassName": "mad",
    },
    "fiedler": {"affinity": {"nodeAffinity": {}}},
}


def test_placement_budgets_and_autoscaling_are_refused_elsewhere_in_one_line(
    tmp_path: Path,
) -> None:
    """One host has no nodes to choose, no drains to budget and nothing to scale out to."""
    path = sample_with(tmp_path, PLACEMENT_AND_SCALING)
    local = Group(tmp_path / "project")
    local.mg("init")
    up = local.up("-f", str(path), check=False)
    render = local.mg("render", "compose", "-f", str(path), "--stdout", check=False)
    assert (up.returncode, render.returncode) == (2, 2)
    assert up.stderr == render.stderr
    (line,) = up.stderr.splitlines()
    refused = [
        "spec.sequentialThinking.resources",
        "spec.sequentialThinking.autoscaling",
        "spec.grace.topologySpreadConstraints",
        "spec.grace.disruptionBudget",
        "spec.rogers.nodeSelector",
        "spec.rogers.tolerations",
        "spec.rogers.priorityClassName",
        "spec.fiedler.affinity",
    ]
    assert line.startswith("madgroup: ")
    why = "only Kubernetes honours it; remove it for docker compose and the local runner"
    assert sorted(re.split(r"; (?=spec\.)", line.removeprefix("madgroup: "))) == sorted(
        f"{field}: {why}" for field in refused
    )
    assert not (local.state_dir / "state.json").exists()
    # Kubernetes takes them.
    declared = crd.parse(read_document(path).raw_spec)
    assert declared.rogers.priorityClassName == "mad"  # type: ignore[attr-defined]


def test_a_secret_missing_from_env_stops_up_before_anything_starts(tmp_path: Path) -> None:
    path = sample_with(tmp_path, llm_spec())
    local = Group(tmp_path / "project")
    local.mg("init")
    up = local.up("-f", str(path), check=False)
    assert up.returncode == 2
    assert up.stderr == (
        f"madgroup: {LLM_KEY_VARIABLE} is not set in .env (spec.fiedler.llm.apiKeySecretRef, "
        "for FIEDLER_LLM_API_KEY); nothing was started\n"
    )
    assert not (local.state_dir / "state.json").exists()


async def test_the_tokens_declared_once_reach_grace_on_every_substrate(tmp_path: Path) -> None:
    """Named, scoped tokens in the declaration (hashes only) become Grace's tokens file on
    every substrate; locally Grace then refuses the scoped token out of its scope."""
    from mads.grace import tokens as grace_tokens
    from tests.support.tool_calls import ToolCallClient

    token = secrets.token_urlsafe(24)
    entry = {
        "name": "status-only",
        "sha256": grace_tokens.digest(token),
        "scopes": {"tools": ["fiedler_get_task_status"]},
        "limits": {"requests_per_second": 5},
    }
    path = sample_with(tmp_path, {"grace": {"tokens": [entry]}})

    def principals(text: str) -> dict[str, grace_tokens.Principal]:
        written = tmp_path / "tokens.json"
        written.write_text(text)
        return grace_tokens.load_file(written)

    expected = {entry["sha256"]: principals(json.dumps({"tokens": [entry]}))[entry["sha256"]]}

    # compose: a rendered file, mounted read-only, named by GRACE_TOKENS_FILE
    files = render_files(read_document(path))
    grace = yaml.safe_load(files["docker-compose.yml"])["services"]["grace"]
    assert grace["environment"]["GRACE_TOKENS_FILE"] == "/run/madgroup-files/GRACE_TOKENS_FILE"
    mount = "./madgroup-files/grace/GRACE_TOKENS_FILE:/run/madgroup-files/GRACE_TOKENS_FILE:ro"
    assert mount in grace["volumes"]
    assert principals(files["madgroup-files/grace/GRACE_TOKENS_FILE"]) == expected

    # Kubernetes: a ConfigMap, mounted, and a template digest so a change rolls Grace
    declared = crd.parse(read_document(path).raw_spec)
    owner = objects.Owner("demo", "default", "uid")
    children = {
        m["kind"]: m
        for m in objects.component_objects(owner, declared, resolve(declared).of("grace"))
    }
    assert principals(children["ConfigMap"]["data"]["GRACE_TOKENS_FILE"]) == expected
    template = children["Deployment"]["spec"]["template"]
    assert objects.FILES_ANNOTATION in template["metadata"]["annotations"]
    assert {"name": "files", "configMap": {"name": "demo-grace-files"}} in template["spec"][
        "volumes"
    ]

    # local: Grace runs with it and refuses the token outside its scope
    local = Group(tmp_path / "project", env={"MAD_HEARTBEAT_S": "0.5"})
    local.mg("init")
    try:
        local.up("-f", str(path), "grace")
        client = ToolCallClient(f"http://127.0.0.1:{local.port('grace')}/mcp", token=token)
        try:
            done, said = await client.call("fiedler_converse", {"prompt": "x", "requester_id": "t"})
        finally:
            await client.close()
        assert not done and "HTTP 403" in str(said)
        assert "lacks the scope for tool" in str(said)
        written = (local.state_dir / "files" / "grace" / "GRACE_TOKENS_FILE").read_text()
        assert principals(written) == expected and token not in written
    finally:
        local.cleanup()


def test_a_repeated_token_in_the_declaration_is_one_line_everywhere(tmp_path: Path) -> None:
    entry = {"name": "a", "sha256": "0" * 64}
    path = sample_with(tmp_path, {"grace": {"tokens": [entry, {**entry, "sha256": "1" * 64}]}})
    with pytest.raises(InvalidSpecError, match="token name 'a' twice"):
        crd.parse(read_document(path).raw_spec)

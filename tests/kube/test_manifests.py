"""Generated files stay in step with the code, and everything validates against the
Kubernetes schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from madgroup import topology
from madgroup.kube import crd, install, objects
from madgroup.resolved import resolve
from madgroup.spec import InvalidSpecError

ROOT = Path(__file__).resolve().parents[2]
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")


@pytest.mark.parametrize("render", [install.render_crd, install.render_manifests])
def test_committed_manifests_match_the_code(render):
    for rel, text in render().items():
        path = ROOT / rel
        assert path.exists(), f"{rel} is missing (run: madgroup render manifests)"
        assert path.read_text() == text, f"{rel} drifted (run: madgroup render manifests)"


def _walk(node, where="spec"):
    yield where, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{where}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{where}.*")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{where}[]")


def test_the_crd_describes_every_field_and_carries_the_cross_field_rules():
    manifest = crd.crd_manifest()
    version = manifest["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for where, node in _walk(root["properties"][part], part):
            assert node.get("description"), f"{where} has no description"
            # IntOrString is the one structural node without a type.
            typed = "type" in node or node.get("x-kubernetes-int-or-string") is True
            assert typed, f"{where} is not structural"
    llm = root["properties"]["spec"]["properties"]["fiedler"]["properties"]["llm"]
    assert any("baseUrl" in r["rule"] for r in llm["x-kubernetes-validations"])
    # Fiedler's replicas need the shared store: a CEL rule named at replicas, in the words
    # the model's validator uses.
    fiedler = root["properties"]["spec"]["properties"]["fiedler"]
    (one_writer,) = fiedler["x-kubernetes-validations"]
    assert one_writer["fieldPath"] == ".replicas"
    assert one_writer["message"].startswith("more than one replica needs store.type postgresql")
    store = fiedler["properties"]["store"]
    assert {r["message"] for r in store["x-kubernetes-validations"]} == {
        "type postgresql needs uriSecretRef",
        "uriSecretRef applies only to type postgresql",
    }
    assert store["properties"]["uriSecretRef"]["properties"]["key"]["default"] == "uri"
    assert store["properties"]["uriSecretRef"]["required"] == ["name"]
    # Grace's OAuth: every cross-field rule of the model, and the scope map's values kept
    # (a map of objects, not pruned) with its keys checked.
    grace = root["properties"]["spec"]["properties"]["grace"]
    oauth = grace["properties"]["oauth"]
    assert len(oauth["x-kubernetes-validations"]) == 3
    assert len(oauth["properties"]["introspection"]["x-kubernetes-validations"]) == 2
    assert len(grace["x-kubernetes-validations"]) == 1
    scopes = oauth["properties"]["scopes"]["properties"]["scopes"]
    assert scopes["additionalProperties"]["properties"]["tools"]["type"] == "array"
    assert "k.matches(" in scopes["x-kubernetes-validations"][0]["rule"]
    assert manifest["metadata"]["name"] == "madgroups.madgroup.io"
    assert manifest["spec"]["names"]["shortNames"] == ["mg"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "Reason", "Age"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"fiedler": {"replicas": 2}},
            "spec.fiedler.replicas: more than one replica needs store.type postgresql",
        ),
        (
            {"fiedler": {"store": {"type": "postgresql"}}},
            "spec.fiedler.store: type postgresql needs uriSecretRef",
        ),
        (
            {"grace": {"oauth": {"staticTokens": False}}},
            "spec.grace.oauth: staticTokens: false needs an issuer",
        ),
        ({"rogers": {"replicas": 2}}, "spec.rogers.replicas"),
        ({"fiedler": {"llm": {"provider": "openai"}}}, "provider openai needs baseUrl and model"),
        ({"grace": {"resources": {"limits": {"gpu": "1"}}}}, "limits.gpu: unknown resource"),
        ({"grace": {"resources": {"limits": {"cpu": "lots"}}}}, "limits.cpu: String should match"),
        ({"grace": {"serviceType": "External"}}, "spec.grace.serviceType"),
        ({"colour": "blue"}, 'unknown field "spec.colour"'),
    ],
)
def test_invalid_specs_get_one_clear_line(raw, message):
    with pytest.raises(InvalidSpecError) as err:
        crd.parse(raw)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _children(raw_spec):
    owner = objects.Owner("demo", "team-a", "0000-1111")
    desired = crd.parse(raw_spec)
    docs = [objects.password_secret(owner)]
    for name in topology.COMPONENT_NAMES:
        docs += objects.component_objects(owner, desired, resolve(desired).of(name))
    return docs


FULL_SPEC = {
    "image": {"repository": "registry.example/mad", "tag": "1.2.3", "pullPolicy": "Always"},
    "redis": {
        "passwordSecretRef": {"name": "bus", "key": "pw"},
        "storage": {"size": "2Gi", "storageClassName": "fast"},
        "nodeSelector": {"disktype": "ssd"},
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "preference": {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": ["a"],
                                }
                            ]
                        },
                    }
                ]
            }
        },
        "priorityClassName": "mad-critical",
        "disruptionBudget": {"minAvailable": 1},
    },
    "sequentialThinking": {
        "replicas": 3,
        "resources": {"requests": {"cpu": "100m"}},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
    },
    "grace": {
        "replicas": 2,
        "serviceType": "LoadBalancer",
        "tokenSecretRef": {"name": "grace-tokens", "key": "tokens"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "disruptionBudget": {"maxUnavailable": "50%"},
    },
    "fiedler": {
        "storage": {"retainOnDelete": False},
        "llm": {
            "provider": "openai",
            "baseUrl": "http://ollama:11434/v1",
            "model": "llama3",
            "apiKeySecretRef": {"name": "llm", "key": "key"},
        },
    },
    "backup": {"schedule": "15 2 * * *", "retention": 14, "claimName": "madgroup-backups"},
}

SHARED_STORE_SPEC = {
    "grace": {
        "oauth": {
            "issuer": "https://id.example.com",
            "resource": "https://grace.example.com/mcp",
            "scopes": {"scopes": {"mad.fiedler": {"tools": ["fiedler_*"]}}},
            "staticTokens": False,
            "introspection": {
                "url": "https://id.example.com/oauth2/introspect",
                "clientId": "grace",
                "clientSecretRef": {"name": "grace-oauth", "key": "client-secret"},
            },
        }
    },
    "fiedler": {"replicas": 3, "store": {"type": "postgresql", "uriSecretRef": {"name": "pg-app"}}},
    "backup": {"schedule": "15 2 * * *", "retention": 14, "claimName": "madgroup-backups"},
}


def test_every_manifest_validates_against_kubernetes_1_33(tmp_path):
    files = sorted((ROOT / "manifests").rglob("*.yaml"))
    for i, raw_spec in enumerate(({}, FULL_SPEC, SHARED_STORE_SPEC)):
        path = tmp_path / f"children-{i}.yaml"
        path.write_text(yaml.safe_dump_all(_children(raw_spec)))
        files.append(path)
    result = subprocess.run(
        [str(VALIDATE), "--strict", "-k", "1.33", "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sample_is_a_valid_spec():
    sample = yaml.safe_load((ROOT / "manifests/samples/madgroup.yaml").read_text())
    crd.parse(sample["spec"])


def test_the_operator_runs_two_replicas_under_a_leader_lease_with_a_liveness_probe():
    deploy = install.deployment()
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-elect" in container["command"]
    lease_role = next(d for d in install.rbac() if d["kind"] == "Role")
    assert lease_role["metadata"]["namespace"] == install.NAMESPACE
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    assert container["image"] == "ghcr.io/madgroup/operator:0.1.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deploy["metadata"]["namespace"] == "madgroup-system"
    rules = install.rbac()[1]["rules"]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)
    secrets = next(r for r in rules if r["resources"] == ["secrets"])
    assert "list" not in secrets["verbs"] and "watch" not in secrets["verbs"]

"""The children rendered from the shared topology: names, env, probes, security."""

from __future__ import annotations

import json

from madgroup import topology
from madgroup.kube import crd, objects
from madgroup.resolved import resolve

OWNER = objects.Owner("demo", "team-a", "0000-1111")


def _pod(name, raw=None):
    desired = crd.parse(raw or {})
    return objects.workload(OWNER, desired, resolve(desired).of(name))["spec"]["template"]["spec"]


def _env(name, raw=None):
    return {e["name"]: e for e in _pod(name, raw)["containers"][0]["env"]}


def test_every_pod_is_locked_down():
    for name in topology.COMPONENT_NAMES:
        pod = _pod(name)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])


def test_stateful_components_are_statefulsets_with_claims():
    desired = crd.parse({})
    kinds = {
        n: objects.workload(OWNER, desired, resolve(desired).of(n))["kind"]
        for n in topology.COMPONENT_NAMES
    }
    assert kinds == {
        "redis": "StatefulSet",
        "sequential_thinking": "Deployment",
        "grace": "Deployment",
        "rogers": "Deployment",
        "fiedler": "StatefulSet",
    }
    sts = objects.workload(OWNER, desired, resolve(desired).of("fiedler"))
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_readiness_is_readyz_and_redis_pings_with_the_password_from_env():
    for name in topology.MAD_NAMES:
        probe = _pod(name)["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["path"] == "/readyz"
    redis = _pod("redis")["containers"][0]
    command = " ".join(redis["readinessProbe"]["exec"]["command"])
    assert 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping' in command
    assert " -a " not in command  # a password in argv shows in ps while the probe runs
    assert _env("redis")["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "demo-redis-password",
        "key": "password",
    }


def test_env_points_at_the_group_services_and_secrets_stay_references():
    env = _env(
        "fiedler",
        {
            "fiedler": {
                "llm": {
                    "provider": "openai",
                    "baseUrl": "http://x/v1",
                    "model": "m",
                    "apiKeySecretRef": {"name": "llm", "key": "k"},
                }
            }
        },
    )
    assert env["REDIS_HOST"]["value"] == "demo-redis"
    assert env["SEQUENTIAL_THINKING_URL"]["value"] == "http://demo-sequential-thinking:8000/mcp"
    assert env["FIEDLER_DB_PATH"]["value"] == "/data/fiedler_state.db"
    assert env["FIEDLER_LLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm", "key": "k"}
    hosts = env["MAD_ALLOWED_HOSTS"]["value"].split(",")
    assert "demo-fiedler" in hosts and "demo-fiedler.team-a.svc.cluster.local" in hosts


def test_the_generated_password_is_random_and_only_in_the_secret():
    first, second = objects.password_secret(OWNER), objects.password_secret(OWNER)
    assert first["data"]["password"] != second["data"]["password"]
    desired = crd.parse({})
    rendered = json.dumps(
        [
            objects.component_objects(OWNER, desired, resolve(desired).of(n))
            for n in topology.COMPONENT_NAMES
        ]
    )
    assert first["data"]["password"] not in rendered


def test_the_network_policy_fences_everything_but_grace():
    policy = objects.network_policy(OWNER)
    selector = policy["spec"]["podSelector"]
    assert selector["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["grace"]}
    ]
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers == [{"podSelector": {"matchLabels": selector["matchLabels"]}}]


def test_children_are_owned_and_labelled():
    desired = crd.parse({})
    for name in topology.COMPONENT_NAMES:
        for obj in objects.component_objects(OWNER, desired, resolve(desired).of(name)):
            meta = obj["metadata"]
            assert meta["ownerReferences"][0]["uid"] == "0000-1111"
            assert meta["ownerReferences"][0]["controller"] is True
            assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "madgroup-operator"
            assert "_" not in meta["name"]


def test_components_that_may_run_replicas_get_a_disruption_budget():
    owner = objects.Owner("demo", "team-a", "0000-1111")
    spec = crd.parse({"grace": {"replicas": 3}})
    for name in topology.COMPONENT_NAMES:
        found = [
            m
            for m in objects.component_objects(owner, spec, resolve(spec).of(name))
            if m["kind"] == "PodDisruptionBudget"
        ]
        if topology.component(name).max_replicas == 1:
            assert found == [], name  # Redis, Rogers, Fiedler run one pod: nothing to budget
            continue
        (budget,) = found
        workload = objects.workload(owner, spec, resolve(spec).of(name))
        assert budget["apiVersion"] == "policy/v1"
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"] == workload["spec"]["selector"]
        assert budget["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
    assert {n for n in topology.COMPONENT_NAMES if topology.component(n).max_replicas != 1} == {
        "sequential_thinking",
        "grace",
    }

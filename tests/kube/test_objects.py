"""The children rendered from the shared topology: names, env, probes, security."""

from __future__ import annotations

import json

import pytest
from madgroup import topology
from madgroup.kube import crd, objects
from madgroup.resolved import resolve
from madgroup.spec import InvalidSpecError

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


def _objects(raw, name):
    desired = crd.parse(raw)
    return {
        m["kind"]: m for m in objects.component_objects(OWNER, desired, resolve(desired).of(name))
    }


def test_declared_placement_is_the_pods_own():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["a"],
                            }
                        ]
                    }
                ]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "redis"}},
                    },
                }
            ]
        },
    }
    toleration = {"key": "dedicated", "operator": "Equal", "value": "mad", "effect": "NoSchedule"}
    spread = {
        "maxSkew": 2,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
    }
    raw = {
        "fiedler": {
            "nodeSelector": {"disktype": "ssd"},
            "affinity": affinity,
            "tolerations": [toleration],
            "topologySpreadConstraints": [spread],
            "priorityClassName": "mad-critical",
        }
    }
    pod = _pod("fiedler", raw)
    assert pod["nodeSelector"] == {"disktype": "ssd"}
    assert pod["affinity"] == affinity
    assert pod["tolerations"] == [toleration]
    assert pod["priorityClassName"] == "mad-critical"
    # A declared constraint without a selector counts the component's own pods.
    assert pod["topologySpreadConstraints"] == [
        {
            **spread,
            "labelSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "madgroup",
                    "app.kubernetes.io/instance": "demo",
                    "app.kubernetes.io/component": "fiedler",
                }
            },
        }
    ]
    # Nothing declared: none of these fields.
    for field in ("nodeSelector", "affinity", "tolerations", "priorityClassName"):
        assert field not in _pod("fiedler"), field


def test_a_component_with_several_pods_spreads_them_over_nodes_by_default():
    hostname = "kubernetes.io/hostname"
    for raw in (
        {"grace": {"replicas": 3}},
        {"grace": {"resources": {"requests": {"cpu": "100m"}}, "autoscaling": {"maxReplicas": 4}}},
    ):
        (constraint,) = _pod("grace", raw)["topologySpreadConstraints"]
        assert constraint["topologyKey"] == hostname
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # a preference only
        assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "grace"
    for name in topology.COMPONENT_NAMES:  # one pod each: nothing to spread
        assert "topologySpreadConstraints" not in _pod(name), name
    off = {"grace": {"replicas": 3, "topologySpreadConstraints": []}}
    assert "topologySpreadConstraints" not in _pod("grace", off)


def test_disruption_budgets_as_declared():
    budget = _objects({"redis": {"disruptionBudget": {"minAvailable": 1}}}, "redis")
    pdb = budget["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"] == budget["StatefulSet"]["spec"]["selector"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    percent = _objects(
        {"grace": {"replicas": 4, "disruptionBudget": {"maxUnavailable": "25%"}}}, "grace"
    )
    assert percent["PodDisruptionBudget"]["spec"]["maxUnavailable"] == "25%"
    off = _objects({"grace": {"disruptionBudget": {"enabled": False}}}, "grace")
    assert "PodDisruptionBudget" not in off
    assert off["Deployment"]["metadata"]["annotations"][objects.COMPANIONS_ANNOTATION] == ""


def test_an_autoscaled_deployment_leaves_its_count_to_its_autoscaler():
    raw = {
        "sequentialThinking": {
            "replicas": 2,
            "resources": {"requests": {"cpu": "250m"}},
            "autoscaling": {
                "minReplicas": 2,
                "maxReplicas": 6,
                "targetCPUUtilizationPercentage": 70,
            },
        }
    }
    made = _objects(raw, "sequential_thinking")
    deployment, hpa = made["Deployment"], made["HorizontalPodAutoscaler"]
    assert "replicas" not in deployment["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == deployment["metadata"]["name"] == "demo-sequential-thinking"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-sequential-thinking",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    annotation = deployment["metadata"]["annotations"][objects.COMPANIONS_ANNOTATION]
    assert annotation == "HorizontalPodAutoscaler,PodDisruptionBudget"
    # Without autoscaling the declared count is the operator's again, and the live
    # workload's record says which companion to delete.
    desired = crd.parse({"sequentialThinking": {"replicas": 2}})
    part = resolve(desired).of("sequential_thinking")
    assert objects.workload(OWNER, desired, part)["spec"]["replicas"] == 2
    assert objects.retired(OWNER, part, deployment) == [
        (
            "HorizontalPodAutoscaler",
            "/apis/autoscaling/v2/namespaces/team-a/horizontalpodautoscalers/"
            "demo-sequential-thinking",
        )
    ]
    assert objects.retired(OWNER, part, objects.workload(OWNER, desired, part)) == []


def test_only_what_may_be_autoscaled_can_be_and_with_a_cpu_request():
    for raw, message in (
        (
            {"rogers": {"autoscaling": {"maxReplicas": 3}}},
            'unknown field "spec.rogers.autoscaling"',
        ),
        (
            {"grace": {"autoscaling": {"maxReplicas": 3}}},
            "autoscaling needs resources.requests.cpu",
        ),
        (
            {
                "grace": {
                    "resources": {"requests": {"cpu": "1"}},
                    "autoscaling": {"minReplicas": 4, "maxReplicas": 3},
                }
            },
            "minReplicas must not exceed maxReplicas",
        ),
        (
            {"redis": {"disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}},
            "set maxUnavailable or minAvailable, not both",
        ),
        ({"redis": {"disruptionBudget": {"maxUnavailable": "half"}}}, "a percentage such as 50%"),
    ):
        with pytest.raises(InvalidSpecError) as err:
            crd.parse(raw)
        assert message in str(err.value)
        assert "\n" not in str(err.value)


def test_the_stateful_mads_are_told_their_volumes_size():
    raw = {"redis": {"storage": {"size": "2Gi"}}, "fiedler": {"storage": {"size": "512Mi"}}}
    assert _env("fiedler", raw)["FIEDLER_VOLUME_BYTES"]["value"] == str(512 * 2**20)
    # Rogers reports the bus's append-only file: it is told the bus's volume.
    assert _env("rogers", raw)["ROGERS_BUS_VOLUME_BYTES"]["value"] == str(2 * 2**30)
    for name in ("sequential_thinking", "grace"):
        assert not any(v.endswith("VOLUME_BYTES") for v in _env(name, raw)), name

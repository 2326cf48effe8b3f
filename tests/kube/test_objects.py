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


def test_components_that_may_run_replicas_get_a_disruption_budget_and_several_pods_spread():
    owner = objects.Owner("demo", "team-a", "0000-1111")
    for raw, budgeted, spreading in (
        ({"grace": {"replicas": 3}}, {"sequential_thinking", "grace"}, {"grace"}),
        (SHARED, {"sequential_thinking", "grace", "fiedler"}, {"fiedler"}),
    ):
        spec = crd.parse(raw)
        group = resolve(spec)
        for name in topology.COMPONENT_NAMES:
            found = [
                m
                for m in objects.component_objects(owner, spec, group.of(name))
                if m["kind"] == "PodDisruptionBudget"
            ]
            workload = objects.workload(owner, spec, group.of(name))
            pod = workload["spec"]["template"]["spec"]
            if name in spreading:  # several pods: spread over nodes
                (spread,) = pod["topologySpreadConstraints"]
                assert spread["topologyKey"] == "kubernetes.io/hostname"
                assert spread["labelSelector"] == workload["spec"]["selector"]
            else:  # one pod: nothing to spread
                assert "topologySpreadConstraints" not in pod, name
            if name not in budgeted:
                # Redis, Rogers, Fiedler on SQLite run one pod: no budget by default
                assert found == [], name
                continue
            (budget,) = found
            assert budget["apiVersion"] == "policy/v1"
            assert budget["spec"]["maxUnavailable"] == 1
            assert budget["spec"]["selector"] == workload["spec"]["selector"]
            assert budget["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"


SHARED = {
    "fiedler": {"replicas": 3, "store": {"type": "postgresql", "uriSecretRef": {"name": "pg-app"}}}
}
"""Fiedler's tasks in a CloudNativePG cluster's database, three replicas."""


def test_fiedler_on_postgresql_is_a_deployment_without_a_volume():
    spec = crd.parse(SHARED)
    part = resolve(spec).of("fiedler")
    deployment = objects.workload(OWNER, spec, part)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in deployment["spec"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {v["name"] for v in pod["volumes"]} == {"tmp"}
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert objects.claim_names(OWNER, part) == []
    env = {e["name"]: e for e in container["env"]}
    assert env["FIEDLER_STORE"] == {"name": "FIEDLER_STORE", "value": "postgresql"}
    # The CloudNativePG app Secret, referenced at its key "uri": never a value.
    assert env["FIEDLER_STORE_URI"] == {
        "name": "FIEDLER_STORE_URI",
        "valueFrom": {"secretKeyRef": {"name": "pg-app", "key": "uri"}},
    }
    assert "FIEDLER_DB_PATH" not in env
    # Back on SQLite, the StatefulSet and its claim as before.
    sqlite = crd.parse({"fiedler": {"store": {"type": "sqlite"}}})
    sts = objects.workload(OWNER, sqlite, resolve(sqlite).of("fiedler"))
    assert sts["kind"] == "StatefulSet"
    assert _env("fiedler")["FIEDLER_DB_PATH"]["value"] == "/data/fiedler_state.db"


def test_a_changed_store_supersedes_the_workload_of_the_other_kind():
    shared = crd.parse(SHARED)
    on_postgres = objects.superseded(OWNER, resolve(shared).of("fiedler"))
    assert on_postgres == ["/apis/apps/v1/namespaces/team-a/statefulsets/demo-fiedler"]
    default = crd.parse({})
    on_sqlite = objects.superseded(OWNER, resolve(default).of("fiedler"))
    assert on_sqlite == [
        "/apis/apps/v1/namespaces/team-a/deployments/demo-fiedler",
        "/apis/policy/v1/namespaces/team-a/poddisruptionbudgets/demo-fiedler",
    ]
    for name in ("redis", "grace", "rogers", "sequential_thinking"):
        assert objects.superseded(OWNER, resolve(shared).of(name)) == []


def test_the_backup_job_keeps_none_of_postgresqls_data_and_says_so():
    backup = {"schedule": "15 2 * * *", "retention": 2, "claimName": "madgroup-backups"}
    spec = crd.parse({**SHARED, "backup": backup})
    (job,) = [
        m
        for m in objects.component_objects(OWNER, spec, resolve(spec).of("fiedler"))
        if m["kind"] == "CronJob"
    ]
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "affinity" not in pod  # no volume of Fiedler's to be beside
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"madgroup-backups"}
    command = pod["containers"][0]["command"]
    assert "--sqlite" not in command
    note = command[command.index("--not-included") + 1]
    assert note.startswith("fiedler=fiedler's data is in PostgreSQL")
    assert "pg_dump" in note and "CloudNativePG" in note


OAUTH = {
    "grace": {
        "oauth": {
            "issuer": "https://id.example.com",
            "resource": "https://grace.example.com/mcp",
            "audience": ["https://grace.example.com/mcp", "grace"],
            "scopes": {
                "scopes": {
                    "mad.fiedler": {"tools": ["fiedler_converse", "fiedler_get_task_status"]},
                    "mad.bus": {"tools": ["grace_*"], "topics": ["mad.topic.*"]},
                },
                "limits": {"requests_per_second": 20},
            },
            "staticTokens": False,
            "introspection": {
                "url": "https://id.example.com/oauth2/introspect",
                "clientId": "grace",
                "clientSecretRef": {"name": "grace-oauth", "key": "client-secret"},
            },
        }
    }
}


def test_graces_oauth_is_rendered_as_env_a_mounted_scopes_file_and_a_secret_reference():
    spec = crd.parse(OAUTH)
    part = resolve(spec).of("grace")
    env = _env("grace", OAUTH)
    assert env["GRACE_OAUTH_ISSUER"]["value"] == "https://id.example.com"
    assert env["GRACE_OAUTH_RESOURCE"]["value"] == "https://grace.example.com/mcp"
    assert env["GRACE_OAUTH_AUDIENCE"]["value"] == "https://grace.example.com/mcp,grace"
    assert env["GRACE_STATIC_TOKENS"]["value"] == "off"
    assert env["GRACE_OAUTH_INTROSPECTION_URL"]["value"].endswith("/oauth2/introspect")
    assert env["GRACE_OAUTH_INTROSPECTION_CLIENT_ID"]["value"] == "grace"
    assert env["GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "grace-oauth",
        "key": "client-secret",
    }
    assert "GRACE_API_TOKENS" not in env
    # The scope map is a file from the component's ConfigMap, exactly what Grace reads.
    path = env["GRACE_OAUTH_SCOPES_FILE"]["value"]
    config_map = objects.files_config_map(OWNER, part)
    assert config_map is not None
    scopes = json.loads(config_map["data"][path.rsplit("/", 1)[-1]])
    assert scopes["scopes"]["mad.bus"] == {"tools": ["grace_*"], "topics": ["mad.topic.*"]}
    assert scopes["limits"] == {"requests_per_second": 20}
    pod = _pod("grace", OAUTH)
    mounted = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert path.rsplit("/", 1)[0] in mounted
    # Without spec.grace.oauth, Grace's environment says nothing of OAuth.
    assert not [n for n in _env("grace") if "OAUTH" in n or n == "GRACE_STATIC_TOKENS"]


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

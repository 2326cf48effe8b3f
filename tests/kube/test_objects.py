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


def test_components_that_may_run_replicas_get_a_disruption_budget_and_spread():
    owner = objects.Owner("demo", "team-a", "0000-1111")
    for raw, spreading in (
        ({"grace": {"replicas": 3}}, {"sequential_thinking", "grace"}),
        (SHARED, {"sequential_thinking", "grace", "fiedler"}),
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
            if name not in spreading:
                # Redis, Rogers, Fiedler on SQLite run one pod: nothing to budget or spread
                assert found == [], name
                assert "topologySpreadConstraints" not in pod, name
                continue
            (budget,) = found
            assert budget["apiVersion"] == "policy/v1"
            assert budget["spec"]["maxUnavailable"] == 1
            assert budget["spec"]["selector"] == workload["spec"]["selector"]
            assert budget["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
            (spread,) = pod["topologySpreadConstraints"]
            assert spread["topologyKey"] == "kubernetes.io/hostname"
            assert spread["labelSelector"] == workload["spec"]["selector"]


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

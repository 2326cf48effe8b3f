"""charts/madgroup-operator: lint-clean, renders objects that validate against Kubernetes
1.33, carries the generated CRD and the operator's RBAC unchanged, and says what to run
next."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from madgroup import topology
from madgroup.kube import crd, install, naming, objects
from madgroup.resolved import resolve

CHART = Path("charts") / "madgroup-operator"
K8S_VERSION = "1.33"
RELEASE = "mg"
NAMESPACE = "madgroup-system"


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def _template(helm: str, root: Path, *args: str) -> list[dict[str, Any]]:
    result = _run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args], cwd=root
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def _validate(tool: str, tmp_path: Path, docs: list[dict[str, Any]]) -> str:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [tool, "--strict", "-k", K8S_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_helm_lint_strict(helm: str, root: Path) -> None:
    for extra in ([], ["--set", "sample.enabled=true", "--set", "networkPolicy.enabled=true"]):
        result = _run([helm, "lint", "--strict", str(CHART), *extra], cwd=root)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_default_render_validates(helm: str, root: Path, dev_tool, tmp_path: Path) -> None:
    docs = _template(helm, root)
    kinds = _by_kind(docs)
    assert set(kinds) == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
    }
    _validate(dev_tool("kubernetes-validate"), tmp_path, docs)


def test_toggles_add_networkpolicy_and_sample(
    helm: str, root: Path, dev_tool, tmp_path: Path
) -> None:
    docs = _template(
        helm, root, "--set", "sample.enabled=true", "--set", "networkPolicy.enabled=true"
    )
    kinds = _by_kind(docs)
    assert len(kinds["NetworkPolicy"]) == 1
    (sample,) = kinds["MadGroup"]
    assert sample["apiVersion"] == "madgroup.io/v1alpha1"
    assert sample["metadata"]["namespace"] == NAMESPACE
    policy = kinds["NetworkPolicy"][0]["spec"]
    (deployment,) = kinds["Deployment"]
    assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    output = _validate(dev_tool("kubernetes-validate"), tmp_path, docs)
    assert "networkpolicy" in output.lower()


def test_kubernetes_validate_rejects_a_broken_object(
    helm: str, root: Path, dev_tool, tmp_path: Path
) -> None:
    docs = _template(helm, root)
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["strategy"]["rollingUpdate"] = "fast"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    tool = dev_tool("kubernetes-validate")
    result = subprocess.run(
        [tool, "--strict", "-k", K8S_VERSION, str(path)], capture_output=True, timeout=300
    )
    assert result.returncode != 0


def test_operator_deployment(helm: str, root: Path) -> None:
    kinds = _by_kind(_template(helm, root))
    (deployment,) = kinds["Deployment"]
    spec = deployment["spec"]
    manifests = install.deployment()["spec"]
    assert spec["replicas"] == manifests["replicas"] == 2
    assert spec["strategy"] == manifests["strategy"]
    (budget,) = kinds["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    pod = spec["template"]["spec"]
    (sa,) = kinds["ServiceAccount"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    (binding,) = kinds["ClusterRoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert binding["roleRef"]["name"] == kinds["ClusterRole"][0]["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["image"] == (
        f"{topology.DEFAULT_IMAGE_REPOSITORY}/operator:{topology.DEFAULT_IMAGE_TAG}"
    )
    # The same command as manifests/: every namespace, the leader Lease, the liveness
    # endpoint the probe asks for.
    assert container["command"] == install.operator_command()
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]]
    assert port == 8080
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_values_schema_rejects_bad_values(helm: str, root: Path) -> None:
    for bad in (["--set", "image.pullPolicy=Sometimes"], ["--set", "replicas=2"]):
        result = _run([helm, "template", RELEASE, str(CHART), *bad], cwd=root)
        assert result.returncode != 0, bad
        assert "schema" in result.stderr, result.stderr


def test_notes_tell_the_next_command(helm: str, root: Path) -> None:
    for extra, expected in (
        ([], "kubectl -n default wait madgroup/madgroup --for=condition=Ready"),
        (["--set", "sample.enabled=true"], f"kubectl -n {NAMESPACE} wait madgroup/madgroup"),
    ):
        result = _run(
            [helm, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", *extra],
            cwd=root,
        )
        assert result.returncode == 0, result.stderr
        notes = result.stdout.split("NOTES:", 1)[1]
        assert expected in notes
        assert f"rollout status deployment/{RELEASE}-madgroup-operator" in notes


def test_chart_version_follows_the_project(root: Path) -> None:
    chart = yaml.safe_load((root / CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == topology.DEFAULT_IMAGE_TAG
    values = yaml.safe_load((root / CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == f"{topology.DEFAULT_IMAGE_REPOSITORY}/operator"
    schema = json.loads((root / CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


# --- agreement with manifests/ (the operator's generated files) --------------------------


def _manifest_crd(root: Path) -> Path:
    crd = root / "manifests" / "crd.yaml"
    if not crd.is_file():
        pytest.fail(
            "manifests/crd.yaml does not exist (generated by `madgroup render crd`): the "
            "chart's crds/ must be a copy of it"
        )
    return crd


def test_chart_crd_is_the_generated_crd(root: Path) -> None:
    crd = _manifest_crd(root)
    copies = sorted((root / CHART / "crds").glob("*.yaml"))
    assert [p.name for p in copies] == ["crd.yaml"], copies
    assert copies[0].read_bytes() == crd.read_bytes(), (
        "charts/madgroup-operator/crds/crd.yaml differs from manifests/crd.yaml: "
        "cp manifests/crd.yaml charts/madgroup-operator/crds/crd.yaml"
    )


def _normalized_rules(rules: list[dict[str, Any]]) -> list[tuple]:
    """Rules as a set of (apiGroup, resource, verb) grants, so order and grouping don't
    matter."""
    grants = set()
    for rule in rules:
        for group in rule.get("apiGroups", [""]):
            for resource in rule.get("resources", []):
                for verb in rule["verbs"]:
                    grants.add((group, resource, verb))
    return sorted(grants)


def _manifest_rules(root: Path) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted((root / "manifests").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("ClusterRole", "Role"):
                rules.extend(doc.get("rules", []))
    if not rules:
        pytest.fail("manifests/ holds no ClusterRole/Role: the chart's RBAC must equal it")
    return rules


def test_chart_rbac_equals_manifests(helm: str, root: Path) -> None:
    expected = _normalized_rules(_manifest_rules(root))
    kinds = _by_kind(_template(helm, root))
    rules = [r for kind in ("ClusterRole", "Role") for d in kinds.get(kind, []) for r in d["rules"]]
    assert _normalized_rules(rules) == expected


def _chart_crd(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / CHART / "crds" / "crd.yaml").read_text())


def test_chart_crd_is_the_model_crd(root: Path) -> None:
    """Independent of how manifests/crd.yaml is formatted: the chart's CRD says exactly what
    the pydantic model of MadGroup.spec generates."""
    from madgroup.kube.crd import crd_manifest

    assert _chart_crd(root) == json.loads(json.dumps(crd_manifest())), (
        "charts/madgroup-operator/crds/crd.yaml is out of date with madgroup.spec: "
        "run `madgroup render crd` and copy manifests/crd.yaml into the chart"
    )


def test_render_with_crds_validates(helm: str, root: Path, dev_tool, tmp_path: Path) -> None:
    docs = _template(helm, root, "--include-crds")
    (crd,) = _by_kind(docs)["CustomResourceDefinition"]
    assert crd["metadata"]["name"] == "madgroups.madgroup.io"
    output = _validate(dev_tool("kubernetes-validate"), tmp_path, docs)
    assert "customresourcedefinition/madgroups.madgroup.io" in output


def test_sample_madgroup_matches_the_crd_schema(helm: str, root: Path) -> None:
    crd = _chart_crd(root)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (sample,) = _by_kind(_template(helm, root, "--set", "sample.enabled=true"))["MadGroup"]
    assert crd["spec"]["group"] + "/v1alpha1" == sample["apiVersion"]
    assert crd["spec"]["names"]["kind"] == sample["kind"]
    jsonschema.Draft4Validator(schema).validate(sample["spec"])
    # The check has teeth: a spec the CRD's schema forbids is refused (its CEL rules are
    # the API server's: tests/e2e/kube/test_invalid.py).
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"rogers": {"replicas": 2}})


MONITORING = [
    *("--set", "monitoring.podMonitor.enabled=true"),
    *("--set", "monitoring.prometheusRule.enabled=true"),
    *("--set", "monitoring.grafanaDashboard.enabled=true"),
    *("--set", "monitoring.groups[0].name=demo", "--set", "monitoring.groups[0].namespace=team-a"),
    *("--set", "sample.enabled=true"),
]
# Kinds of CRDs that are not Kubernetes's own: kubernetes-validate has no schema for them
# (it says so and skips them); their shape is checked below against what they must say.
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule", "MadGroup"}


def test_monitoring_renders_and_validates(helm: str, root: Path, dev_tool, tmp_path: Path) -> None:
    docs = _template(helm, root, *MONITORING)
    kinds = _by_kind(docs)
    builtin = [d for d in docs if d["kind"] not in CUSTOM_KINDS]
    _validate(dev_tool("kubernetes-validate"), tmp_path, builtin)

    files = root / CHART / "files"
    (rule,) = kinds["PrometheusRule"]
    assert rule["spec"] == yaml.safe_load((files / "prometheus-rules.yaml").read_text())
    dashboards = [d for d in kinds["ConfigMap"] if "madgroup.json" in d["data"]]
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["madgroup.json"]) == json.loads(
        (files / "grafana-dashboard.json").read_text()
    )

    # One PodMonitor and one NetworkPolicy per group (the listed one and the sample), in the
    # group's namespace, presenting the group's metrics credential on the MADs' http port.
    monitors = {m["metadata"]["namespace"]: m for m in kinds["PodMonitor"]}
    assert set(monitors) == {"team-a", NAMESPACE}
    endpoint = monitors["team-a"]["spec"]["podMetricsEndpoints"][0]
    assert endpoint["authorization"]["credentials"] == {
        "name": "demo-metrics-token",
        "key": "token",
    }
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    selected = monitors["team-a"]["spec"]["selector"]
    assert selected["matchLabels"] == naming.group_labels("demo")
    assert set(selected["matchExpressions"][0]["values"]) == {
        topology.component(n).dns_name for n in topology.MAD_NAMES
    }
    policies = {p["metadata"]["name"]: p for p in kinds["NetworkPolicy"]}
    assert policies["demo-metrics"]["spec"]["ingress"][0]["ports"] == [
        {"port": "http", "protocol": "TCP"}
    ]


def test_the_pod_monitor_matches_what_the_operator_renders() -> None:
    """The PodMonitor's port name, Secret name and key are the operator's own."""
    owner = objects.Owner("demo", "team-a", "0000")
    spec = crd.parse({})
    for name in topology.MAD_NAMES:
        pod = objects.workload(owner, spec, resolve(spec).of(name))["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert [p["name"] for p in container["ports"]] == ["http"]
        env = {e["name"]: e for e in container["env"]}
        assert env["MAD_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "demo-metrics-token",
            "key": "token",
        }


def test_the_helm_test_hook_runs_the_guides_smoke_checks(helm: str, root: Path) -> None:
    """``helm test``: a Pod hook against the sample group, with the group's labels (its
    NetworkPolicy admits only its pods), every MAD's real service name and port, the
    operator's Secrets in its environment (never on a command line), a valid script."""
    assert not [d for d in _template(helm, root) if d["kind"] == "Pod"]  # no sample, no test
    docs = _template(helm, root, "--set", "sample.enabled=true", "--set", "sample.name=demo")
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = pod["metadata"]["labels"]
    policy = objects.network_policy(objects.Owner("demo", NAMESPACE, "0"))
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    script = container["args"][0]
    for name in topology.MAD_NAMES:
        comp = topology.component(name)
        assert f"{comp.dns_name}:{comp.port}" in script, name
    assert naming.child_name("demo", "fiedler") == "demo-fiedler"
    env = {e["name"]: e for e in container["env"]}
    assert env["MAD_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": naming.metrics_token_secret_name("demo"),
        "key": "token",
    }
    assert env["MAD_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": naming.internal_token_secret_name("demo"),
        "key": "token",
    }
    assert "$MAD_" not in script  # the credentials stay in the environment
    checked = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

"""The chart, with helm built from its module: installed server-side with its monitoring and
backup options on, the operator running as the chart's ServiceAccount, upgraded with
helm's kstatus wait, and uninstalled leaving only what it should (the CRD, which helm never
deletes, and the data claims)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kube import harness
from tests.e2e.kube.cluster.control_plane import STORAGE_CLASS, Cluster
from tests.support import evidence
from tests.support.waiting import wait_for

NAMESPACE = "helm-release"
RELEASE = "mg"
ACCOUNT = f"{RELEASE}-madgroup-operator"
VALUES: dict[str, Any] = {
    "networkPolicy": {"enabled": True},
    "sample": {
        "enabled": True,
        "name": "demo",
        "spec": {
            "backup": {"schedule": "0 3 * * *", "retention": 3, "claimName": "madgroup-backups"}
        },
    },
    "monitoring": {
        "podMonitor": {"enabled": True, "prometheusNamespace": "monitoring"},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
}
MONITORING_CRDS = (
    "monitoring.coreos.com_podmonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)


def _helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    home = cluster.directory / "helm"
    result = subprocess.run(
        [cluster.binary("helm"), *args],
        env={
            **cluster.env(),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        },
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}{result.stdout}"
    return result


def _release_objects(cluster: Cluster) -> list[str]:
    """Every object still labelled as the release's, cluster-wide."""
    kinds = ",".join(
        (
            "deployments",
            "services",
            "serviceaccounts",
            "configmaps",
            "networkpolicies",
            "podmonitors",
            "prometheusrules",
            "madgroups",
        )
    )
    found = json.loads(
        cluster.kubectl(
            "get", kinds, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json"
        ).stdout
    )["items"]
    cluster_wide = json.loads(
        cluster.kubectl(
            "get",
            "clusterroles,clusterrolebindings",
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "-o",
            "json",
        ).stdout
    )["items"]
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in found + cluster_wide)


def test_the_chart_installs_upgrades_and_uninstalls(
    cluster: Cluster, installed: Path, tmp_path: Path
) -> None:
    crds = Path(cluster.binary("kwok")).parents[1]  # the tools' cache
    monitoring = next(crds.glob("prometheus-operator-*")) / "data"
    for name in MONITORING_CRDS:
        cluster.kubectl("apply", "--server-side", "-f", str(monitoring / name))
    cluster.kubectl("wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com")
    harness.restricted_namespace(cluster, NAMESPACE)
    harness.apply_document(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "madgroup-backups", "namespace": NAMESPACE},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))

    installed_out = _helm(
        cluster, "install", RELEASE, str(harness.CHART), "-n", NAMESPACE, "-f", str(values)
    )
    assert "STATUS: deployed" in installed_out.stdout
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployment", ACCOUNT, "-n", NAMESPACE, "-o", "json", "--show-managed-fields"
        ).stdout
    )
    operations = {(f["manager"], f["operation"]) for f in deployment["metadata"]["managedFields"]}
    assert any(op == "Apply" for _, op in operations), f"not installed server-side: {operations}"

    kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, ACCOUNT)
    user = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
    assert cluster.whoami(kubeconfig) == user
    since = harness.now()
    with harness.operator_running(cluster, kubeconfig, tmp_path / "operator.log") as operator:
        harness.wait_ready(cluster, NAMESPACE, "demo")
        cronjob = harness.get(cluster, "cronjob", NAMESPACE, "demo-backup")
        assert cronjob["spec"]["schedule"] == "0 3 * * *"
        for kind, name in (
            ("podmonitor", "demo-mads"),
            ("prometheusrule", f"{ACCOUNT}-madgroup"),
            ("networkpolicy", "demo-metrics"),
        ):
            harness.get(cluster, kind, NAMESPACE, name)

        upgraded = _helm(
            cluster,
            "upgrade",
            RELEASE,
            str(harness.CHART),
            "-n",
            NAMESPACE,
            "-f",
            str(values),
            "--set",
            "monitoring.podMonitor.interval=15s",
            "--wait=watcher",
            "--timeout=3m",
        )
        assert "has been upgraded" in upgraded.stdout
        podmonitor = harness.get(cluster, "podmonitor", NAMESPACE, "demo-mads")
        assert podmonitor["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"

        # The group goes first, while its operator runs (docs/operator.md): the chart keeps
        # it on uninstall rather than leave it stuck behind a finalizer nobody handles.
        cluster.kubectl("delete", "madgroup", "demo", "-n", NAMESPACE, "--timeout=120s")
        assert "Traceback" not in operator.output()
    refused = harness.forbidden(cluster, user, since)
    assert not refused, f"the chart's RBAC refused the operator ({user}): " + "; ".join(refused)

    _helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=2m")
    wait_for(
        lambda: not _release_objects(cluster),
        timeout=60,
        interval=0.5,
        what="the release's objects gone",
    )
    assert cluster.kubectl("get", "crd", "madgroups.madgroup.io", check=False).returncode == 0
    claims = sorted(c["metadata"]["name"] for c in harness.items(cluster, "pvc", NAMESPACE))
    assert "madgroup-backups" in claims and any(c.startswith("data-demo-") for c in claims)
    evidence.record(
        "kube e2e helm",
        f"{_helm(cluster, 'version', '--short').stdout.strip()}: install (server-side), "
        f"upgrade --wait=watcher, uninstall; left: the CRD and claims {claims}",
    )

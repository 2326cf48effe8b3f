"""One real control plane for the whole run (tests/e2e/kube/cluster), the product installed
on it as a user installs it (``kubectl apply -f manifests/``), and the operator as a process
with its own ServiceAccount's token. No test may leave the operator refused (403): the
API server's audit log is read after each test and names every refused verb and resource.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kube import harness
from tests.e2e.kube.cluster import control_plane
from tests.support import evidence
from tests.support.gotools import build
from tests.support.gotools.tools import CLUSTER_TOOLS
from tests.support.waiting import wait_for

TIMEOUT = 600  # a rollout on the real control plane, beside the suite's 120 s default


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.timeout(TIMEOUT))


def _versions(cluster: control_plane.Cluster) -> str:
    def first_line(*argv: str) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"

    etcd = first_line(cluster.binary("etcd"), "--version")
    kwok = first_line(cluster.binary("kwok"), "--version")
    helm = first_line(cluster.binary("helm"), "version", "--short")
    return (
        f"kube-apiserver {cluster.server_version()}, {etcd}, {kwok}, helm {helm}, "
        f"kubectl {cluster.state.versions['kubernetes']}"
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[control_plane.Cluster]:
    try:
        build.binaries(CLUSTER_TOOLS)
    except build.BuildError as exc:
        pytest.skip(f"no control plane to test on: {exc}")
    cluster_tools = {t.name for t in CLUSTER_TOOLS}
    for outcome in (o for o in build.last_ensure() if o.tool in cluster_tools):
        how = f"built in {outcome.seconds:.0f} s (cold)" if outcome.built else "from the cache"
        evidence.record("kube e2e", f"{outcome.tool} {outcome.version}: {how}")
    directory = tmp_path_factory.mktemp("kube-cluster")
    with control_plane.Cluster(directory) as running:
        evidence.record("kube e2e", f"ran on {_versions(running)} with kwok's fake nodes")
        evidence.record(
            "kube e2e",
            "limits: kwok runs no containers, so probes, exec, logs and the MADs' own "
            "behaviour inside Pods are not exercised here (the compose e2e runs the MADs)",
        )
        yield running


@pytest.fixture(scope="session")
def installed(cluster: control_plane.Cluster) -> Path:
    """``kubectl apply -f manifests/`` as the README says; the operator's kubeconfig (a
    TokenRequest token of the ServiceAccount manifests/ creates) is returned."""
    cluster.kubectl("apply", "-f", str(harness.MANIFESTS))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/madgroups.madgroup.io", "--timeout=60s"
    )
    kubeconfig = cluster.service_account_kubeconfig(
        harness.OPERATOR_NAMESPACE, harness.OPERATOR_ACCOUNT
    )
    _admission_knows_madgroups(cluster, kubeconfig)
    identity = cluster.whoami(kubeconfig)
    assert identity == harness.operator_user()
    evidence.record("kube e2e", f"the operator ran as {identity} (a TokenRequest token)")
    return kubeconfig


def _admission_knows_madgroups(cluster: control_plane.Cluster, kubeconfig: Path) -> None:
    """Established is not the end of it: the owner-reference admission check maps the new
    kind through discovery, which it refreshes on its own schedule, and until then refuses
    (403) a child naming a MadGroup as a blocking owner to anyone who may not update every
    resource's finalizers — the operator. Wait for that with a server-side dry run of such
    a child as the operator, so no test starts before the cluster is ready for it."""
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owner-check",
            "namespace": "default",
            "ownerReferences": [
                {
                    "apiVersion": "madgroup.io/v1alpha1",
                    "kind": "MadGroup",
                    "name": "owner-check",
                    "uid": "00000000-0000-0000-0000-000000000000",
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }

    def mapped() -> bool:
        out = cluster.kubectl(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(child),
            check=False,
            kubeconfig=kubeconfig,
        )
        return out.returncode == 0

    wait_for(mapped, timeout=90, interval=1, what="admission to map the MadGroup kind")


@pytest.fixture
def operator(
    cluster: control_plane.Cluster, installed: Path, tmp_path: Path
) -> Iterator[harness.OperatorProcess]:
    since = harness.now()
    with harness.operator_running(cluster, installed, tmp_path / "operator.log") as process:
        yield process
    refused = harness.forbidden(cluster, harness.operator_user(), since)
    assert not refused, (
        f"the API server refused the operator ({harness.operator_user()}) with 403: "
        + "; ".join(refused)
    )
    output = process.output()
    assert "Traceback" not in output, output[-3000:]

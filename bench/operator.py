"""Operator benchmark on the real control plane (scripts/kube-cluster, kwok's fake nodes).

Measures, in one run, from the API server's own audit log (microsecond timestamps):

- each hop of a rollout: the last of component N's Pods turning Ready (kwok's status write)
  -> the operator's first write of component N+1's objects; p50 and max per hop
  (goal <= 0.5 s every hop);
- a MadGroup applied -> its Ready condition written, divided by the sum of kwok's Pod start
  delays along the guide's order (goal <= 1.2);
- 1, 10 and 100 MadGroups (one namespace each) applied at once -> all Ready: the operator's
  CPU seconds and API requests per group, and the API server's own request count (its
  /metrics); the goal is a flat cost per group from 10 to 100 (<= 1.2x).

The operator runs as a process with its ServiceAccount's token, as in tests/e2e/kube.

Run: ``.venv/bin/python bench/operator.py [COUNTS...]`` (default 1 10 100); the programs
are built first if needed (scripts/kube-cluster build).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from madgroup import topology  # noqa: E402

from bench.proc import cpu_seconds  # noqa: E402
from tests.e2e.kube import harness  # noqa: E402
from tests.e2e.kube.cluster.control_plane import POD_READY_DELAY_MS, Cluster  # noqa: E402
from tests.support.gotools import build  # noqa: E402
from tests.support.gotools.tools import CLUSTER_TOOLS  # noqa: E402

COUNTS = tuple(int(a) for a in sys.argv[1:]) or (1, 10, 100)
HOP_GROUPS = 5
GROUP = "demo"


def _ready_in(body: dict[str, Any] | None) -> bool:
    status = (body or {}).get("status") or {}
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _component_of(name: str) -> str | None:
    """The component whose object (or pod) ``name`` is: ``demo-<dns name>[-...]``."""
    rest = name.removeprefix(f"{GROUP}-")
    best = None
    for comp in topology.COMPONENTS:
        named = rest == comp.dns_name or rest.startswith(comp.dns_name + "-")
        if named and (best is None or len(comp.dns_name) > len(best.dns_name)):
            best = comp
    return best.name if best else None


def _timeline(cluster: Cluster, namespaces: set[str]) -> dict[str, dict[str, Any]]:
    """Per namespace: when each component's pods turned Ready (the last of them), when the
    operator first wrote each component's objects, when the group was applied and Ready."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"ready": {}, "first_write": {}, "applied": None, "group_ready": None}
    )
    operator = harness.operator_user()
    for r in harness.audit(cluster):
        if r.namespace not in namespaces or r.code >= 300:
            continue
        line = out[r.namespace]
        if r.resource == "pods" and r.subresource == "status" and _ready_in(r.body):
            comp = _component_of(r.name)
            if comp and (comp not in line["ready"] or r.at > line["ready"][comp]):
                line["ready"][comp] = r.at
        elif r.resource == "madgroups" and r.verb == "create":
            line["applied"] = r.at
        elif r.resource == "madgroups" and r.subresource == "status" and _ready_in(r.body):
            line["group_ready"] = line["group_ready"] or r.at
        elif (
            r.user == operator
            and r.verb in ("create", "patch")
            and r.resource in ("services", "deployments", "statefulsets")
            and not r.subresource
        ):
            comp = _component_of(r.name)
            if comp and comp not in line["first_write"]:
                line["first_write"][comp] = r.at
    return out


def _apply_groups(cluster: Cluster, namespaces: list[str]) -> None:
    def one(namespace: str) -> None:
        harness.restricted_namespace(cluster, namespace)
        harness.apply_document(cluster, harness.sample(namespace, name=GROUP))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, namespaces))


def _all_ready(cluster: Cluster, namespaces: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    wanted = set(namespaces)
    while time.monotonic() < deadline:
        groups = json.loads(cluster.kubectl("get", "madgroups", "-A", "-o", "json").stdout)
        ready = {
            g["metadata"]["namespace"]
            for g in groups["items"]
            if harness.condition(g, "Ready").get("status") == "True"
        }
        if wanted <= ready:
            return
        time.sleep(0.5)
    raise TimeoutError(f"not Ready within {timeout:.0f} s: {sorted(wanted - ready)[:5]}...")


def _apiserver_requests(cluster: Cluster) -> float:
    context = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    context.load_cert_chain(cluster.pki / "admin.crt", cluster.pki / "admin.key")
    with urllib.request.urlopen(f"{cluster.server}/metrics", context=context, timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
    )


def _operator_requests(cluster: Cluster, since: datetime.datetime) -> int:
    user = harness.operator_user()
    return sum(1 for r in harness.audit(cluster) if r.user == user and r.at >= since)


def hops(cluster: Cluster) -> None:
    namespaces = [f"hop-{i}" for i in range(HOP_GROUPS)]
    for namespace in namespaces:  # one at a time: each hop measured on a quiet system
        _apply_groups(cluster, [namespace])
        _all_ready(cluster, [namespace], 180)
    timeline = _timeline(cluster, set(namespaces))
    order = [c.name for c in topology.start_order()]
    print(f"hops (guide order, {HOP_GROUPS} groups): pods Ready -> next component's first write")
    for before, after in itertools.pairwise(order):
        gaps = [
            (t["first_write"][after] - t["ready"][before]).total_seconds()
            for t in timeline.values()
        ]
        verdict = "ok" if max(gaps) <= 0.5 else "over the 0.5 s goal"
        print(
            f"  {before:>20} -> {after:<20} p50 {statistics.median(gaps) * 1000:6.0f} ms   "
            f"max {max(gaps) * 1000:6.0f} ms   ({verdict})"
        )
    delays = len(order) * POD_READY_DELAY_MS / 1000
    ratios = [(t["group_ready"] - t["applied"]).total_seconds() / delays for t in timeline.values()]
    print(
        f"applied -> Ready / sum of kwok's pod start delays ({delays:.1f} s): "
        f"p50 {statistics.median(ratios):.2f}, max {max(ratios):.2f} (goal <= 1.2)"
    )


def scale(cluster: Cluster, pid: int) -> None:
    print()
    print(
        " groups  to Ready (s)  operator CPU s/group  operator requests/group"
        "  apiserver requests/group"
    )
    per_group: dict[int, tuple[float, float]] = {}
    for count in COUNTS:
        namespaces = [f"scale-{count}-{i}" for i in range(count)]
        since = harness.now()
        cpu, served = cpu_seconds(pid), _apiserver_requests(cluster)
        started = time.monotonic()
        _apply_groups(cluster, namespaces)
        _all_ready(cluster, namespaces, 120 + 6 * count)
        wall = time.monotonic() - started
        cpu_per = (cpu_seconds(pid) - cpu) / count
        requests_per = _operator_requests(cluster, since) / count
        apiserver_per = (_apiserver_requests(cluster) - served) / count
        per_group[count] = (cpu_per, requests_per)
        print(
            f"{count:7d}  {wall:12.1f}  {cpu_per:20.3f}  {requests_per:23.1f}"
            f"  {apiserver_per:24.1f}"
        )
    if 10 in per_group and 100 in per_group:
        cpu_ratio = per_group[100][0] / per_group[10][0]
        request_ratio = per_group[100][1] / per_group[10][1]
        print(
            f"per group, 100 vs 10 groups: CPU x{cpu_ratio:.2f}, requests x{request_ratio:.2f} "
            "(goal <= 1.2)"
        )


def main() -> None:
    build.ensure(CLUSTER_TOOLS)
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp) / "cluster") as cluster:
        cluster.kubectl("apply", "-f", str(harness.MANIFESTS))
        cluster.kubectl("wait", "--for=condition=Established", "crd/madgroups.madgroup.io")
        kubeconfig = cluster.service_account_kubeconfig(
            harness.OPERATOR_NAMESPACE, harness.OPERATOR_ACCOUNT
        )
        load = os.getloadavg()
        print(
            f"kube-apiserver {cluster.server_version()}, kwok pod start delay "
            f"{POD_READY_DELAY_MS} ms, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        log = Path(tmp) / "operator.log"
        # The default repair interval: the steady cost per group is what a cluster pays.
        with harness.operator_running(cluster, kubeconfig, log, "--repair-interval", "30") as op:
            hops(cluster)
            scale(cluster, op.pid)


if __name__ == "__main__":
    main()

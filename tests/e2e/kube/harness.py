"""What the end-to-end tests on the real control plane do with it: the operator as a process
with its own ServiceAccount's token, the API server's audit log read back, MadGroups applied
with kubectl and waited on, and the order of a rollout proven from the server's records."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from madgroup import topology

from tests.e2e.kube.cluster.control_plane import Cluster
from tests.support.ports import free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
SAMPLE = MANIFESTS / "samples" / "madgroup.yaml"
CHART = REPO / "charts" / "madgroup-operator"
OPERATOR_NAMESPACE = "madgroup-system"
OPERATOR_ACCOUNT = "madgroup-operator"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
ROLLOUT_TIMEOUT = 180.0


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- the operator, as its ServiceAccount ----------------------------------------------------


class OperatorProcess:
    """``madgroup operator -A`` on the host (kwok's pods run nothing), authenticated with a
    ServiceAccount token from the TokenRequest API: every call it makes passes real RBAC."""

    def __init__(self, cluster: Cluster, kubeconfig: Path, log: Path) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness = 0

    def start(self, *extra: str, env: dict[str, str] | None = None) -> OperatorProcess:
        self.liveness = free_port()
        madgroup = Path(sys.executable).parent / "madgroup"
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **(env or {})}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    str(madgroup),
                    "operator",
                    "--all-namespaces",
                    "--repair-interval",
                    "3",
                    "--liveness",
                    f"http://127.0.0.1:{self.liveness}/healthz",
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no goodbye, no cleanup."""
        if self.running():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# -- the audit log ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the API server recorded it (stage ResponseComplete)."""

    at: datetime.datetime
    user: str
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    body: dict[str, Any] | None
    agent: str = ""

    @property
    def what(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {resource} {self.name or '(collection)'}{where}"


def audit(cluster: Cluster) -> Iterator[Request]:
    """Every completed request in the API server's audit log, oldest first."""
    paths = sorted(cluster.audit_log.parent.glob("audit*.log"), key=lambda p: p.stat().st_mtime)
    for path in paths:
        with open(path) as log:
            for line in log:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("stage") != "ResponseComplete":
                    continue
                ref = entry.get("objectRef") or {}
                yield Request(
                    at=parse_time(entry["stageTimestamp"]),
                    user=entry.get("user", {}).get("username", ""),
                    verb=entry.get("verb", ""),
                    resource=ref.get("resource", ""),
                    subresource=ref.get("subresource", ""),
                    namespace=ref.get("namespace", ""),
                    name=ref.get("name", ""),
                    code=int((entry.get("responseStatus") or {}).get("code") or 0),
                    body=entry.get("requestObject"),
                    agent=entry.get("userAgent", ""),
                )


def forbidden(cluster: Cluster, user: str, since: datetime.datetime) -> list[str]:
    """What the API server refused ``user`` with 403 since ``since``, each named by verb
    and resource."""
    return sorted(
        {r.what for r in audit(cluster) if r.user == user and r.code == 403 and r.at >= since}
    )


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- objects ------------------------------------------------------------------------------


def get(cluster: Cluster, kind: str, namespace: str, *names: str, selector: str = "") -> Any:
    args = ["get", kind, *names, "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return json.loads(cluster.kubectl(*args).stdout)


def items(cluster: Cluster, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    return list(get(cluster, kind, namespace, selector=selector).get("items", []))


def apply_document(cluster: Cluster, document: dict[str, Any], check: bool = True) -> Any:
    return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(document), check=check)


def sample(namespace: str, name: str = "demo", **spec: Any) -> dict[str, Any]:
    """The committed sample MadGroup (manifests/samples/madgroup.yaml), in ``namespace``."""
    document = yaml.safe_load(SAMPLE.read_text())
    document["metadata"].update(name=name, namespace=namespace)
    document["spec"].update(spec)
    return dict(document)


def restricted_namespace(cluster: Cluster, name: str) -> None:
    """A namespace where PodSecurity admission enforces the ``restricted`` profile."""
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            }
        ),
    )


def condition(group: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (group.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def refusals(cluster: Cluster, namespace: str) -> list[str]:
    """Pods the workload controllers could not create (admission said no), as the events
    say it: the first thing to look at when a rollout does not progress."""
    return sorted(
        {
            f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e.get('message', '')}"
            for e in items(cluster, "events", namespace)
            if e.get("reason") == "FailedCreate"
        }
    )


def wait_ready(
    cluster: Cluster, namespace: str, name: str, timeout: float = ROLLOUT_TIMEOUT
) -> dict[str, Any]:
    """The MadGroup once its Ready condition is True for its current generation. Fails at
    once, with the server's message, when admission refuses one of its pods."""

    def ready() -> dict[str, Any] | None:
        refused = refusals(cluster, namespace)
        if refused:
            raise AssertionError("admission refused pods:\n" + "\n".join(refused))
        group = get(cluster, "madgroup", namespace, name)
        cond = condition(group, "Ready")
        generation = group["metadata"].get("generation")
        if cond.get("status") == "True" and cond.get("observedGeneration") == generation:
            return dict(group)
        return None

    return wait_for(ready, timeout=timeout, interval=0.5, what=f"MadGroup {namespace}/{name} Ready")


# -- the order of a rollout ---------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """Component ``after`` waited for ``before``: its first object was created at
    ``created``, the last of ``before``'s pods turned Ready at ``ready``."""

    before: str
    after: str
    ready: datetime.datetime
    created: datetime.datetime

    @property
    def gap(self) -> float:
        return (self.created - self.ready).total_seconds()


def _ready_times(pod: dict[str, Any]) -> datetime.datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return parse_time(cond["lastTransitionTime"])
    return None


def _first_created(objects: list[dict[str, Any]]) -> dict[str, datetime.datetime]:
    first: dict[str, datetime.datetime] = {}
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        comp = labels.get(COMPONENT)
        if comp is None:
            continue
        created = parse_time(obj["metadata"]["creationTimestamp"])
        if comp not in first or created < first[comp]:
            first[comp] = created
    return first


def rollout_hops(cluster: Cluster, namespace: str, group: str, order: str) -> list[Hop]:
    """For every gate of ``order``, when the gating component's pods were Ready (kwok's
    condition times) and when the gated component's first object was created (the API
    server's creationTimestamp): the server's own record of the rollout, in seconds."""
    selector = f"{INSTANCE}={group}"
    children: list[dict[str, Any]] = []
    for kind in ("services", "deployments", "statefulsets", "networkpolicies", "pdb"):
        children += items(cluster, kind, namespace, selector)
    created = _first_created(children)
    ready: dict[str, datetime.datetime] = {}
    for pod in items(cluster, "pods", namespace, selector):
        comp = (pod["metadata"].get("labels") or {}).get(COMPONENT)
        at = _ready_times(pod)
        if comp and at and (comp not in ready or at > ready[comp]):
            ready[comp] = at
    hops = []
    for component, gates in topology.gate_map(order).items():
        for gate in gates:
            label_after, label_before = _label(component), _label(gate)
            hops.append(Hop(gate, component, ready[label_before], created[label_after]))
    return hops


def _label(component: str) -> str:
    return component.replace("_", "-")


def operator_user() -> str:
    return f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"


@contextlib.contextmanager
def operator_running(
    cluster: Cluster, kubeconfig: Path, log: Path, *extra: str
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, kubeconfig, log).start(*extra)
    try:
        yield process
    finally:
        process.stop()

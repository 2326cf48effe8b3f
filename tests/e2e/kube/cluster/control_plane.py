"""A real Kubernetes control plane on this machine, with kwok playing the kubelets.

etcd, kube-apiserver (RBAC, the default admission plugins — PodSecurity and ServiceAccount
among them —, an audit log), kube-controller-manager (every controller: ReplicaSets,
StatefulSets, garbage collection, ServiceAccounts, CronJobs...) and kube-scheduler, all
built from source (:mod:`build`), and kwok with fake nodes whose Pods turn Running and
Ready through the real controllers. No container runs: probes, exec and logs are not real.

Everything runs from one state folder (certificates, kubeconfigs, logs, ``cluster.json``
with the pids) and is stopped by pid. In a test run the processes die with the run
(``attached``); ``scripts/kube-cluster up`` leaves them running until ``down``.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kube.cluster import pki, processes
from tests.support.gotools import build
from tests.support.gotools.tools import CLUSTER_TOOLS
from tests.support.ports import free_port

SERVICE_RANGE = "10.96.0.0/16"
POD_RANGE = "10.244.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN = "kubernetes-admin"
NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Pods with a container image naming this stay Pending and unready (a test's choice).
HOLD_UNREADY = "hold-unready"
POD_READY_DELAY_MS = 1000
STORAGE_CLASS = "kwok-volume"

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # Status writes of Pods and MadGroups with their bodies: when a Pod, or a group,
        # turned Ready, to the microsecond.
        {
            "level": "Request",
            "resources": [
                {"group": "", "resources": ["pods/status"]},
                {"group": "madgroup.io", "resources": ["madgroups/status"]},
            ],
            "verbs": ["patch", "update"],
        },
        # Who asked for what, and what the server answered, for everything else. Metadata
        # carries no bodies, so no Secret's value is ever written here.
        {"level": "Metadata"},
    ],
}


class ClusterError(RuntimeError):
    """The control plane could not be started; the message names the part and its log."""


@dataclass
class State:
    """What ``cluster.json`` holds: enough for another process to use or stop the cluster."""

    directory: str
    server: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    processes: list[processes.Started] = field(default_factory=list)
    binaries: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> State | None:
        try:
            data = json.loads((directory / "cluster.json").read_text())
        except (OSError, ValueError):
            return None
        data["processes"] = [processes.Started(**p) for p in data.get("processes", [])]
        return cls(**data)

    def save(self) -> None:
        path = Path(self.directory) / "cluster.json"
        path.write_text(json.dumps(asdict(self), indent=2))


def _say(line: str) -> None:
    print(f"kube-cluster: {line}", file=sys.stderr, flush=True)


def _wait(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    watched: Iterable[processes.Started] = (),
) -> None:
    """Until ``check()``; fails early, with its log's end, when a watched process exits."""
    watched = list(watched)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [p for p in watched if not processes.alive(p)]
        if dead:
            raise ClusterError(f"{what}: {dead[0].name} exited\n{_tails(dead)}")
        time.sleep(0.25)
    raise ClusterError(f"{what} not within {timeout:.0f} s\n{_tails(watched)}".rstrip())


def _tails(started: Iterable[processes.Started]) -> str:
    return "\n".join(f"--- {p.log}\n{processes.tail(p.log)}" for p in started)


class Cluster:
    """``with Cluster(dir) as cluster:`` — up on enter, down on exit (also on errors)."""

    def __init__(self, directory: Path, *, nodes: int = 3, attached: bool = True) -> None:
        self.directory = directory.resolve()
        self.node_count = nodes
        self.attached = attached
        self.state = State(str(self.directory))

    # -- paths -----------------------------------------------------------------------------

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The administrator's kubeconfig (system:masters)."""
        return self.directory / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.directory / "logs" / "audit.log"

    @property
    def server(self) -> str:
        return self.state.server

    def binary(self, name: str) -> str:
        return self.state.binaries[name]

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.down()

    def up(self) -> None:
        previous = State.load(self.directory)
        if previous is not None and any(processes.alive(p) for p in previous.processes):
            raise ClusterError(
                f"a cluster is already running from {self.directory}: "
                "`scripts/kube-cluster down` first"
            )
        shutil.rmtree(self.directory, ignore_errors=True)
        (self.directory / "logs").mkdir(parents=True)
        self.state.binaries = {k: str(v) for k, v in build.binaries(CLUSTER_TOOLS).items()}
        self.state.versions = {t.name: t.version for t in CLUSTER_TOOLS}
        self.state.save()
        started = time.monotonic()
        self._certificates()
        self._etcd()
        self._apiserver()
        self._controller_manager()
        self._scheduler()
        self._kwok()
        self._nodes()
        self._wait_default_service_account()
        _say(
            f"up in {time.monotonic() - started:.1f} s: {self.server} "
            f"(kube-apiserver {self.state.versions['kubernetes']}, etcd "
            f"{self.state.versions['etcd']}, kwok {self.state.versions['kwok']}, "
            f"{len(self.state.nodes)} fake nodes); KUBECONFIG={self.kubeconfig}"
        )

    def down(self) -> list[str]:
        """Stop every process this cluster started, newest first; names what was stopped."""
        state = State.load(self.directory) or self.state
        stopped = []
        for started in reversed(state.processes):
            if processes.stop(started):
                stopped.append(f"{started.name} (pid {started.pid})")
        if stopped:
            _say(f"stopped {', '.join(stopped)}")
        state.processes = []
        if Path(state.directory).is_dir():
            state.save()
        self.state.processes = []
        return stopped

    # -- the parts -------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> processes.Started:
        log = self.directory / "logs" / f"{name}.log"
        _say(f"starting {name}: {' '.join(argv)}")
        started = processes.start(name, argv, log, attached=self.attached)
        self.state.processes.append(started)
        self.state.save()
        return started

    def _certificates(self) -> None:
        ca = pki.Authority(self.pki)
        self._ca = ca
        ca.issue(
            "apiserver",
            "kube-apiserver",
            hosts=(
                "127.0.0.1",
                "localhost",
                "10.96.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server=True,
        )
        pki.signing_key(self.pki)
        (self.directory / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

    def _client_kubeconfig(self, stem: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        return self.write_kubeconfig(
            self.directory / f"{stem}.kubeconfig",
            user=stem,
            credentials=self._client_pair(stem, user, groups),
        )

    def write_kubeconfig(
        self,
        path: Path,
        *,
        user: str,
        credentials: dict[str, str],
        namespace: str | None = None,
    ) -> Path:
        """A kubeconfig for this cluster with ``credentials`` (a token or a client pair)."""
        context: dict[str, Any] = {"cluster": "madgroup-test", "user": user}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "madgroup-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "madgroup-test", "context": context}],
            "current-context": "madgroup-test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.state.ports.update(etcd=client, etcd_peer=peer)
        etcd = self._start(
            "etcd",
            [
                self.binary("etcd"),
                "--name=madgroup-test",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=madgroup-test=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2) as r:
                    return bool(json.loads(r.read()).get("health") == "true")
            except (OSError, ValueError):
                return False

        _wait(healthy, "etcd answering /health", 60, [etcd])

    def _apiserver(self) -> None:
        port = free_port()
        self.state.ports["apiserver"] = port
        self.state.server = f"https://127.0.0.1:{port}"
        apiserver = self._start(
            "kube-apiserver",
            [
                self.binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.state.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The `kubernetes` Service's endpoints may not be on loopback, and nothing in
                # a kwok pod calls the API server: keep no endpoints for it.
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--cert-dir={self.directory / 'apiserver-certs'}",
                f"--tls-cert-file={self.pki / 'apiserver.crt'}",
                f"--tls-private-key-file={self.pki / 'apiserver.key'}",
                f"--client-ca-file={self.pki / 'ca.crt'}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={self.pki / 'sa.pub'}",
                f"--service-account-signing-key-file={self.pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--authorization-mode=Node,RBAC",
                # Beside the default plugins (PodSecurity, ServiceAccount...): a controller
                # that blocks its owner's deletion must be allowed to update its finalizers,
                # as stricter distributions require.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                "--allow-privileged=true",
                f"--audit-policy-file={self.directory / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-maxsize=500",
                "--audit-log-maxbackup=2",
                "--profiling=false",
                "--v=1",
            ],
        )
        self.write_kubeconfig(
            self.kubeconfig,
            user=ADMIN,
            credentials=self._client_pair("admin", ADMIN, ("system:masters",)),
        )
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(
                    f"{self.server}/readyz", context=context, timeout=3
                ) as response:
                    return bool(response.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        _wait(ready, "kube-apiserver answering /readyz", 120, [apiserver])

    def _client_pair(self, stem: str, user: str, groups: tuple[str, ...]) -> dict[str, str]:
        pair = self._ca.issue(stem, user, organisations=groups)
        return {"client-certificate": str(pair.cert), "client-key": str(pair.key)}

    def _controller_manager(self) -> None:
        kubeconfig = self._client_kubeconfig("controller-manager", "system:kube-controller-manager")
        port = free_port()
        self.state.ports["controller-manager"] = port
        self._start(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
                f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--v=1",
            ],
        )

    def _scheduler(self) -> None:
        kubeconfig = self._client_kubeconfig("scheduler", "system:kube-scheduler")
        port = free_port()
        self.state.ports["scheduler"] = port
        self._start(
            "kube-scheduler",
            [
                self.binary("kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def stages(self) -> Path:
        """kwok's own stages, with the pod-ready stage made to wait a second (so the order
        of events is plain in second-resolution timestamps) and to pass over pods holding a
        :data:`HOLD_UNREADY` image (so a test can keep chosen pods unready)."""
        source = Path(self.binary("kwok")).parent / "data"
        documents = []
        for path in sorted(source.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if not document or document.get("kind") != "Stage":
                    continue
                if document["metadata"]["name"] == "pod-ready":
                    spec = document["spec"]
                    spec["delay"] = {"durationMilliseconds": POD_READY_DELAY_MS}
                    spec["selector"]["matchExpressions"].append(
                        {
                            "cel": {
                                "expression": "!self.spec.containers.exists(c, "
                                f"c.image.contains('{HOLD_UNREADY}'))"
                            }
                        }
                    )
                documents.append(document)
        out = self.directory / "kwok-stages.yaml"
        out.write_text(yaml.safe_dump_all(documents))
        return out

    def _kwok(self) -> None:
        kubeconfig = self._client_kubeconfig("kwok", "kwok-controller", ("system:masters",))
        port = free_port()
        self.state.ports["kwok"] = port
        self._start(
            "kwok",
            [
                self.binary("kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={self.stages()}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                f"--cidr={POD_RANGE}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{port}",
                "--node-lease-duration-seconds=40",
            ],
        )

    def _nodes(self) -> None:
        storage = Path(self.binary("kwok")).parent / "data" / "storage-class.yaml"
        manifests: list[dict[str, Any]] = [yaml.safe_load(storage.read_text())]
        manifests[0]["allowVolumeExpansion"] = True
        for index in range(self.node_count):
            name = f"kwok-node-{index}"
            self.state.nodes.append(name)
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {NODE_ANNOTATION: "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "topology.kubernetes.io/zone": f"zone-{'abc'[index % 3]}",
                            "type": "kwok",
                        },
                    },
                    "status": {
                        "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "500"},
                        "capacity": {"cpu": "64", "memory": "512Gi", "pods": "500"},
                    },
                }
            )
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
        self.state.save()

        def nodes_ready() -> bool:
            out = self.kubectl("get", "nodes", "-o", "json", check=False)
            if out.returncode != 0:
                return False
            ready = 0
            for node in json.loads(out.stdout)["items"]:
                for cond in node.get("status", {}).get("conditions", []):
                    if cond["type"] == "Ready" and cond["status"] == "True":
                        ready += 1
            return ready == self.node_count

        _wait(nodes_ready, f"{self.node_count} kwok nodes Ready", 90, self.state.processes)

    def _wait_default_service_account(self) -> None:
        def made() -> bool:
            return (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            )

        _wait(
            made,
            "the controller-manager making the default ServiceAccount",
            90,
            self.state.processes,
        )

    # -- using it --------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl`` (the one built with the cluster) as the administrator or as the
        owner of ``kubeconfig``."""
        result = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            env={**os.environ, "KUBECACHEDIR": str(self.directory / "kube-cache")},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        return result

    def token(self, namespace: str, service_account: str, seconds: int = 7200) -> str:
        """A token for a ServiceAccount, from the TokenRequest API."""
        return self.kubectl(
            "create",
            "token",
            service_account,
            "-n",
            namespace,
            f"--duration={seconds}s",
        ).stdout.strip()

    def service_account_kubeconfig(self, namespace: str, service_account: str) -> Path:
        """A kubeconfig that authenticates as ``system:serviceaccount:<ns>:<name>``."""
        token = self.token(namespace, service_account)
        return self.write_kubeconfig(
            self.directory / f"sa-{namespace}-{service_account}.kubeconfig",
            user=f"{namespace}-{service_account}",
            credentials={"token": token},
            namespace=namespace,
        )

    def whoami(self, kubeconfig: Path) -> str:
        """The user the API server sees for ``kubeconfig`` (a SelfSubjectReview)."""
        out = self.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
        return str(json.loads(out.stdout)["status"]["userInfo"]["username"])

    def server_version(self) -> str:
        out = self.kubectl("version", "-o", "json")
        return str(json.loads(out.stdout)["serverVersion"]["gitVersion"])

    def env(self) -> dict[str, str]:
        """Environment for tools run against the cluster (kubectl, helm, the operator)."""
        path = os.pathsep.join(sorted({str(Path(b).parent) for b in self.state.binaries.values()}))
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.directory / "kube-cache"),
            "PATH": f"{path}{os.pathsep}{os.environ['PATH']}",
        }


def attach(directory: Path) -> Cluster:
    """A :class:`Cluster` for one already running from ``directory`` (``down`` stops it)."""
    state = State.load(directory.resolve())
    if state is None:
        raise ClusterError(f"no cluster state in {directory}")
    cluster = Cluster(directory, attached=False)
    cluster.state = state
    return cluster

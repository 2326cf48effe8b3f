"""The programs of the test cluster, each pinned by a Go module of ours (``modules/<name>``:
go.mod and go.sum name every dependency and its hash), and built from source with ``go``.

No registry here ships Kubernetes binaries, but the Go module proxy serves their sources,
so the cluster is built the way the field builds it (envtest, kwokctl), from those modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODULES = Path(__file__).parent / "modules"

KUBERNETES = "v1.37.2"
ETCD = "v3.7.0"  # the etcd release Kubernetes 1.37 names (build/dependencies.yaml)
KWOK = "v0.8.0"
HELM = "v4.3.2"
# Its CRDs only (PodMonitor, PrometheusRule...): the chart's monitoring objects need them.
PROMETHEUS_OPERATOR = "v0.85.0"


def _version_flags(version: str) -> tuple[str, ...]:
    """What `make` stamps into Kubernetes binaries: without it a server says v0.0.0-master
    and charts' kubeVersion checks fail."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return tuple(flags)


@dataclass(frozen=True)
class Tool:
    """One module of ours and the programs built from it."""

    name: str
    version: str
    packages: tuple[str, ...]  # Go packages, each a program named by its last element
    ldflags: tuple[str, ...] = ()
    # Files the programs need at run time, kept beside them: (Go module, its folders).
    data: tuple[str, tuple[str, ...]] | None = None
    cold_note: str = ""  # what to expect of a first build

    @property
    def module(self) -> Path:
        return MODULES / self.name

    @property
    def programs(self) -> tuple[str, ...]:
        return tuple(_program_name(p) for p in self.packages)


def _program_name(package: str) -> str:
    last = package.rstrip("/").rsplit("/", 1)[-1]
    # go.etcd.io/etcd/server/v3 is etcd's main package; its binary is etcd.
    return "etcd" if package.startswith("go.etcd.io/etcd/server") else last


TOOLS: tuple[Tool, ...] = (
    Tool(
        "kubernetes",
        KUBERNETES,
        tuple(
            f"k8s.io/kubernetes/cmd/{cmd}"
            for cmd in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        ),
        _version_flags(KUBERNETES),
        cold_note=" (15-30 min on 2 cores with empty Go caches; cached afterwards)",
    ),
    Tool("etcd", ETCD, ("go.etcd.io/etcd/server/v3",)),
    Tool(
        "kwok",
        KWOK,
        ("sigs.k8s.io/kwok/cmd/kwok",),
        # kwok's own stages: nodes that turn Ready and keep their leases, pods that turn
        # Running and Ready (or complete, for Jobs) and go when deleted, volumes provisioned.
        data=(
            "sigs.k8s.io/kwok",
            (
                "kustomize/stage/node/fast",
                "kustomize/stage/node/heartbeat-with-lease",
                "kustomize/stage/pod/fast",
                "kustomize/stage/volume/fast",
            ),
        ),
    ),
    Tool(
        "prometheus-operator",
        PROMETHEUS_OPERATOR,
        (),
        data=(
            "github.com/prometheus-operator/prometheus-operator",
            ("example/prometheus-operator-crd",),
        ),
    ),
    Tool(
        "helm",
        HELM,
        ("helm.sh/helm/v4/cmd/helm",),
        (f"-X helm.sh/helm/v4/internal/version.version={HELM}",),
    ),
)


def tool(name: str) -> Tool:
    return next(t for t in TOOLS if t.name == name)

"""The Go programs the tests run, each pinned by a Go module of ours (``modules/<name>``:
go.mod and go.sum name every dependency and its hash), and built from source with ``go``.

No registry here ships Kubernetes binaries or an OAuth server, but the Go module proxy
serves their sources: the test cluster (tests/e2e/kube/cluster) is built the way the field
builds it (envtest, kwokctl), and Ory Hydra as its own Makefile builds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MODULES = Path(__file__).parent / "modules"

KUBERNETES = "v1.37.2"
ETCD = "v3.7.0"  # the etcd release Kubernetes 1.37 names (build/dependencies.yaml)
KWOK = "v0.8.0"
HELM = "v4.3.2"
HYDRA = "v2.3.0"
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
    cgo: bool = False
    tags: tuple[str, ...] = ()

    @property
    def module(self) -> Path:
        return MODULES / self.name

    @property
    def programs(self) -> tuple[str, ...]:
        return tuple(_program_name(p) for p in self.packages)


def _program_name(package: str) -> str:
    """A main package's program: its last path element, before a major version suffix
    (``github.com/ory/hydra/v2`` is ``hydra``); etcd's main package is its server module."""
    if package.startswith("go.etcd.io/etcd/server"):
        return "etcd"
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


CLUSTER_TOOLS: tuple[Tool, ...] = (
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


HYDRA_TOOL = Tool(
    "hydra",
    HYDRA,
    ("github.com/ory/hydra/v2",),
    (f"-X github.com/ory/hydra/v2/driver/config.Version={HYDRA}",),
    # Its in-memory store (DSN=memory) is SQLite: cgo and the sqlite tags, as its Makefile.
    cgo=True,
    tags=("sqlite", "sqlite_omit_load_extension"),
)
"""Ory Hydra, the OAuth 2.1 authorization server of Grace's OAuth tests."""

ALL_TOOLS = (*CLUSTER_TOOLS, HYDRA_TOOL)


def tool(name: str) -> Tool:
    return next(t for t in ALL_TOOLS if t.name == name)

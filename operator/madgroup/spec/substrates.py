"""What each substrate can honour of a declaration, and saying so: a field one cannot act
on is refused, or noted as ignored, one line each; nothing is dropped silently.

Kubernetes honours every field (and adds its own, :mod:`madgroup.kube.crd`); docker compose
and the local runner run the group on one host: one instance of each component others reach
at its address, as many as declared of one reached through the bus alone.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from madgroup import topology
from madgroup.spec.model import InvalidSpecError, field_name

KUBERNETES_ONLY = frozenset(
    {
        "pullPolicy",
        "resources",
        "storageClassName",
        "retainOnDelete",
        "serviceType",
        "busPasswordSecretRef",
        "issuerRef",
        "backup",  # locally and on compose: madgroup backup, run when wanted
        # Placement, disruption budgets and autoscaling: one host has no nodes to choose.
        "nodeSelector",
        "affinity",
        "tolerations",
        "topologySpreadConstraints",
        "priorityClassName",
        "disruptionBudget",
        "autoscaling",
    }
)
"""Fields the Kubernetes substrate adds to the model (``kube/crd.py``; a test keeps the two
equal). Given to another substrate, they are refused with that reason, not as unknown."""


@dataclass(frozen=True)
class Honoured:
    """What a substrate does with declared fields it cannot act on, by path pattern
    (``fnmatch``, e.g. ``spec.*.replicas``): refused (with why), or ignored (with why)."""

    substrate: str
    refused: Mapping[str, str] = field(default_factory=dict)
    ignored: Mapping[str, str] = field(default_factory=dict)


def _one_per_host(why: str) -> dict[str, str]:
    """``replicas`` of every component others reach at its address, refused with ``why``
    (a component reached through the bus alone, Fiedler, runs as many as declared)."""
    return {
        f"spec.{field_name(c.name)}.replicas": why
        for c in topology.COMPONENTS
        if topology.reached_at_address(c)
    }


COMPOSE = Honoured(
    "docker compose",
    refused=_one_per_host(
        "others reach it at its address, which one container serves here; more replicas "
        "need Kubernetes"
    ),
    ignored={"spec.*.storage.size": "a named volume has no size"},
)
LOCAL = Honoured(
    "the local runner",
    refused=_one_per_host(
        "others reach it at its address, which one process serves here; more replicas "
        "need Kubernetes"
    ),
    ignored={
        "spec.image.*": "it runs this installation's code, not images",
        "spec.*.image": "it runs this installation's code, not images",
        "spec.*.storage.size": "data lives in the state directory, which has no size",
    },
)


def declared(spec: BaseModel, root: str = "spec") -> dict[str, Any]:
    """Every field the declaration sets to something other than its default, by path
    (``spec.grace.replicas``): what a substrate checks it can honour."""
    found: dict[str, Any] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(inner, f"{where}.{key}")
        else:
            found[where] = value

    walk(spec.model_dump(exclude_defaults=True), root)
    return {path: value for path, value in found.items() if path != root}


def check(spec: BaseModel, honoured: Honoured) -> list[str]:
    """What ``honoured``'s substrate cannot act on, in one line each: a refused field raises
    :class:`~madgroup.spec.model.InvalidSpecError`; an ignored one comes back as a note to
    print."""
    found = declared(spec)
    for pattern, why in honoured.refused.items():
        hits = sorted(path for path in found if fnmatch.fnmatchcase(path, pattern))
        if hits:
            raise InvalidSpecError(f"{hits[0]}: {why} ({honoured.substrate})")
    notes = []
    for pattern, why in honoured.ignored.items():
        for path in sorted(p for p in found if fnmatch.fnmatchcase(p, pattern)):
            notes.append(f"{path} is ignored by {honoured.substrate}: {why}")
    return notes

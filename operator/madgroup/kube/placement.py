"""Where a component's pods run and how many a disruption may take: the pod spec's
scheduling fields and the component's PodDisruptionBudget, from its declaration.

Defaults, for what the declaration leaves unset:

- a component that runs more than one pod (``replicas`` above 1, or an autoscaler that may
  add one) spreads them over nodes: ``maxSkew: 1`` over ``kubernetes.io/hostname``,
  ``ScheduleAnyway`` — a preference, so a group still starts on a one-node cluster;
- a component that may run replicas (Sequential Thinking, Grace) has a budget of
  ``maxUnavailable: 1``: a node drain takes one of its pods at a time, and with one replica
  it may take that one. A single-instance component (Redis, Rogers, Fiedler) has none: a
  budget protecting its one pod would allow no disruption, and every node drain would wait
  on it forever. Declared, it is rendered as declared.

Budgets let a pod that is not ready be evicted (``unhealthyPodEvictionPolicy:
AlwaysAllow``): it serves nothing a budget could protect, and it must not hold a drain up.
"""

from __future__ import annotations

from typing import Any

from madgroup.kube import naming
from madgroup.kube.crd import (
    DisruptionBudget,
    WithAutoscaling,
    WithDisruptionBudget,
    WithPlacement,
)
from madgroup.kube.meta import Manifest, Owner
from madgroup.kube.meta import metadata as _metadata
from madgroup.kube.scheduling import dump
from madgroup.resolved import ResolvedComponent

SPREAD_KEY = "kubernetes.io/hostname"


def most_pods(part: ResolvedComponent) -> int:
    """The most pods the component may run under its declaration."""
    settings = part.settings
    if isinstance(settings, WithAutoscaling) and settings.autoscaling is not None:
        return max(settings.replicas, settings.autoscaling.maxReplicas)
    return settings.replicas


def default_spread(owner: Owner, part: ResolvedComponent) -> list[dict[str, Any]]:
    """Prefer one pod per node for a component that runs several."""
    if most_pods(part) <= 1:
        return []
    return [
        {
            "maxSkew": 1,
            "topologyKey": SPREAD_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": naming.selector_labels(owner.name, part.name)},
        }
    ]


def pod_fields(owner: Owner, part: ResolvedComponent) -> dict[str, Any]:
    """The scheduling fields of the component's pod spec (only those with a value)."""
    settings = part.settings
    assert isinstance(settings, WithPlacement)
    out: dict[str, Any] = {}
    if settings.nodeSelector:
        out["nodeSelector"] = dict(settings.nodeSelector)
    if settings.affinity is not None:
        out["affinity"] = dump(settings.affinity)
    if settings.tolerations:
        out["tolerations"] = [dump(t) for t in settings.tolerations]
    if settings.topologySpreadConstraints is None:
        spread = default_spread(owner, part)
    else:
        own = {"matchLabels": naming.selector_labels(owner.name, part.name)}
        spread = [{"labelSelector": own, **dump(c)} for c in settings.topologySpreadConstraints]
    if spread:
        out["topologySpreadConstraints"] = spread
    if settings.priorityClassName:
        out["priorityClassName"] = settings.priorityClassName
    return out


def budget_of(part: ResolvedComponent) -> DisruptionBudget | None:
    """The component's budget: declared, or the default for what it is; None for none."""
    settings = part.settings
    assert isinstance(settings, WithDisruptionBudget)
    declared = settings.disruptionBudget
    if declared is None:
        return DisruptionBudget() if part.max_replicas != 1 else None
    return declared if declared.enabled else None


def disruption_budget(owner: Owner, part: ResolvedComponent) -> Manifest | None:
    """The component's PodDisruptionBudget, or None."""
    budget = budget_of(part)
    if budget is None:
        return None
    bound: dict[str, int | str]
    if budget.minAvailable is not None:
        bound = {"minAvailable": budget.minAvailable}
    else:
        bound = {"maxUnavailable": 1 if budget.maxUnavailable is None else budget.maxUnavailable}
    name = part.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, naming.child_name(owner.name, name), name),
        "spec": {
            **bound,
            "selector": {"matchLabels": naming.selector_labels(owner.name, name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }

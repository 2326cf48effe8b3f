"""The local group as the planner sees it: each component's phase, process and readiness
check become one :class:`madgroup.rollout.Observed`, the same record the operator builds
from Kubernetes objects; ``madgroup status`` prints the conditions the operator writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from madgroup import rollout, topology
from madgroup.local.state import Phase

STOPPED_ON_REQUEST = "stopped on request; 'madgroup up <component>' starts it again"


def observe(phase: Phase | None, running: bool, ready: bool) -> rollout.Observed:
    """One component: in sync when its process runs (or it was stopped on request, which
    is not for the planner to undo: the rollout reports it as not progressing)."""
    if phase == Phase.STOPPED:
        return rollout.Observed(
            in_sync=True, desired_replicas=1, rolled_out=True, stuck=STOPPED_ON_REQUEST
        )
    return rollout.Observed(
        in_sync=running,
        ready_replicas=int(running and ready),
        desired_replicas=1,
        rolled_out=True,
    )


def observe_instances(seen: Sequence[rollout.Observed]) -> rollout.Observed:
    """A component run by several processes (each observed by :func:`observe`): in sync when
    every one is, its ready replicas the ready processes."""
    return rollout.Observed(
        in_sync=all(o.in_sync for o in seen),
        ready_replicas=sum(o.ready_replicas for o in seen),
        desired_replicas=sum(o.desired_replicas for o in seen),
        rolled_out=all(o.rolled_out for o in seen),
        stuck=next((o.stuck for o in seen if o.stuck), None),
    )


def gates(order: str) -> rollout.Gates:
    return topology.gate_map("graph" if order == "graph" else "guide")


def report(observed: Mapping[str, rollout.Observed], order: str) -> rollout.Report:
    names: Sequence[str] = [n for n in topology.COMPONENT_NAMES if n in observed]
    the_plan = rollout.plan(names, observed, gates(order))
    return rollout.report(names, observed, the_plan)


def lines(the_report: rollout.Report, order: str) -> list[str]:
    """The conditions as ``madgroup status`` shows them: type, status, reason, message."""
    shown = [c for c in the_report.conditions if c.type != rollout.PAUSED]
    width = max(len(c.type) for c in shown)
    out = [f"conditions (order: {order}):"]
    for cond in shown:
        detail = f" - {cond.message}" if cond.message else ""
        out.append(f"  {cond.type:<{width}}  {cond.status:<7}  {cond.reason}{detail}")
    return out

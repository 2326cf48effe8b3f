"""Substrate-free rollout decisions.

Given the components in start order and what was observed of each (are its objects as
desired? how many replicas are ready?), decide what to apply next and what status to
report. The rule is the guide's: one component at a time, the next only once the previous
one is ready; an update rolls in the same order and halts at the first component that does
not become ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
PAUSED = "Paused"


def camel(name: str) -> str:
    """``sequential_thinking`` -> ``SequentialThinking``."""
    return "".join(part.capitalize() for part in name.split("_"))


def condition_type(component: str) -> str:
    return f"{camel(component)}Ready"


@dataclass(frozen=True)
class Observed:
    """One component as seen on the substrate."""

    in_sync: bool
    """Every object of the component exists and matches what is desired."""
    ready_replicas: int = 0
    desired_replicas: int = 0
    rolled_out: bool = False
    """The workload controller has acted on the latest template (no update pending)."""
    stuck: str | None = None
    """Set when the substrate says the component will not progress on its own."""

    @property
    def ready(self) -> bool:
        return (
            self.in_sync
            and self.rolled_out
            and self.desired_replicas > 0
            and self.ready_replicas >= self.desired_replicas
        )

    def describe(self) -> str:
        return f"{self.ready_replicas}/{self.desired_replicas} replicas ready"


@dataclass(frozen=True)
class Plan:
    """What to do now and where the rollout stands."""

    apply: tuple[str, ...]
    """Components whose objects must be (re)applied now, in order (at most the gate)."""
    waiting_for: str | None
    """The first component that is not ready (the rollout's gate), or None when all are."""
    stuck: str | None = None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.waiting_for is None and not self.apply


Gates = Mapping[str, Sequence[str]]
"""What must be ready before each component may be applied (started)."""


def chain(order: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The guide's gates: each component after every one before it."""
    return {name: tuple(order[:i]) for i, name in enumerate(order)}


def closure(gates: Gates) -> dict[str, set[str]]:
    """Every component's gates, their gates, and so on."""
    found: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in found:
            found[name] = set()
            for gate in gates.get(name, ()):
                found[name] |= {gate, *visit(gate)}
        return found[name]

    for name in gates:
        visit(name)
    return found


def plan(
    order: Sequence[str], observed: Mapping[str, Observed], gates: Gates | None = None
) -> Plan:
    """What to apply now: every component that is out of sync and whose gates (and their
    gates) are all ready; nothing else is touched. The first component in ``order`` that is
    not ready is where the rollout waits.

    With the guide's gates (the default: each component after all before it) that is the
    guide's rule, one component at a time, the next only once the previous is ready, an
    update halting at the first component that does not become ready. With the dependency
    graph's gates, independent components are applied side by side."""
    needs = closure(gates if gates is not None else chain(order))
    ready = {name for name in order if observed[name].ready}
    apply = tuple(
        name for name in order if not observed[name].in_sync and needs.get(name, set()) <= ready
    )
    waiting = next((name for name in order if name not in ready), None)
    if waiting is None:
        return Plan(apply=(), waiting_for=None, message="all components ready")
    obs = observed[waiting]
    if not obs.in_sync:
        message = f"applying {', '.join(apply) or waiting}"
    elif obs.stuck and not apply:
        return Plan(
            apply=(),
            waiting_for=waiting,
            stuck=waiting,
            message=f"{waiting} is not progressing: {obs.stuck}",
        )
    else:
        message = f"waiting for {waiting}: {obs.describe()}"
    return Plan(apply=apply, waiting_for=waiting, message=message)


@dataclass(frozen=True)
class Condition:
    """A condition per the Kubernetes API conventions: what every substrate reports (the
    operator in the MadGroup's status, ``madgroup status`` locally). The CRD's schema for
    it is generated from this class; the attribute docstrings are its descriptions."""

    type: str
    """Condition type, e.g. Ready or GraceReady."""
    status: Status
    """True, False or Unknown."""
    reason: str
    """One CamelCase word explaining the status."""
    message: str = ""
    """Human-readable detail."""
    lastTransitionTime: str | None = None
    """When the status last changed (RFC 3339)."""
    observedGeneration: int | None = None
    """metadata.generation the condition was computed for."""

    @classmethod
    def of(cls, type_: str, status: Status, reason: str, message: str = "") -> Condition:
        return cls(type_, status, reason, message)


@dataclass
class Report:
    """The status to publish: conditions and one line per component."""

    conditions: list[Condition] = field(default_factory=list)
    components: dict[str, str] = field(default_factory=dict)

    def get(self, type_: str) -> Condition:
        for cond in self.conditions:
            if cond.type == type_:
                return cond
        raise KeyError(type_)


def _component_conditions(
    order: Sequence[str], observed: Mapping[str, Observed], gate: str | None
) -> tuple[list[Condition], dict[str, str]]:
    conditions: list[Condition] = []
    messages: dict[str, str] = {}
    reached_gate = False
    for name in order:
        obs = observed.get(name)
        if obs is not None and obs.ready:
            cond = Condition.of(condition_type(name), "True", "Ready", obs.describe())
        elif obs is None or (reached_gate and not obs.in_sync):
            cond = Condition.of(
                condition_type(name), "False", "Pending", "waiting for earlier components"
            )
        elif not obs.in_sync:
            cond = Condition.of(condition_type(name), "False", "Applying", f"applying {name}")
        elif not obs.rolled_out:
            cond = Condition.of(
                condition_type(name), "False", "RollingOut", f"rolling out: {obs.describe()}"
            )
        elif obs.stuck:
            cond = Condition.of(condition_type(name), "False", "NotProgressing", obs.stuck)
        else:
            cond = Condition.of(condition_type(name), "False", "NotReady", obs.describe())
        if name == gate:
            reached_gate = True
        conditions.append(cond)
        messages[name] = cond.message
    return conditions, messages


def report(
    order: Sequence[str],
    observed: Mapping[str, Observed],
    the_plan: Plan,
    *,
    paused: bool = False,
) -> Report:
    """Conditions per the Kubernetes API conventions (and kstatus): a summary ``Ready``,
    ``Reconciling`` while work is under way, ``Stalled`` when it cannot proceed."""
    comp_conditions, messages = _component_conditions(order, observed, the_plan.waiting_for)
    gate = the_plan.waiting_for
    if the_plan.done:
        ready = Condition.of(READY, "True", "AllComponentsReady", "all components ready")
    elif paused:
        ready = Condition.of(READY, "False", "Paused", f"paused; {the_plan.message}")
    else:
        ready = Condition.of(READY, "False", f"{camel(gate or '')}NotReady", the_plan.message)
    if paused:
        reconciling = Condition.of(RECONCILING, "False", "Paused", "reconciliation is paused")
        stalled = Condition.of(STALLED, "False", "Paused", "reconciliation is paused")
    elif the_plan.stuck:
        reconciling = Condition.of(RECONCILING, "False", "Stalled", the_plan.message)
        stalled = Condition.of(
            STALLED, "True", f"{camel(the_plan.stuck)}NotProgressing", the_plan.message
        )
    elif the_plan.done:
        reconciling = Condition.of(RECONCILING, "False", "Reconciled", "all components ready")
        stalled = Condition.of(STALLED, "False", "Reconciled", "")
    else:
        reason = "Applying" if the_plan.apply else f"WaitingFor{camel(gate or '')}"
        reconciling = Condition.of(RECONCILING, "True", reason, the_plan.message)
        stalled = Condition.of(STALLED, "False", "Progressing", "")
    paused_cond = Condition.of(
        PAUSED,
        "True" if paused else "False",
        "Paused" if paused else "Active",
        'annotation madgroup.io/paused is "true" or spec.paused is set; nothing is changed'
        if paused
        else "",
    )
    return Report([ready, reconciling, stalled, paused_cond, *comp_conditions], messages)


def invalid_report(order: Iterable[str], message: str, reason: str = "InvalidSpec") -> Report:
    """The spec cannot be acted on: nothing is applied, the reason is the message."""
    conditions = [
        Condition.of(READY, "False", reason, message),
        Condition.of(RECONCILING, "False", reason, message),
        Condition.of(STALLED, "True", reason, message),
    ]
    return Report(conditions, {name: "" for name in order})

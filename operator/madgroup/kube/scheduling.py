"""Kubernetes' own scheduling shapes (``core/v1``): node selectors, affinity, tolerations and
topology spread constraints, as the declaration takes them for a component's pods.

They are the API's fields with the API's names and meanings, validated as far as a schema
can (operators, effects and policies as enums, weights and skews in range, label keys and
values as the API server checks them), and described, so ``kubectl explain
mg.spec.grace.affinity.podAntiAffinity`` reads like the Pod's own. What is declared is
written into the pod template as it is (:func:`dump`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue

from madgroup.spec import Model

LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A label key: an optional DNS-subdomain prefix and ``/``, then a name of at most 63."""
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
MAX_LABEL_KEY = 317
MAX_LABEL_VALUE = 63
MAX_ENTRIES = 64
"""The most labels, terms or values one field takes (bounds the API server's rule costs)."""

LabelKey = Annotated[
    str,
    Field(
        pattern=LABEL_KEY,
        max_length=MAX_LABEL_KEY,
        description="A label key (an optional DNS-subdomain prefix and '/', then a name).",
    ),
]
LabelValue = Annotated[
    str,
    Field(
        pattern=LABEL_VALUE,
        max_length=MAX_LABEL_VALUE,
        description="A label value (at most 63 letters, digits, '-', '_' and '.').",
    ),
]
NodeSelectorValue = Annotated[str, Field(description="A value the key is compared with.")]
Namespace = Annotated[str, Field(description="A namespace's name.")]
PodLabelKey = Annotated[str, Field(description="A pod label key.")]


_LABEL_KEYS_RULE: dict[str, JsonValue] = {
    "rule": f"self.all(k, size(k) <= {MAX_LABEL_KEY} && k.matches({LABEL_KEY!r}))",
    "message": "a label key is an optional DNS-subdomain prefix and '/', then a name of "
    "letters, digits, '-', '_' and '.' (at most 63), beginning and ending with a letter "
    "or digit",
}


def label_map(description: str) -> Any:
    """A field of labels (``key: value``): keys checked by a CEL rule on the server, as
    the model checks them."""
    return Field(
        default=None,
        description=description,
        max_length=MAX_ENTRIES,
        json_schema_extra={"x-kubernetes-validations": [_LABEL_KEYS_RULE]},
    )


class LabelSelectorRequirement(Model):
    """A label selector requirement: a key, an operator and values."""

    key: LabelKey = Field(description="The label key the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="The key's relation to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        description="For In and NotIn, a non-empty list; for Exists and DoesNotExist, empty.",
        max_length=MAX_ENTRIES,
    )


class LabelSelector(Model):
    """A label query over a set of resources (the results of matchLabels and
    matchExpressions are ANDed; an empty selector matches every object)."""

    matchLabels: dict[LabelKey, LabelValue] | None = label_map(
        "key: value pairs; each is the requirement {key, operator: In, values: [value]}."
    )
    matchExpressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Label selector requirements, ANDed.", max_length=MAX_ENTRIES
    )


class NodeSelectorRequirement(Model):
    """A node selector requirement: a key, an operator and values."""

    key: str = Field(description="The label key (or field name) the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="The key's relation to the values: In, NotIn, Exists, DoesNotExist, Gt or Lt."
    )
    values: list[NodeSelectorValue] | None = Field(
        default=None,
        description="For In and NotIn, a non-empty list; for Exists and DoesNotExist, empty; "
        "for Gt and Lt, one integer.",
        max_length=MAX_ENTRIES,
    )


class NodeSelectorTerm(Model):
    """Node selector requirements, ANDed (an empty term matches no node)."""

    matchExpressions: list[NodeSelectorRequirement] | None = Field(
        default=None, description="Requirements on the node's labels.", max_length=MAX_ENTRIES
    )
    matchFields: list[NodeSelectorRequirement] | None = Field(
        default=None, description="Requirements on the node's fields.", max_length=MAX_ENTRIES
    )


class NodeSelector(Model):
    """Node selector terms, ORed."""

    nodeSelectorTerms: list[NodeSelectorTerm] = Field(
        description="A list of node selector terms; a node matching any of them is chosen.",
        min_length=1,
        max_length=MAX_ENTRIES,
    )


class PreferredSchedulingTerm(Model):
    """A weighted node selector term (an empty preference matches every node)."""

    weight: int = Field(ge=1, le=100, description="Weight of this preference, 1-100.")
    preference: NodeSelectorTerm = Field(description="A node selector term.")


class NodeAffinity(Model):
    """Node affinity scheduling rules for the pod."""

    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector | None = Field(
        default=None,
        description="Nodes the pod may be scheduled on; a node whose labels stop matching "
        "later keeps the pod.",
    )
    preferredDuringSchedulingIgnoredDuringExecution: list[PreferredSchedulingTerm] | None = Field(
        default=None,
        description="Nodes the scheduler prefers, by the sum of the weights of the terms "
        "a node matches.",
        max_length=MAX_ENTRIES,
    )


class PodAffinityTerm(Model):
    """The pods (matched by labelSelector in namespaces) the pod should be co-located with
    (affinity) or not (anti-affinity): on a node whose topologyKey label has the value of a
    node running one of them."""

    labelSelector: LabelSelector | None = Field(
        default=None, description="A label query over pods; none matches no pod."
    )
    namespaces: list[Namespace] | None = Field(
        default=None,
        description="Namespaces labelSelector applies to; none: the pod's own.",
        max_length=MAX_ENTRIES,
    )
    namespaceSelector: LabelSelector | None = Field(
        default=None, description="A label query over namespaces, ORed with namespaces."
    )
    topologyKey: str = Field(
        min_length=1,
        description="The node label whose value defines a domain, e.g. kubernetes.io/hostname "
        "or topology.kubernetes.io/zone.",
    )
    matchLabelKeys: list[PodLabelKey] | None = Field(
        default=None,
        description="Pod label keys whose values (the incoming pod's) are ANDed into "
        "labelSelector.",
        max_length=MAX_ENTRIES,
    )
    mismatchLabelKeys: list[PodLabelKey] | None = Field(
        default=None,
        description="Pod label keys whose values (the incoming pod's) must differ, ANDed into "
        "labelSelector.",
        max_length=MAX_ENTRIES,
    )


class WeightedPodAffinityTerm(Model):
    """A pod affinity term with a weight."""

    weight: int = Field(ge=1, le=100, description="Weight of this term, 1-100.")
    podAffinityTerm: PodAffinityTerm = Field(description="The pod affinity term.")


class PodAffinity(Model):
    """Pods this pod is scheduled beside."""

    requiredDuringSchedulingIgnoredDuringExecution: list[PodAffinityTerm] | None = Field(
        default=None, description="Terms every candidate node must satisfy.", max_length=16
    )
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, description="Terms the scheduler prefers, by weight.", max_length=16
    )


class PodAntiAffinity(Model):
    """Pods this pod is kept away from."""

    requiredDuringSchedulingIgnoredDuringExecution: list[PodAffinityTerm] | None = Field(
        default=None, description="Terms every candidate node must satisfy.", max_length=16
    )
    preferredDuringSchedulingIgnoredDuringExecution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, description="Terms the scheduler prefers, by weight.", max_length=16
    )


class Affinity(Model):
    """The pod's affinity scheduling rules (the Pod's spec.affinity)."""

    nodeAffinity: NodeAffinity | None = Field(
        default=None, description="Node affinity scheduling rules."
    )
    podAffinity: PodAffinity | None = Field(
        default=None, description="Rules to schedule the pod beside other pods."
    )
    podAntiAffinity: PodAntiAffinity | None = Field(
        default=None, description="Rules to keep the pod away from other pods."
    )


class Toleration(Model):
    """The pod tolerates any taint matching key, value and effect with the operator."""

    key: LabelKey | None = Field(
        default=None,
        description="The taint key; empty with operator Exists matches every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None,
        description="Exists (any value) or Equal (the default: the taint's value is value).",
    )
    value: LabelValue | None = Field(
        default=None, description="The taint value; empty for operator Exists."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect to match; empty matches every effect."
    )
    tolerationSeconds: int | None = Field(
        default=None,
        ge=0,
        description="For effect NoExecute: how long the pod stays bound after the taint "
        "appears; unset: forever.",
    )


class TopologySpreadConstraint(Model):
    """How the component's pods spread over topology domains (nodes, zones)."""

    maxSkew: int = Field(
        ge=1,
        description="The most the number of matching pods may differ between two domains.",
    )
    topologyKey: str = Field(
        min_length=1,
        description="The node label whose values are the domains, e.g. "
        "kubernetes.io/hostname or topology.kubernetes.io/zone.",
    )
    whenUnsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule: a pod that would break maxSkew stays pending; "
        "ScheduleAnyway: the scheduler only prefers domains that reduce the skew."
    )
    labelSelector: LabelSelector | None = Field(
        default=None,
        description="The pods counted in each domain; unset: the component's own pods.",
    )
    minDomains: int | None = Field(
        default=None,
        ge=1,
        description="With DoNotSchedule: the fewest eligible domains (fewer count as zero "
        "pods each).",
    )
    nodeAffinityPolicy: Literal["Honor", "Ignore"] | None = Field(
        default=None,
        description="Whether the pod's nodeAffinity/nodeSelector limit the domains counted "
        "(Honor, the default) or not (Ignore).",
    )
    nodeTaintsPolicy: Literal["Honor", "Ignore"] | None = Field(
        default=None,
        description="Whether nodes with taints the pod does not tolerate are counted "
        "(Ignore, the default) or not (Honor).",
    )
    matchLabelKeys: list[PodLabelKey] | None = Field(
        default=None,
        description="Pod label keys whose values (the incoming pod's) are ANDed into "
        "labelSelector, e.g. pod-template-hash to count one revision's pods only.",
        max_length=MAX_ENTRIES,
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """A declared shape as the pod spec takes it: the fields that were set."""
    return model.model_dump(mode="json", exclude_none=True)

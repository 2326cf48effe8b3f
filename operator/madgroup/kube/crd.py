"""The MadGroup custom resource: the neutral model (:mod:`madgroup.spec`) with what only
Kubernetes honours, the status the operator writes, and the CRD generated from both.

Kubernetes adds: an image pull policy, container resources, a storage class, whether a
volume outlives its group and that it only grows, the type of the exposed MAD's Service, a
referenced Secret for a MAD's bus password (elsewhere the substrate makes and keeps it),
and per component its placement (node selector, affinity, tolerations, topology spread,
priority class), its disruption budget and, for a stateless MAD that may run replicas, an
autoscaler. Each MAD's part is
derived from its neutral settings and what the topology says of it, so an installed MAD
is in the CRD with no change here. Cross-field rules live twice on
purpose: as CEL ``x-kubernetes-validations`` (the API server refuses the object) and as the
model's validators (an object that slipped past the schema, e.g. created before the CRD was
updated, is reported ``Stalled`` instead of being half-applied).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    WithJsonSchema,
    create_model,
    model_validator,
)

from madgroup import rollout, spec, topology
from madgroup.kube import scheduling
from madgroup.spec import API_VERSION, GROUP, KIND, QUANTITY, VERSION, Model
from mads.fiedler.contract import LLM_KEYED, LLM_REQUIRES, SHARED_STORE

__all__ = ["API_VERSION", "GROUP", "KIND", "VERSION"]

PLURAL = "madgroups"
SINGULAR = "madgroup"
SHORT_NAMES = ("mg",)
PAUSED_ANNOTATION = f"{GROUP}/paused"
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


class KubeImageSpec(spec.ImageSpec):
    """Where the MAD images come from."""

    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of every container."
    )


Quantity = Annotated[str, Field(pattern=QUANTITY, description="A Kubernetes quantity.")]
_RESOURCE_KEYS_RULE: dict[str, JsonValue] = {
    "rule": "self.all(k, k in " + repr(list(RESOURCE_NAMES)).replace(" ", "") + ")",
    "message": "resource names are " + ", ".join(RESOURCE_NAMES),
}


class Resources(Model):
    """Compute resources of a component's container (Kubernetes quantities)."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Minimum resources, e.g. {cpu: 100m, memory: 128Mi}.",
        json_schema_extra={"x-kubernetes-validations": [_RESOURCE_KEYS_RULE]},
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources, e.g. {memory: 256Mi}.",
        json_schema_extra={"x-kubernetes-validations": [_RESOURCE_KEYS_RULE]},
    )

    @model_validator(mode="after")
    def _quantities(self) -> Resources:
        for which, values in (("requests", self.requests), ("limits", self.limits)):
            for name in values:
                if name not in RESOURCE_NAMES:
                    raise ValueError(
                        f"{which}.{name}: unknown resource (use {', '.join(RESOURCE_NAMES)})"
                    )
        return self


_NO_SHRINK: dict[str, JsonValue] = {
    "rule": "quantity(self).compareTo(quantity(oldSelf)) >= 0",
    "messageExpression": "'cannot shrink from ' + oldSelf + ' to ' + self + "
    "': a volume only grows'",
}
"""A transition rule: the API server refuses a smaller ``storage.size`` (Kubernetes' CEL
quantity library, 1.30 and later). The operator refuses one that got past it
(:mod:`madgroup.kube.volumes`) with the same words."""


def shrink_message(old: str, new: str) -> str:
    """The words of :data:`_NO_SHRINK`, for the operator's own refusal."""
    return f"cannot shrink from {old} to {new}: a volume only grows"


class KubeStorageSpec(spec.StorageSpec):
    """The persistent volume of a stateful component."""

    size: str = Field(
        default="1Gi",
        description="Requested volume size (a quantity, e.g. 1Gi). It may grow: the claims "
        "are expanded where their StorageClass allows it (allowVolumeExpansion); it never "
        "shrinks.",
        pattern=QUANTITY,
        max_length=64,
        json_schema_extra={"x-kubernetes-validations": [_NO_SHRINK]},
    )
    storageClassName: str | None = Field(
        default=None,
        description="StorageClass of the volume; the cluster default when unset.",
        pattern=spec.DNS_SUBDOMAIN,
    )
    retainOnDelete: bool = Field(
        default=True,
        description="Keep the PersistentVolumeClaim when the MadGroup is deleted (data survives).",
    )


class WithResources(BaseModel):
    resources: Resources | None = Field(
        default=None, description="Container resource requests and limits."
    )


class WithPlacement(BaseModel):
    """Where the component's pods may run (the Pod's own scheduling fields)."""

    nodeSelector: dict[scheduling.LabelKey, scheduling.LabelValue] | None = scheduling.label_map(
        "Node labels a node must have to run the component's pods."
    )
    affinity: scheduling.Affinity | None = Field(
        default=None, description="Node affinity, pod affinity and anti-affinity of its pods."
    )
    tolerations: list[scheduling.Toleration] | None = Field(
        default=None,
        description="Taints its pods tolerate (e.g. of nodes kept for the group).",
        max_length=scheduling.MAX_ENTRIES,
    )
    topologySpreadConstraints: list[scheduling.TopologySpreadConstraint] | None = Field(
        default=None,
        description="How its pods spread over nodes or zones (a constraint without "
        "labelSelector counts the component's own pods). Unset: a component that runs more "
        "than one pod spreads them over nodes (maxSkew 1 over kubernetes.io/hostname, "
        "ScheduleAnyway); [] turns that off.",
        max_length=8,
    )
    priorityClassName: str | None = Field(
        default=None,
        description="The PriorityClass of its pods (it must exist).",
        max_length=253,
        pattern=spec.DNS_SUBDOMAIN,
    )


IntOrPercent = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]
"""A number of pods or a percentage (Kubernetes' IntOrString)."""
_INT_OR_PERCENT = r"^[0-9]{1,3}%$"


def _int_or_percent(value: int | str | None, where: str) -> None:
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{where}: should be 0 or more")
    if isinstance(value, str) and re.fullmatch(_INT_OR_PERCENT, value) is None:
        raise ValueError(f"{where}: a number of pods or a percentage such as 50%")


def _int_or_percent_rule(field: str) -> dict[str, JsonValue]:
    return {
        "rule": f"!has(self.{field}) || (type(self.{field}) == int ? self.{field} >= 0 : "
        f"self.{field}.matches({_INT_OR_PERCENT!r}))",
        "message": "a number of pods or a percentage such as 50%",
        "fieldPath": f".{field}",
    }


class DisruptionBudget(Model):
    """A PodDisruptionBudget for the component's pods: how many of them a voluntary
    disruption (a node drain, an eviction) may take at once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxUnavailable) || !has(self.minAvailable)",
                    "message": "set maxUnavailable or minAvailable, not both",
                },
                _int_or_percent_rule("maxUnavailable"),
                _int_or_percent_rule("minAvailable"),
            ]
        },
    )

    enabled: bool = Field(
        default=True, description="false: no PodDisruptionBudget for this component."
    )
    maxUnavailable: IntOrPercent | None = Field(
        default=None,
        description="Pods (or a percentage) a disruption may take at once; 1 when neither "
        "this nor minAvailable is set.",
    )
    minAvailable: IntOrPercent | None = Field(
        default=None, description="Pods (or a percentage) that must stay available."
    )

    @model_validator(mode="after")
    def _one_bound(self) -> DisruptionBudget:
        if self.maxUnavailable is not None and self.minAvailable is not None:
            raise ValueError("set maxUnavailable or minAvailable, not both")
        _int_or_percent(self.maxUnavailable, "maxUnavailable")
        _int_or_percent(self.minAvailable, "minAvailable")
        return self


class WithDisruptionBudget(BaseModel):
    disruptionBudget: DisruptionBudget | None = Field(
        default=None,
        description="The component's PodDisruptionBudget. Unset: maxUnavailable 1 for a "
        "component that may run replicas (Sequential Thinking, Grace), none for a "
        "single-instance one (a budget that allows no disruption of its one pod would block "
        "every node drain).",
    )


class Autoscaling(Model):
    """A HorizontalPodAutoscaler (autoscaling/v2) scales the component on its pods' CPU; the
    operator then leaves the Deployment's replicas to it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                }
            ]
        },
    )

    minReplicas: int = Field(
        default=1, ge=1, le=spec.model.MAX_REPLICAS, description="The fewest replicas."
    )
    maxReplicas: int = Field(ge=1, le=spec.model.MAX_REPLICAS, description="The most replicas.")
    targetCPUUtilizationPercentage: int = Field(
        default=80,
        ge=1,
        le=1000,
        description="Average CPU use the autoscaler aims at, as a percentage of the "
        "containers' CPU request (resources.requests.cpu, required).",
    )

    @model_validator(mode="after")
    def _range(self) -> Autoscaling:
        if self.minReplicas > self.maxReplicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class WithAutoscaling(WithResources):
    """A stateless component that may run replicas: it may be autoscaled (its CPU request is
    what the utilisation is a share of)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.autoscaling) || (has(self.resources) && "
                    "has(self.resources.requests) && 'cpu' in self.resources.requests)",
                    "message": "autoscaling needs resources.requests.cpu (the target "
                    "utilisation is a share of it)",
                    "fieldPath": ".autoscaling",
                }
            ]
        }
    )

    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Scale on CPU between minReplicas and maxReplicas (a "
        "HorizontalPodAutoscaler); replicas is then only where the Deployment starts.",
    )

    @model_validator(mode="after")
    def _cpu_request(self) -> WithAutoscaling:
        if self.autoscaling is not None and (
            self.resources is None or "cpu" not in self.resources.requests
        ):
            raise ValueError(
                "autoscaling needs resources.requests.cpu (the target utilisation is a share of it)"
            )
        return self


def autoscalable(comp: topology.Component) -> bool:
    """Whether a component may be autoscaled: a MAD with no data of its own that may run
    replicas (Sequential Thinking, Grace)."""
    return comp.is_mad and not comp.stateful and comp.max_replicas != 1


class WithBusUser(BaseModel):
    busPasswordSecretRef: spec.SecretKeyRef | None = Field(
        default=None,
        description="This MAD's own bus password (its Redis ACL user). Unset: a Secret "
        "the operator generates once, <group>-<component>-bus.",
    )


class WithServiceType(BaseModel):
    serviceType: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of the component's Service (it is exposed)."
    )


MAXMEMORY_SHARE = (3, 4)
"""Redis's memory limit under a container memory limit when none is declared: 3/4 of it
(Redis needs room beyond its data: buffers, the AOF rewrite's fork)."""


class KubeRedisSpec(spec.RedisSpec, WithResources, WithPlacement, WithDisruptionBudget):
    """The Conversation Bus."""

    storage: KubeStorageSpec = Field(
        default_factory=KubeStorageSpec, description="Volume for Redis's append-only file."
    )

    def _memory_limit(self) -> str | None:
        return self.resources.limits.get("memory") if self.resources is not None else None

    def default_maxmemory(self) -> str:
        """Under a container memory limit, :data:`MAXMEMORY_SHARE` of it (so Redis refuses
        writes before the kernel kills it); else the neutral default."""
        limit = self._memory_limit()
        if limit is None:
            return super().default_maxmemory()
        share, whole = MAXMEMORY_SHARE
        return f"{spec.model.memory_bytes(limit) * share // whole // 1024**2}Mi"

    @model_validator(mode="after")
    def _maxmemory_below_the_limit(self) -> KubeRedisSpec:
        limit = self._memory_limit()
        if limit is None:
            return self
        maxmemory = self.maxmemory or self.default_maxmemory()
        too_much = spec.model.memory_bytes(maxmemory) >= spec.model.memory_bytes(limit)
        too_little = spec.model.memory_bytes(maxmemory) < spec.model.MIN_MAXMEMORY_BYTES
        if too_much:
            raise ValueError(
                f"maxmemory {maxmemory} must stay below resources.limits.memory {limit}, or "
                "the kernel kills Redis before it refuses writes (about 3/4 of the limit)"
            )
        if too_little:
            raise ValueError(f"resources.limits.memory {limit} is too little for Redis")
        return self


def _llm_rules() -> list[JsonValue]:
    """Fiedler's provider rule (:data:`mads.fiedler.contract.LLM_REQUIRES`) as CEL, in the
    words the model's validator uses."""
    fields = spec.model.LLM_FIELDS
    rules: list[JsonValue] = []
    for provider, needs in LLM_REQUIRES.items():
        if needs:
            has = " && ".join(f"has(self.{fields[key]})" for key in needs)
            rules.append(
                {
                    "rule": f"self.{fields['provider']} != '{provider}' || ({has})",
                    "message": spec.model.llm_needs_message(provider, needs),
                }
            )
    keyed = " || ".join(f"self.{fields['provider']} == '{p}'" for p in LLM_KEYED)
    rules.append(
        {
            "rule": f"{keyed} || !has(self.{fields['api_key']})",
            "message": spec.model.llm_key_message(),
        }
    )
    return rules


def _rules(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, JsonValue]:
    """``x-kubernetes-validations`` from (rule, message[, fieldPath]) triples."""
    found: list[JsonValue] = []
    for rule, message, *where in rules:
        entry: dict[str, JsonValue] = {"rule": rule, "message": message}
        if where:
            entry["fieldPath"] = where[0]
        found.append(entry)
    return {"x-kubernetes-validations": found}


class KubeLLMSpec(spec.LLMSpec):
    """Where Fiedler's answers come from."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"x-kubernetes-validations": _llm_rules()}
    )


_SHARED = f"'{SHARED_STORE}'"
_STORE = spec.model.STORE_RULES


class KubeFiedlerStoreSpec(spec.FiedlerStoreSpec):
    """Where Fiedler keeps its tasks."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_rules(
            (f"self.type != {_SHARED} || has(self.uriSecretRef)", _STORE["uri_needed"]),
            (f"self.type == {_SHARED} || !has(self.uriSecretRef)", _STORE["uri_only"]),
        ),
    )


class OneWriter(BaseModel):
    """Fiedler's replicas need the shared store (named at ``replicas``, as the model's
    validator names it)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                f"self.replicas <= 1 || (has(self.store) && self.store.type == {_SHARED})",
                _STORE["one_writer"],
                ".replicas",
            )
        )
    )


_GRACE = spec.model.GRACE_RULES


class KubeIntrospectionSpec(spec.IntrospectionSpec):
    """RFC 7662 introspection of opaque (non-JWT) access tokens."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_rules(
            (
                "!has(self.url) || (has(self.clientId) && has(self.clientSecretRef))",
                _GRACE["introspection_needs"],
            ),
            (
                "has(self.url) || (!has(self.clientId) && !has(self.clientSecretRef))",
                _GRACE["introspection_only"],
            ),
        ),
    )


class KubeGraceOAuthSpec(spec.GraceOAuthSpec):
    """Grace as an OAuth 2.1 resource server."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_rules(
            (
                "!has(self.issuer) || (has(self.resource) && has(self.scopes))",
                _GRACE["issuer_needs"],
            ),
            (
                "has(self.issuer) || !(has(self.resource) || has(self.audience) || "
                "has(self.scopes) || (has(self.introspection) && has(self.introspection.url)))",
                _GRACE["needs_issuer"],
            ),
            ("self.staticTokens || has(self.issuer)", _GRACE["static_off"]),
        ),
    )


class StaticTokensOff(BaseModel):
    """With static tokens off, Grace is declared none."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.oauth) || self.oauth.staticTokens || "
                "(!has(self.tokenSecretRef) && !has(self.tokens))",
                _GRACE["static_off_tokens"],
            )
        )
    )


KUBE_PARTS: dict[type[BaseModel], type[BaseModel]] = {
    spec.StorageSpec: KubeStorageSpec,
    spec.LLMSpec: KubeLLMSpec,
    spec.FiedlerStoreSpec: KubeFiedlerStoreSpec,
    spec.IntrospectionSpec: KubeIntrospectionSpec,
    spec.GraceOAuthSpec: KubeGraceOAuthSpec,
}
"""A neutral part of a component's settings -> what it is on Kubernetes (its CEL rules)."""

KUBE_RULES: dict[type[spec.ComponentSpec], type[BaseModel]] = {
    spec.FiedlerSpec: OneWriter,
    spec.GraceSpec: StaticTokensOff,
}
"""A MAD's settings class -> the CEL rules across its fields (the model's validators')."""


def kube_part(neutral: type[BaseModel]) -> type[BaseModel]:
    """A part of the settings as Kubernetes has it (:data:`KUBE_PARTS`), with its own parts
    so too, at any depth."""
    base = KUBE_PARTS.get(neutral, neutral)
    parts = _kube_parts(base)
    if not parts:
        return base
    return create_model(
        base.__name__ if base is not neutral else f"Kube{neutral.__name__}",
        __base__=base,
        __doc__=base.__doc__,
        __module__=__name__,
        **parts,
    )


def _kube_parts(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields whose type has a Kubernetes form, retyped (each such field is a
    part made by its default factory, as the settings' parts are)."""
    parts: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            continue
        kube = kube_part(kind)
        if kube is not kind:
            assert field.default_factory is not None, f"{name}: a part has a default factory"
            parts[name] = (kube, Field(default_factory=kube, description=field.description))
    return parts


def kube_settings(comp: topology.Component) -> type[spec.ComponentSpec]:
    """A MAD's settings on Kubernetes: its neutral ones (``spec.MadGroupSpec``'s field),
    their parts as Kubernetes has them (:data:`KUBE_PARTS`), its CEL rules
    (:data:`KUBE_RULES`), container resources, placement and a disruption budget, an
    autoscaler for a stateless one that may run replicas, a referenced bus password for a
    MAD on the bus and a Service type for the exposed one."""
    neutral = spec.MadGroupSpec.model_fields[spec.model.field_name(comp.name)].annotation
    assert isinstance(neutral, type) and issubclass(neutral, spec.ComponentSpec)
    mixins: list[type[BaseModel]] = [
        WithAutoscaling if autoscalable(comp) else WithResources,
        WithPlacement,
        WithDisruptionBudget,
    ]
    if comp.bus_user is not None:
        mixins.append(WithBusUser)
    if comp.exposed:
        mixins.append(WithServiceType)
    mixins += [rules for cls, rules in KUBE_RULES.items() if issubclass(neutral, cls)]
    parts = _kube_parts(neutral)
    bases: tuple[type[BaseModel], ...] = (neutral, *mixins)
    made = create_model(
        f"Kube{neutral.__name__}",
        __base__=bases,
        __doc__=neutral.__doc__,
        __module__=__name__,
        **parts,
    )
    return cast(type[spec.ComponentSpec], made)


class IssuerRef(Model):
    """A cert-manager issuer (a CA or self-signed one: the Secrets it writes must hold
    ``ca.crt``)."""

    name: str = Field(
        description="Name of the Issuer or ClusterIssuer.", pattern=spec.DNS_SUBDOMAIN
    )
    kind: Literal["Issuer", "ClusterIssuer"] = Field(default="Issuer", description="Its kind.")
    group: Literal["cert-manager.io"] = Field(
        default="cert-manager.io", description="Its API group."
    )


class KubeTLSSpec(spec.TLSSpec):
    """Encryption of the group's own traffic."""

    issuerRef: IssuerRef | None = Field(
        default=None,
        description="cert-manager issues the certificates (Certificate objects) instead of "
        "the operator's own CA.",
    )


# ``MadGroup.spec`` as the operator takes it: the neutral model plus the fields only
# Kubernetes honours. (Each class's docstring is its description in the CRD.)
class KubeBackupSpec(Model):
    """Scheduled backups (``madgroup backup``'s archive): Fiedler's task store through
    SQLite's online backup API and Redis's snapshot, written to a PersistentVolumeClaim."""

    schedule: str = Field(
        default="0 3 * * *",
        description="When, as a cron expression (the CronJob's schedule).",
        pattern=r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$",
    )
    retention: int = Field(
        default=7, ge=1, le=1000, description="How many archives to keep (the newest)."
    )
    claimName: str = Field(
        description="The PersistentVolumeClaim the archives are written to (it must exist).",
        pattern=spec.DNS_SUBDOMAIN,
    )


@spec.model.with_mads(kube_settings)
class KubeMadGroupSpec(spec.MadGroupSpec):
    """The desired MAD group."""

    image: KubeImageSpec = Field(default_factory=KubeImageSpec, description="Images of the MADs.")
    redis: KubeRedisSpec = Field(default_factory=KubeRedisSpec, description="The Conversation Bus.")
    tls: KubeTLSSpec = Field(default_factory=KubeTLSSpec, description="Encryption of the bus.")
    backup: KubeBackupSpec | None = Field(
        default=None, description="Scheduled backups to a PersistentVolumeClaim; none when unset."
    )

    def bus_password(self, user: str) -> spec.SecretKeyRef | None:
        """The Secret a bus user's password is referenced from; None: the generated one."""
        found = self.component(user)
        return found.busPasswordSecretRef if isinstance(found, WithBusUser) else None


def parse(raw: Any) -> KubeMadGroupSpec:
    """The spec of a MadGroup object, or :class:`~madgroup.spec.InvalidSpecError`."""
    parsed = spec.parse_spec(raw, KubeMadGroupSpec)
    assert isinstance(parsed, KubeMadGroupSpec)
    return parsed


# ---- status -------------------------------------------------------------------------------


def _condition_schema(schema: dict[str, Any]) -> None:
    schema["description"] = "A condition per the Kubernetes API conventions."
    schema["properties"]["lastTransitionTime"]["format"] = "date-time"


# The conditions every substrate reports are a plain dataclass of the model; its attribute
# docstrings describe it in the CRD.
rollout.Condition.__pydantic_config__ = ConfigDict(  # type: ignore[attr-defined]
    use_attribute_docstrings=True, json_schema_extra=_condition_schema
)


class ComponentStatus(Model):
    """What the operator observed of one component."""

    readyReplicas: int = Field(default=0, description="Pods passing their readinessProbe.")
    desiredReplicas: int = Field(default=0, description="Pods the spec asks for.")
    image: str = Field(default="", description="Image the component is rolled to.")
    message: str = Field(default="", description="Where the component's rollout stands.")


class MadGroupStatus(Model):
    """Observed state, written by the operator only."""

    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the status describes."
    )
    conditions: list[rollout.Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled, Paused and <Component>Ready.",
    )
    components: dict[str, ComponentStatus] = Field(
        default_factory=dict, description="Per component (topology name): replicas and image."
    )


# ---- CRD ----------------------------------------------------------------------------------

_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "pattern",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
}


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turn one pydantic JSON schema node into a structural OpenAPI v3 node: refs inlined,
    ``Optional`` unwrapped, ``const`` turned into ``enum``, titles and nulls dropped."""
    description = schema.get("description")
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        node = _structural(target, defs)
        if description:
            node["description"] = description
        return node
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if len(options) != 1:
            raise TypeError(f"cannot render a union in a structural schema: {schema}")
        node = _structural(options[0], defs)
        for key in ("description", "default", "format"):
            if schema.get(key) is not None:
                node[key] = schema[key]
        rules = schema.get("x-kubernetes-validations")
        if rules:
            node["x-kubernetes-validations"] = [*node.get("x-kubernetes-validations", []), *rules]
        return node
    node = {k: v for k, v in schema.items() if k in _KEEP and v is not None}
    if "const" in schema:
        node["enum"] = [schema["const"]]
    if schema.get("type") == "object":
        if "properties" in schema:
            node["properties"] = {
                name: _structural(sub, defs) for name, sub in schema["properties"].items()
            }
            required = [r for r in schema.get("required", []) if r in node["properties"]]
            if required:
                node["required"] = required
        if isinstance(schema.get("additionalProperties"), dict):
            node["additionalProperties"] = _structural(schema["additionalProperties"], defs)
        patterns = schema.get("patternProperties") or {}
        if patterns:  # a map whose keys follow a pattern: its values, the keys by CEL
            if len(patterns) != 1:
                raise TypeError(f"cannot render keys of several patterns: {schema}")
            (pattern, values), *_ = patterns.items()
            node["additionalProperties"] = _structural(values, defs)
            rules = node.setdefault("x-kubernetes-validations", [])
            if not any("self.all(k," in str(rule.get("rule")) for rule in rules):
                rules.append(_keys_rule(pattern))  # unless the field checks its keys itself
    if schema.get("type") == "array":
        node["items"] = _structural(schema["items"], defs)
    return node


def _keys_rule(pattern: str) -> dict[str, str]:
    """A CEL rule holding a map's keys to ``pattern`` (a regular expression RE2 reads as
    Python does: the CEL string literal keeps its backslashes)."""
    literal = pattern.replace("\\", "\\\\").replace("'", "\\'")
    return {"rule": f"self.all(k, k.matches('{literal}'))", "message": f"keys must match {pattern}"}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def _group_description() -> str:
    *first, last = topology.COMPONENT_NAMES
    return f"A MAD group: {', '.join(first)} and {last}, rolled out in dependency order."


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition for MadGroup."""
    spec_schema = openapi_schema(KubeMadGroupSpec)
    status_schema = openapi_schema(MadGroupStatus)
    condition = status_schema["properties"]["conditions"]["items"]
    condition["required"] = ["type", "status", "reason", "lastTransitionTime"]
    status_schema["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status_schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "madgroup"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _group_description(),
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "Versioned schema of this object.",
                                },
                                "kind": {
                                    "type": "string",
                                    "description": "REST resource this object represents.",
                                },
                                "metadata": {"type": "object"},
                                "spec": {**spec_schema, "default": {}},
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }

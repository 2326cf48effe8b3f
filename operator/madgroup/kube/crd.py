"""The MadGroup custom resource: the neutral model (:mod:`madgroup.spec`) with what only
Kubernetes honours, the status the operator writes, and the CRD generated from both.

Kubernetes adds: an image pull policy, container resources, a storage class and whether a
volume outlives its group, the type of the exposed MAD's Service, and a referenced Secret
for a MAD's bus password (elsewhere the substrate makes and keeps it). Each MAD's part is
derived from its neutral settings and what the topology says of it, so an installed MAD
is in the CRD with no change here. Cross-field rules live twice on
purpose: as CEL ``x-kubernetes-validations`` (the API server refuses the object) and as the
model's validators (an object that slipped past the schema, e.g. created before the CRD was
updated, is reported ``Stalled`` instead of being half-applied).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model, model_validator

from madgroup import rollout, spec, topology
from madgroup.spec import API_VERSION, GROUP, KIND, QUANTITY, VERSION, Model
from mads.fiedler.contract import LLM_KEYED, LLM_REQUIRES

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


class KubeStorageSpec(spec.StorageSpec):
    """The persistent volume of a stateful component."""

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


class KubeRedisSpec(spec.RedisSpec, WithResources):
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


class KubeLLMSpec(spec.LLMSpec):
    """Where Fiedler's answers come from."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"x-kubernetes-validations": _llm_rules()}
    )


KUBE_PARTS: dict[type[BaseModel], type[BaseModel]] = {
    spec.StorageSpec: KubeStorageSpec,
    spec.LLMSpec: KubeLLMSpec,
}
"""A neutral part of a component's settings -> what it is on Kubernetes."""


def kube_settings(comp: topology.Component) -> type[spec.ComponentSpec]:
    """A MAD's settings on Kubernetes: its neutral ones (``spec.MadGroupSpec``'s field),
    their parts as Kubernetes has them (:data:`KUBE_PARTS`), container resources, a
    referenced bus password for a MAD on the bus and a Service type for the exposed one."""
    neutral = spec.MadGroupSpec.model_fields[spec.model.field_name(comp.name)].annotation
    assert isinstance(neutral, type) and issubclass(neutral, spec.ComponentSpec)
    mixins: list[type[BaseModel]] = [WithResources]
    if comp.bus_user is not None:
        mixins.append(WithBusUser)
    if comp.exposed:
        mixins.append(WithServiceType)
    parts: dict[str, Any] = {}
    for name, field in neutral.model_fields.items():
        kube = KUBE_PARTS.get(field.annotation) if isinstance(field.annotation, type) else None
        if kube is not None:
            parts[name] = (kube, Field(default_factory=kube, description=field.description))
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
    "pattern",
    "format",
    "x-kubernetes-validations",
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
    if schema.get("type") == "array":
        node["items"] = _structural(schema["items"], defs)
    return node


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

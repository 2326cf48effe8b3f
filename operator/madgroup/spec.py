"""``MadGroup.spec`` (and the status the operator writes) as pydantic models.

The CRD's ``openAPIV3Schema`` is generated from these models (:func:`crd_manifest`), so the
API server and the operator validate against one description. Cross-field rules live twice
on purpose: as CEL ``x-kubernetes-validations`` (the API server refuses the object) and as
pydantic validators (an object that slipped past the schema, e.g. created before the CRD was
updated, is reported ``Stalled`` instead of being half-applied).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from madgroup import topology
from madgroup.errors import UsageError

GROUP = "madgroup.io"
VERSION = "v1alpha1"
KIND = "MadGroup"
PLURAL = "madgroups"
SINGULAR = "madgroup"
SHORT_NAMES = ("mg",)
API_VERSION = f"{GROUP}/{VERSION}"
PAUSED_ANNOTATION = f"{GROUP}/paused"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
IMAGE = r"^[^\s]+$"
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretKeyRef(_Model):
    """A key in a Secret in the MadGroup's namespace."""

    name: str = Field(
        description="Name of the Secret (in the MadGroup's namespace).",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    key: str = Field(
        description="Key inside the Secret whose value is used.",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
    )


class ImageSpec(_Model):
    """Where the MAD images come from."""

    repository: str = Field(
        default=topology.DEFAULT_IMAGE_REPOSITORY,
        description="Registry and path prefix; a MAD's image is <repository>/<component>:<tag>.",
        min_length=1,
        pattern=IMAGE,
    )
    tag: str = Field(
        default=topology.DEFAULT_IMAGE_TAG,
        description="Tag of every MAD image (Redis has its own image, see redis.image).",
        min_length=1,
        max_length=128,
        pattern=r"^[\w][\w.-]*$",
    )
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of every container."
    )


Quantity = Annotated[str, Field(pattern=QUANTITY, description="A Kubernetes quantity.")]
_RESOURCE_KEYS_RULE: dict[str, JsonValue] = {
    "rule": "self.all(k, k in " + repr(list(RESOURCE_NAMES)).replace(" ", "") + ")",
    "message": "resource names are " + ", ".join(RESOURCE_NAMES),
}


class Resources(_Model):
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


class StorageSpec(_Model):
    """The persistent volume of a stateful component."""

    size: str = Field(
        default="1Gi", description="Requested volume size (a quantity, e.g. 1Gi).", pattern=QUANTITY
    )
    storageClassName: str | None = Field(
        default=None,
        description="StorageClass of the volume; the cluster default when unset.",
        pattern=DNS_SUBDOMAIN,
    )
    retainOnDelete: bool = Field(
        default=True,
        description="Keep the PersistentVolumeClaim when the MadGroup is deleted (data survives).",
    )


def _component_fields(name: str) -> dict[str, Any]:
    comp = topology.component(name)
    replicas: dict[str, Any] = {"ge": 1}
    if comp.max_replicas is not None:
        replicas["le"] = comp.max_replicas
    return replicas


class ComponentSpec(_Model):
    """Settings every component shares."""

    image: str | None = Field(
        default=None,
        description="Full image reference for this component, overriding spec.image.",
        pattern=IMAGE,
    )
    replicas: int = Field(default=1, ge=1, le=20, description="Number of pods.")
    resources: Resources | None = Field(
        default=None, description="Container resource requests and limits."
    )


class RedisSpec(ComponentSpec):
    """The Conversation Bus."""

    replicas: int = Field(
        default=1,
        description="Number of pods: Redis runs exactly one.",
        **_component_fields("redis"),
    )
    passwordSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="Existing Secret key holding the Redis password; generated when unset.",
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Volume for Redis's append-only file."
    )


class SequentialThinkingSpec(ComponentSpec):
    """The Sequential Thinking MCP server."""


class GraceSpec(ComponentSpec):
    """The front door, the one component reachable from outside the group."""

    serviceType: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of Grace's Service."
    )
    tokenSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="Secret key with the bearer tokens (comma-separated) outside clients use.",
    )


class RogersSpec(ComponentSpec):
    """The bus monitor."""

    replicas: int = Field(
        default=1,
        description="Number of pods: Rogers is the group's single view of the bus.",
        **_component_fields("rogers"),
    )


class LLMSpec(_Model):
    """Where Fiedler's answers come from."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.provider != 'openai' || (has(self.baseUrl) && has(self.model))",
                    "message": "provider openai needs baseUrl and model",
                },
                {
                    "rule": "self.provider == 'openai' || !has(self.apiKeySecretRef)",
                    "message": "apiKeySecretRef applies only to provider openai",
                },
            ]
        },
    )

    provider: Literal["builtin", "openai"] = Field(
        default="builtin",
        description="builtin (answers operational checks only) or openai (any "
        "OpenAI-compatible endpoint: OpenAI, Ollama, vLLM, llama.cpp server).",
    )
    baseUrl: str | None = Field(
        default=None,
        description="Base URL of the OpenAI-compatible API, e.g. http://ollama:11434/v1.",
        pattern=r"^https?://[^\s]+$",
    )
    model: str | None = Field(default=None, description="Model name sent to the provider.")
    apiKeySecretRef: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the provider's API key."
    )

    @model_validator(mode="after")
    def _provider(self) -> LLMSpec:
        if self.provider == "openai" and not (self.baseUrl and self.model):
            raise ValueError("provider openai needs baseUrl and model")
        if self.provider != "openai" and self.apiKeySecretRef is not None:
            raise ValueError("apiKeySecretRef applies only to provider openai")
        return self


class FiedlerSpec(ComponentSpec):
    """The orchestrator (one writer of its SQLite task store)."""

    replicas: int = Field(
        default=1,
        description="Number of pods: Fiedler runs exactly one (SQLite, one writer).",
        **_component_fields("fiedler"),
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Volume for the task store (task history is data)."
    )
    llm: LLMSpec = Field(default_factory=LLMSpec, description="The LLM provider.")


class MadGroupSpec(_Model):
    """The desired MAD group."""

    image: ImageSpec = Field(default_factory=ImageSpec, description="Images of the MADs.")
    redis: RedisSpec = Field(default_factory=RedisSpec, description="The Conversation Bus.")
    sequentialThinking: SequentialThinkingSpec = Field(
        default_factory=SequentialThinkingSpec, description="The Sequential Thinking MCP server."
    )
    grace: GraceSpec = Field(default_factory=GraceSpec, description="The front door.")
    rogers: RogersSpec = Field(default_factory=RogersSpec, description="The bus monitor.")
    fiedler: FiedlerSpec = Field(default_factory=FiedlerSpec, description="The orchestrator.")
    paused: bool = Field(
        default=False,
        description="Stop changing the group's objects (same as annotation "
        'madgroup.io/paused: "true").',
    )

    def component(self, name: str) -> ComponentSpec:
        """The settings of a topology component (``sequential_thinking`` ->
        ``sequentialThinking``)."""
        topology.component(name)
        head, *rest = name.split("_")
        found: ComponentSpec = getattr(self, head + "".join(p.capitalize() for p in rest))
        return found

    def image_of(self, name: str) -> str:
        override = self.component(name).image
        if override:
            return override
        return topology.component(name).image(self.image.repository, self.image.tag)


# ---- status -------------------------------------------------------------------------------


class Condition(_Model):
    """A condition per the Kubernetes API conventions."""

    type: str = Field(description="Condition type, e.g. Ready or GraceReady.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word explaining the status.")
    message: str = Field(default="", description="Human-readable detail.")
    lastTransitionTime: str = Field(
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the condition was computed for."
    )


class ComponentStatus(_Model):
    """What the operator observed of one component."""

    readyReplicas: int = Field(default=0, description="Pods passing their readinessProbe.")
    desiredReplicas: int = Field(default=0, description="Pods the spec asks for.")
    image: str = Field(default="", description="Image the component is rolled to.")
    message: str = Field(default="", description="Where the component's rollout stands.")


class MadGroupStatus(_Model):
    """Observed state, written by the operator only."""

    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled, Paused and <Component>Ready.",
    )
    components: dict[str, ComponentStatus] = Field(
        default_factory=dict, description="Per component (topology name): replicas and image."
    )


# ---- validation ---------------------------------------------------------------------------


class InvalidSpecError(UsageError, ValueError):
    """A spec the operator will not act on; the message is one line for status and events."""


def parse_spec(raw: Any) -> MadGroupSpec:
    """Validate a raw ``spec`` into the model, or raise :class:`InvalidSpecError` naming every
    offending field."""
    try:
        return MadGroupSpec.model_validate(raw or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"spec.{where}: {msg}" if where != "spec" else f"spec: {msg}")
        raise InvalidSpecError("; ".join(problems)) from None


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
        for key in ("description", "default"):
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


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition for MadGroup."""
    spec_schema = openapi_schema(MadGroupSpec)
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
                            "description": "A MAD group: Redis, Sequential Thinking, Grace, "
                            "Rogers and Fiedler, rolled out in dependency order.",
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

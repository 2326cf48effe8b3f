"""The ``MadGroup`` model: what a user declares about the group, the same on every substrate.

One document — ``apiVersion: madgroup.io/v1alpha1``, ``kind: MadGroup``, ``spec`` — is
``kubectl apply``-ed on Kubernetes, taken by ``madgroup up -f`` locally and rendered by
``madgroup render compose -f`` for compose. This module is the substrate-neutral model of
``spec``, validated once with one set of messages. The group is data: ``spec`` has the
fields every group has (order, images, the bus, TLS) and one field per MAD the topology
holds, named after it (``sequential_thinking`` -> ``sequentialThinking``), so an installed
MAD is declarable with no change here. A MAD whose declaration says more than replicas and
an image has a settings class of its own (:data:`MAD_SETTINGS`). What only one substrate
can honour is that substrate's extension of this model: :mod:`madgroup.kube.crd` adds the
Kubernetes fields and generates the CRD from the result.

Secrets are referenced by name (:class:`SecretKeyRef`): on Kubernetes, a key of a Secret in
the group's namespace; locally and on compose, the variable of that name in ``.env``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from madgroup import rollout, topology
from madgroup.errors import UsageError
from mads.fiedler import contract as fiedler_contract
from mads.fiedler.contract import (
    LLM_KEYED,
    ONE_WRITER,
    SHARED_STORE,
    LLMProvider,
    TaskStore,
    llm_missing,
)
from mads.grace import contract as grace_contract
from mads.grace.scope_file import ScopeMapFile
from mads.grace.token_file import TokenEntry, TokenFile, TokenFileError

GROUP = "madgroup.io"
VERSION = "v1alpha1"
KIND = "MadGroup"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
IMAGE = r"^[^\s]+$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
MAX_REPLICAS = 20
"""The most instances a component may declare when its contract sets no limit."""

# ---- tunables: the types of the settings the declaration carries to a process ------------

DURATION = r"^[1-9][0-9]*(s|m|h|d|w)$"
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MEMORY = r"^[1-9][0-9]*(k|Ki|M|Mi|G|Gi|T|Ti)?$"
QUANTITY_SCALE: Mapping[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    **{unit: Decimal(1000) ** (i + 1) for i, unit in enumerate(("k", "M", "G", "T", "P", "E"))},
    **{
        unit: Decimal(1024) ** (i + 1)
        for i, unit in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    },
}
"""What each suffix of a :data:`QUANTITY` multiplies by."""
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_EXTRA_ENV = 100


def duration_seconds(text: str) -> int:
    """A declared duration (``7d``, ``12h``, ``30m``, ``90s``, ``2w``) in seconds."""
    return int(text[:-1]) * DURATION_SECONDS[text[-1]]


def memory_bytes(text: str) -> int:
    """An amount of memory (``512Mi``, ``1Gi``, ``2G``, ``1.5Gi``, a number of bytes: a
    :data:`QUANTITY`, which :data:`MEMORY` narrows) in bytes, rounded down."""
    number = text.rstrip("kKMGTPEim")
    return int(Decimal(number) * QUANTITY_SCALE[text[len(number) :]])


class InvalidSpecError(UsageError, ValueError):
    """A spec no substrate will act on; the message is one line (for a terminal, a status
    condition and an event alike)."""


class FieldRuleError(UsageError, ValueError):
    """A rule across a settings object's fields, reported at the one field it is about
    (``spec.fiedler.replicas: ...``, where the API server's CEL rule names it too); raised
    inside the model's validation, which words it as :class:`InvalidSpecError`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretKeyRef(Model):
    """A secret, by name: on Kubernetes the key ``key`` of the Secret ``name`` in the
    group's namespace; locally and on compose, the ``.env`` variable ``key``."""

    name: str = Field(
        description="Name of the Secret (Kubernetes; in the MadGroup's namespace).",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    key: str = Field(
        description="Key inside the Secret (Kubernetes) or variable in .env (local, compose).",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
    )


class ImageSpec(Model):
    """Where the MAD images come from (compose and Kubernetes)."""

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


class StorageSpec(Model):
    """The persistent data of a stateful component."""

    size: str = Field(
        default="1Gi", description="Requested volume size (a quantity, e.g. 1Gi).", pattern=QUANTITY
    )


EnvValue = Annotated[
    str, Field(description="The variable's value (never a secret: use a secret reference).")
]


class ComponentSpec(Model):
    """Settings every component shares."""

    image: str | None = Field(
        default=None,
        description="Full image reference for this component, overriding spec.image.",
        pattern=IMAGE,
    )
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS, description="Number of instances.")
    env: dict[str, EnvValue] | None = Field(
        default=None,
        description="Extra environment variables of this component's process, for what the "
        "declaration has no field for (e.g. OTEL_SERVICE_NAME). A variable MadGroup sets or "
        "reads itself (MAD_*, REDIS_*, a MAD's own prefix such as FIEDLER_*, a secret's) is "
        "refused: declare it with its field.",
        max_length=MAX_EXTRA_ENV,
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a variable name (letters, digits and _, not first a digit)"
                )
        return value

    def data_elsewhere(self) -> str | None:
        """Where this component's data is when the declaration puts it in a database
        outside the group instead of its own data file, and what backs that up (``in
        PostgreSQL, whose own backups keep it (...)``): then no substrate gives it a data
        volume, and backups hold none of that data. None: its data file, if its contract
        names one."""
        return None


DEFAULT_MAXMEMORY = "1Gi"
MIN_MAXMEMORY_BYTES = 16 * 1024**2
MaxmemoryPolicy = Literal[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


class RedisSpec(ComponentSpec):
    """The Conversation Bus."""

    replicas: int = Field(
        default=1, ge=1, le=1, description="Number of instances: Redis runs exactly one."
    )
    passwordSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="The administrator's Redis password (no MAD ever gets it; each has a bus "
        "user of its own). Unset: a generated Secret on Kubernetes, REDIS_PASSWORD in .env "
        "locally and on compose.",
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Data for Redis's append-only file."
    )
    maxmemory: str | None = Field(
        default=None,
        description="The most memory Redis uses for data (bytes, or with a unit: 512Mi, 1Gi); "
        "past it, what maxmemoryPolicy says. Unset: 1Gi (on Kubernetes with a memory limit, "
        "3/4 of the limit).",
        pattern=MEMORY,
    )
    maxmemoryPolicy: MaxmemoryPolicy = Field(
        default="noeviction",
        description="At maxmemory: noeviction refuses writes with an error (nothing accepted "
        "is dropped); the others evict keys, which may drop queued requests and buffers.",
    )

    @field_validator("maxmemory")
    @classmethod
    def _enough_memory(cls, value: str | None) -> str | None:
        if value is not None and memory_bytes(value) < MIN_MAXMEMORY_BYTES:
            raise ValueError(f"{value} is too little for Redis (at least 16Mi)")
        return value

    def default_maxmemory(self) -> str:
        """Redis's memory limit when the declaration sets none."""
        return DEFAULT_MAXMEMORY


class GraceLimitsSpec(Model):
    """Limits of every outside client (a token, an OAuth subject) that sets none of its own
    of that kind; past them Grace answers 429 with Retry-After."""

    requestsPerSecond: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Requests per second (a token bucket of one second's worth); unset: no limit.",
    )
    concurrentCalls: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Calls in flight at once; unset: no limit."
    )


# ---- Grace as an OAuth 2.1 resource server ------------------------------------------------

HTTP_URL = r"^https?://[^\s?#]+$"
GRACE_RULES: Mapping[str, str] = {
    "issuer_needs": "issuer needs resource and scopes",
    "needs_issuer": "resource, audience, scopes and introspection apply only with an issuer",
    "static_off": "staticTokens: false needs an issuer (or nobody gets in)",
    "static_off_tokens": "oauth.staticTokens is false: remove tokenSecretRef and tokens",
    "introspection_needs": "url needs clientId and clientSecretRef",
    "introspection_only": "clientId and clientSecretRef apply only with a url",
}
"""The rules of Grace's OAuth declaration, in the words the model's validators and the
CRD's CEL rules both use."""


Audience = Annotated[
    str, Field(min_length=1, max_length=2048, description="An audience (usually a URI).")
]


class IntrospectionSpec(Model):
    """RFC 7662 introspection of opaque (non-JWT) access tokens."""

    url: str | None = Field(
        default=None,
        description="The authorization server's introspection endpoint; unset: a bearer "
        "token that is not a JWT is refused.",
        pattern=HTTP_URL,
    )
    clientId: str | None = Field(
        default=None,
        description="Grace's client id at the introspection endpoint.",
        min_length=1,
        max_length=255,
    )
    clientSecretRef: SecretKeyRef | None = Field(
        default=None, description="The secret holding Grace's client secret there."
    )

    @model_validator(mode="after")
    def _complete(self) -> IntrospectionSpec:
        client = (self.clientId, self.clientSecretRef)
        if self.url is not None and None in client:
            raise ValueError(GRACE_RULES["introspection_needs"])
        if self.url is None and client != (None, None):
            raise ValueError(GRACE_RULES["introspection_only"])
        return self


class GraceOAuthSpec(Model):
    """Grace as an OAuth 2.1 resource server (the MCP authorization specification): it
    publishes Protected Resource Metadata and accepts access tokens its issuer signed for
    it, mapped onto Grace's own tool and topic scopes."""

    issuer: str | None = Field(
        default=None,
        description="The authorization server's issuer identifier (its metadata and JWKS "
        "are discovered from it).",
        pattern=HTTP_URL,
    )
    resource: str | None = Field(
        default=None,
        description="Grace's resource identifier: the public URL of its MCP endpoint "
        "(https://grace.example.com/mcp); required with an issuer.",
        pattern=HTTP_URL,
    )
    audience: list[Audience] | None = Field(
        default=None,
        description="Audiences accepted in a token's aud; unset: the resource.",
        min_length=1,
        max_length=100,
    )
    scopes: ScopeMapFile | None = Field(
        default=None,
        description="How OAuth scopes map onto Grace's tool and topic scopes, with limits "
        "per subject (Grace reads it as GRACE_OAUTH_SCOPES_FILE); required with an issuer.",
    )
    staticTokens: bool = Field(
        default=True,
        description="false: only OAuth access tokens are accepted (tokenSecretRef and "
        "tokens must then be unset, and an issuer set).",
    )
    introspection: IntrospectionSpec = Field(
        default_factory=IntrospectionSpec,
        description="Introspection of opaque access tokens (optional).",
    )

    @model_validator(mode="after")
    def _complete(self) -> GraceOAuthSpec:
        if self.issuer is not None and (self.resource is None or self.scopes is None):
            raise ValueError(GRACE_RULES["issuer_needs"])
        besides = (self.resource, self.audience, self.scopes, self.introspection.url)
        if self.issuer is None and any(v is not None for v in besides):
            raise ValueError(GRACE_RULES["needs_issuer"])
        if not self.staticTokens and self.issuer is None:
            raise ValueError(GRACE_RULES["static_off"])
        return self


class GraceSpec(ComponentSpec):
    """The front door, the one component reachable from outside the group."""

    maxInFlight: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="MCP requests each Grace replica works on at once (a relayed call waiting "
        "for its owner costs memory only); one more waits GRACE_INFLIGHT_WAIT_S, then gets "
        "503 with Retry-After (unset: Grace's default, 4096).",
    )
    limits: GraceLimitsSpec = Field(
        default_factory=GraceLimitsSpec,
        description="Default limits of outside clients (a declared token's own limits win).",
    )

    tokenSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="Secret with the bearer tokens (comma-separated) outside clients use.",
    )
    tokens: list[TokenEntry] | None = Field(
        default=None,
        description="Named front-door tokens with scopes and limits, each as the SHA-256 of "
        "the token (the declaration never holds a token); Grace reads them as "
        "GRACE_TOKENS_FILE.",
        max_length=10_000,
    )
    oauth: GraceOAuthSpec = Field(
        default_factory=GraceOAuthSpec,
        description="Grace as an OAuth 2.1 resource server: the access tokens an "
        "authorization server issues for it, beside (or instead of) the static tokens.",
    )

    @model_validator(mode="after")
    def _unique_tokens(self) -> GraceSpec:
        if self.tokens is not None:
            try:
                TokenFile(tokens=self.tokens).check_unique()
            except TokenFileError as exc:
                raise ValueError(f"tokens: {exc}") from None
        return self

    @model_validator(mode="after")
    def _static_tokens_off(self) -> GraceSpec:
        static = (self.tokenSecretRef, self.tokens)
        if not self.oauth.staticTokens and static != (None, None):
            raise ValueError(GRACE_RULES["static_off_tokens"])
        return self


LLM_FIELDS: Mapping[str, str] = {
    "provider": "provider",
    "base_url": "baseUrl",
    "model": "model",
    "api_key": "apiKeySecretRef",
}
""":class:`LLMSpec`'s field for each of Fiedler's LLM settings (keys of
:data:`mads.fiedler.contract.LLM_VARIABLES`)."""


def llm_needs_message(provider: str, missing: tuple[str, ...]) -> str:
    """The one line for a provider declared without what it requires (:data:`LLM_FIELDS`
    names)."""
    return f"provider {provider} needs {' and '.join(LLM_FIELDS[k] for k in missing)}"


def llm_key_message() -> str:
    return f"{LLM_FIELDS['api_key']} applies only to provider {' or '.join(LLM_KEYED)}"


class LLMSpec(Model):
    """Where Fiedler's answers come from."""

    provider: LLMProvider = Field(
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
        default=None, description="Secret holding the provider's API key."
    )
    timeoutSeconds: float | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="How long one request to the provider may take before it is retried "
        "(unset: Fiedler's default).",
    )

    @model_validator(mode="after")
    def _provider(self) -> LLMSpec:
        """The provider's rule (:data:`mads.fiedler.contract.LLM_REQUIRES`), in the
        declaration's words."""
        missing = llm_missing(self.provider, {"base_url": self.baseUrl, "model": self.model})
        if missing:
            raise ValueError(llm_needs_message(self.provider, missing))
        if self.provider not in LLM_KEYED and self.apiKeySecretRef is not None:
            raise ValueError(llm_key_message())
        return self


# ---- Fiedler's task store ------------------------------------------------------------------

STORE_RULES: Mapping[str, str] = {
    "uri_needed": f"type {SHARED_STORE} needs uriSecretRef",
    "uri_only": f"uriSecretRef applies only to type {SHARED_STORE}",
    "one_writer": f"more than one replica needs store.type {SHARED_STORE} ({ONE_WRITER})",
}
"""The task store's rules, in the words the model's validators and the CRD's CEL rules
both use."""


STORE_URI_KEY = "uri"
"""The key a CloudNativePG cluster's ``<cluster>-app`` Secret keeps its connection URI in."""


class StoreUriRef(SecretKeyRef):
    """The secret holding the task store's connection URI: on Kubernetes the key ``key``
    (``uri`` unless said) of the Secret ``name``; locally and on compose, the ``.env``
    variable ``key``."""

    key: str = Field(
        default=STORE_URI_KEY,
        description="Key inside the Secret (Kubernetes; default uri, as a CloudNativePG "
        "cluster's <cluster>-app Secret has it) or variable in .env (local, compose).",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY,
    )


class FiedlerStoreSpec(Model):
    """Where Fiedler keeps its tasks."""

    type: TaskStore = Field(
        default="sqlite",
        description="sqlite: a file on Fiedler's data volume (one replica; the deployment "
        f"guide's); {SHARED_STORE}: a database any number of replicas share (no volume).",
    )
    uriSecretRef: StoreUriRef | None = Field(
        default=None,
        description=f"With {SHARED_STORE}: the secret holding the connection URI "
        "(postgresql://user:password@host:5432/db). On Kubernetes a CloudNativePG "
        "cluster's <cluster>-app Secret works as it is (its key uri).",
    )

    @model_validator(mode="after")
    def _uri(self) -> FiedlerStoreSpec:
        if self.type == SHARED_STORE and self.uriSecretRef is None:
            raise ValueError(STORE_RULES["uri_needed"])
        if self.type != SHARED_STORE and self.uriSecretRef is not None:
            raise ValueError(STORE_RULES["uri_only"])
        return self


class RetentionSpec(Model):
    """Which finished tasks (COMPLETED, FAILED, CANCELLED) Fiedler deletes, in small batches."""

    maxAge: str | None = Field(
        default=None,
        description="Delete a task this long after it finished: a number and s, m, h, d or w "
        "(unset: Fiedler's default, 30d).",
        pattern=DURATION,
    )
    maxTasks: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="Keep at most this many finished tasks, the newest (unset: no limit).",
    )


class FiedlerSpec(ComponentSpec):
    """The orchestrator: its tasks in SQLite (one replica) or PostgreSQL (any number)."""

    storage: StorageSpec = Field(
        default_factory=StorageSpec,
        description="Data for the SQLite task store (task history); unused with PostgreSQL.",
    )
    llm: LLMSpec = Field(default_factory=LLMSpec, description="The LLM provider.")
    store: FiedlerStoreSpec = Field(
        default_factory=FiedlerStoreSpec, description="Where the tasks live."
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Tasks each replica works on at once, so LLM calls in flight (unset: 4 "
        "with an LLM endpoint, 32 with the built-in responder).",
    )
    retention: RetentionSpec = Field(
        default_factory=RetentionSpec,
        description="How long finished tasks are kept (PENDING and RUNNING ones always are).",
    )

    @model_validator(mode="after")
    def _one_writer(self) -> FiedlerSpec:
        if self.replicas > 1 and self.store.type != SHARED_STORE:
            raise FieldRuleError("replicas", STORE_RULES["one_writer"])
        return self

    def data_elsewhere(self) -> str | None:
        if self.store.type != SHARED_STORE:
            return None
        return (
            "in PostgreSQL, whose own backups keep it (pg_dump, or CloudNativePG's "
            "backups on Kubernetes)"
        )


MAD_SETTINGS: Mapping[str, type[ComponentSpec]] = {
    grace_contract.NAME: GraceSpec,
    fiedler_contract.NAME: FiedlerSpec,
}
"""The MADs whose declaration says more than every component's settings; any other MAD
the topology holds is declared with :class:`ComponentSpec`."""


def field_name(component: str) -> str:
    """A component's field in ``spec``: ``sequential_thinking`` -> ``sequentialThinking``."""
    head, *rest = component.split("_")
    return head + "".join(part.capitalize() for part in rest)


def mad_settings(comp: topology.Component) -> type[ComponentSpec]:
    """A MAD's settings class: its own (:data:`MAD_SETTINGS`) or the shared one, with
    ``replicas`` bounded by what its contract allows."""
    base = MAD_SETTINGS.get(comp.name, ComponentSpec)
    limit = comp.max_replicas or MAX_REPLICAS
    why = f": {comp.name} runs at most {limit}" if comp.max_replicas else ""
    return create_model(
        f"{rollout.camel(comp.name)}Spec",
        __base__=base,
        __doc__=base.__doc__ if base is not ComponentSpec else comp.description,
        __module__=__name__,
        replicas=(int, Field(default=1, ge=1, le=limit, description=f"Number of instances{why}.")),
    )


class TLSSpec(Model):
    """Encryption of the group's own traffic."""

    enabled: bool = Field(
        default=False,
        description="Redis speaks TLS only (its plaintext port is closed; client "
        "certificates optional) and every MAD connects with rediss://, verifying Redis's "
        "certificate against the group's private CA; Grace serves HTTPS.",
    )


GroupT = TypeVar("GroupT", bound="MadGroupSpec")


def with_mads(
    settings_of: Callable[[topology.Component], type[ComponentSpec]],
) -> Callable[[type[GroupT]], type[GroupT]]:
    """A class decorator: the group model with one field per MAD of the topology, of the
    type ``settings_of`` gives it (described by the MAD's contract)."""

    def decorate(cls: type[GroupT]) -> type[GroupT]:
        fields: dict[str, Any] = {}
        for comp in topology.COMPONENTS:
            if comp.is_mad:
                settings = settings_of(comp)
                fields[field_name(comp.name)] = (
                    settings,
                    Field(default_factory=settings, description=comp.description),
                )
        return create_model(
            cls.__name__, __base__=cls, __doc__=cls.__doc__, __module__=cls.__module__, **fields
        )

    return decorate


@with_mads(mad_settings)
class MadGroupSpec(Model):
    """The desired MAD group."""

    order: topology.Order = Field(
        default="guide",
        description="guide: start each component after the one before it (the deployment "
        "guide's order); graph: only after what it talks to, so independent components "
        "start side by side.",
    )
    image: ImageSpec = Field(default_factory=ImageSpec, description="Images of the MADs.")
    redis: RedisSpec = Field(default_factory=RedisSpec, description="The Conversation Bus.")
    tls: TLSSpec = Field(default_factory=TLSSpec, description="Encryption of the bus.")
    heartbeatSeconds: float | None = Field(
        default=None,
        ge=0.1,
        le=3600,
        description="How often every MAD on the bus publishes its heartbeat; Rogers marks a "
        "MAD STALE after 3 missed beats (unset: each MAD's default, 5).",
    )
    relayBacklogLimit: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Relayed requests that may wait unhandled in a MAD's request stream (e.g. "
        "while Fiedler is down); past it a call is refused 'busy, retry' and nothing is "
        "queued, so no accepted request is ever dropped (unset: 100000).",
    )
    paused: bool = Field(
        default=False,
        description="Stop changing the group (same as annotation madgroup.io/paused: "
        '"true" on Kubernetes).',
    )

    def component(self, name: str) -> ComponentSpec:
        """The settings of a topology component (``sequential_thinking`` ->
        ``sequentialThinking``)."""
        topology.component(name)
        found: ComponentSpec = getattr(self, field_name(name))
        return found

    def image_of(self, name: str) -> str:
        override = self.component(name).image
        if override:
            return override
        return topology.component(name).image(self.image.repository, self.image.tag)

    def password(self) -> SecretKeyRef | None:
        """The administrator's password's reference; None means the substrate's default."""
        return self.redis.passwordSecretRef


def secret_refs(model: BaseModel, root: str = "spec") -> dict[str, SecretKeyRef]:
    """Every secret the declaration references, by path (``spec.grace.tokenSecretRef``)."""
    found: dict[str, SecretKeyRef] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{root}.{name}"
        if isinstance(value, SecretKeyRef):
            found[where] = value
        elif isinstance(value, BaseModel):
            found.update(secret_refs(value, where))
    return found

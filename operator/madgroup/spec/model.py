"""``MadGroup``: what a user declares about the group, the same on every substrate.

One document — ``apiVersion: madgroup.io/v1alpha1``, ``kind: MadGroup``, ``spec`` — is
``kubectl apply``-ed on Kubernetes, taken by ``madgroup up -f`` locally and rendered by
``madgroup render compose -f`` for compose. This module is the substrate-neutral model of
``spec``, validated once with one set of messages. What only one substrate can honour
(a storage class, a Service type, resource requests) is that substrate's extension of this
model: :mod:`madgroup.kube.crd` adds the Kubernetes fields and generates the CRD from the
result.

Secrets are referenced by name (:class:`SecretKeyRef`): on Kubernetes, a key of a Secret in
the group's namespace; locally and on compose, the variable of that name in ``.env``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from madgroup import topology
from madgroup.errors import UsageError
from mads.fiedler.contract import LLM_VARIABLES
from mads.grace.contract import TOKENS_FILE_VARIABLE, TOKENS_VARIABLE
from mads.grace.token_file import TokenEntry, TokenFile, TokenFileError

GROUP = "madgroup.io"
VERSION = "v1alpha1"
KIND = "MadGroup"
API_VERSION = f"{GROUP}/{VERSION}"
PASSWORD_VARIABLE = "REDIS_PASSWORD"
"""The bus password's variable: the deployment guide's ``.env`` key."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
IMAGE = r"^[^\s]+$"


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
        pattern=r"^[-._a-zA-Z0-9]+$",
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


def _replicas(name: str, description: str) -> Any:
    """``replicas`` of a component, bounded by what its contract allows."""
    limit = topology.component(name).max_replicas
    return Field(default=1, ge=1, le=limit or 20, description=description)


class ComponentSpec(Model):
    """Settings every component shares."""

    image: str | None = Field(
        default=None,
        description="Full image reference for this component, overriding spec.image.",
        pattern=IMAGE,
    )
    replicas: int = Field(default=1, ge=1, le=20, description="Number of instances.")


@dataclass(frozen=True)
class Binding:
    """One environment variable a component gets from the declaration: a plain value, or
    a secret each substrate resolves by reference (never rendered as its value)."""

    variable: str
    value: str | None = None
    secret: SecretKeyRef | None = None
    file: str | None = None
    """Content for a file the substrate writes (not a secret); the variable holds its path."""


class RedisSpec(ComponentSpec):
    """The Conversation Bus."""

    replicas: int = _replicas(topology.REDIS, "Number of instances: Redis runs exactly one.")
    passwordSecretRef: SecretKeyRef | None = Field(
        default=None,
        description="The Redis password. Unset: a generated Secret on Kubernetes, "
        "REDIS_PASSWORD in .env locally and on compose.",
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Data for Redis's append-only file."
    )


class SequentialThinkingSpec(ComponentSpec):
    """The Sequential Thinking MCP server."""


class GraceSpec(ComponentSpec):
    """The front door, the one component reachable from outside the group."""

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

    @model_validator(mode="after")
    def _unique_tokens(self) -> GraceSpec:
        if self.tokens is not None:
            try:
                TokenFile(tokens=self.tokens).check_unique()
            except TokenFileError as exc:
                raise ValueError(f"tokens: {exc}") from None
        return self

    def bindings(self) -> list[Binding]:
        found = []
        if self.tokenSecretRef is not None:
            found.append(Binding(TOKENS_VARIABLE, secret=self.tokenSecretRef))
        if self.tokens is not None:
            document = TokenFile(tokens=self.tokens).model_dump(exclude_none=True)
            found.append(Binding(TOKENS_FILE_VARIABLE, file=json.dumps(document, indent=2)))
        return found


class RogersSpec(ComponentSpec):
    """The bus monitor."""

    replicas: int = _replicas(
        topology.ROGERS, "Number of instances: Rogers is the group's single view of the bus."
    )


class LLMSpec(Model):
    """Where Fiedler's answers come from."""

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
        default=None, description="Secret holding the provider's API key."
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

    replicas: int = _replicas(
        topology.FIEDLER, "Number of instances: Fiedler runs exactly one (SQLite, one writer)."
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Data for the task store (task history)."
    )
    llm: LLMSpec = Field(default_factory=LLMSpec, description="The LLM provider.")

    def bindings(self) -> list[Binding]:
        """The provider's variables; none for the built-in responder (Fiedler's default,
        so a ``.env`` that configures a provider keeps working with the built-in group)."""
        llm = self.llm
        if llm.provider == "builtin":
            return []
        found = [Binding(LLM_VARIABLES["provider"], value=llm.provider)]
        if llm.baseUrl:
            found.append(Binding(LLM_VARIABLES["base_url"], value=llm.baseUrl))
        if llm.model:
            found.append(Binding(LLM_VARIABLES["model"], value=llm.model))
        if llm.apiKeySecretRef is not None:
            found.append(Binding(LLM_VARIABLES["api_key"], secret=llm.apiKeySecretRef))
        return found


class TLSSpec(Model):
    """Encryption of the group's own traffic."""

    enabled: bool = Field(
        default=False,
        description="Redis speaks TLS only (its plaintext port is closed; client "
        "certificates optional) and every MAD connects with rediss://, verifying Redis's "
        "certificate against the group's private CA; Grace serves HTTPS.",
    )


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
    sequentialThinking: SequentialThinkingSpec = Field(
        default_factory=SequentialThinkingSpec, description="The Sequential Thinking MCP server."
    )
    grace: GraceSpec = Field(default_factory=GraceSpec, description="The front door.")
    rogers: RogersSpec = Field(default_factory=RogersSpec, description="The bus monitor.")
    fiedler: FiedlerSpec = Field(default_factory=FiedlerSpec, description="The orchestrator.")
    tls: TLSSpec = Field(default_factory=TLSSpec, description="Encryption of the bus.")
    paused: bool = Field(
        default=False,
        description="Stop changing the group (same as annotation madgroup.io/paused: "
        '"true" on Kubernetes).',
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

    def password(self) -> SecretKeyRef | None:
        """The bus password's reference; None means the substrate's own default."""
        return self.redis.passwordSecretRef

    def bindings(self, name: str) -> list[Binding]:
        """The environment the declaration gives component ``name``: the bus password for
        Redis and every MAD on the bus (``secret`` None: the substrate's default), then the
        component's own."""
        comp = topology.component(name)
        found: list[Binding] = []
        if comp.uses_bus or not comp.is_mad:  # the MADs on the bus, and the bus itself
            found.append(Binding(PASSWORD_VARIABLE, secret=self.password()))
        own = getattr(self.component(name), "bindings", None)
        if own is not None:
            found.extend(own())
        return found


# ---- validation ---------------------------------------------------------------------------


class InvalidSpecError(UsageError, ValueError):
    """A spec no substrate will act on; the message is one line (for a terminal, a status
    condition and an event alike)."""


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
    }
)
"""Fields the Kubernetes substrate adds to this model (``kube/crd.py``; a test keeps the
two equal). Given to another substrate, they are refused with that reason, not as
unknown."""


def describe(exc: ValidationError, root: str = "spec") -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and str(err["loc"][-1]) in KUBERNETES_ONLY:
            msg = "only Kubernetes honours it; remove it for docker compose and the local runner"
        problems.append(f"{root}.{where}: {msg}" if where else f"{root}: {msg}")
    return "; ".join(problems)


def parse_spec(raw: Any, model: type[MadGroupSpec] = MadGroupSpec) -> MadGroupSpec:
    """Validate a raw ``spec`` into ``model`` (a substrate's extension of it, or this one),
    or raise :class:`InvalidSpecError` naming every offending field."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidSpecError(describe(exc)) from None


@dataclass(frozen=True)
class Document:
    """A MadGroup document as read from a file."""

    name: str
    raw_spec: Mapping[str, Any]
    path: Path | None = None


def read_document(path: Path) -> Document:
    """A MadGroup file: one YAML document with ``apiVersion: madgroup.io/v1alpha1``,
    ``kind: MadGroup``, ``metadata.name`` and ``spec``. Raises :class:`InvalidSpecError`
    (one line) for anything else."""
    import yaml  # only a file needs it: ``madgroup up`` without -f starts without it

    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpecError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidSpecError(f"{path}: not valid YAML{where}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InvalidSpecError(f"{path}: expected one MadGroup document")
    doc = docs[0]
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise InvalidSpecError(
            f"{path}: not a MadGroup (apiVersion: {API_VERSION}, kind: {KIND} expected)"
        )
    metadata = doc.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidSpecError(f"{path}: metadata.name is required")
    raw = doc.get("spec") or {}
    if not isinstance(raw, dict):
        raise InvalidSpecError(f"{path}: spec must be a mapping")
    return Document(name=name, raw_spec=raw, path=path)


def default_document() -> Document:
    """The built-in group: what ``madgroup up`` runs with no file."""
    return Document(name="madgroup", raw_spec={})


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


def resolve(spec: MadGroupSpec) -> dict[str, Any]:
    """The declaration as plain data for the local runner's processes (which then need
    neither pydantic nor this module): the start order and, per component, its bindings
    (``secret`` is the ``.env`` variable holding the value; None for the bus password's
    default, ``REDIS_PASSWORD``)."""
    return {
        "order": spec.order,
        "tls": spec.tls.enabled,
        "bindings": {
            comp.name: [
                {
                    "variable": b.variable,
                    "value": b.value,
                    "secret": b.secret.key if b.secret is not None else None,
                    "file": b.file,
                }
                for b in spec.bindings(comp.name)
            ]
            for comp in topology.COMPONENTS
        },
    }


def check_substrate(
    spec: MadGroupSpec,
    substrate: str,
    *,
    refused: Mapping[str, str],
    ignored: Mapping[str, str],
) -> list[str]:
    """What a substrate cannot honour, said in one line each: a declared field matching a
    ``refused`` pattern (``fnmatch``, e.g. ``spec.*.replicas``) raises
    :class:`InvalidSpecError`; one matching ``ignored`` comes back as a note to print.
    Nothing is dropped silently."""
    found = declared(spec)
    for pattern, why in refused.items():
        hits = sorted(path for path in found if fnmatch.fnmatchcase(path, pattern))
        if hits:
            raise InvalidSpecError(f"{hits[0]}: {why} ({substrate})")
    notes = []
    for pattern, why in ignored.items():
        for path in sorted(p for p in found if fnmatch.fnmatchcase(p, pattern)):
            notes.append(f"{path} is ignored by {substrate}: {why}")
    return notes


def load(
    path: Path | None, model: type[MadGroupSpec] = MadGroupSpec
) -> tuple[Document, MadGroupSpec]:
    """A MadGroup file (or, with no path, the built-in group), validated."""
    document = read_document(path) if path is not None else default_document()
    return document, parse_spec(document.raw_spec, model)

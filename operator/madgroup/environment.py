"""What each component's process finds in its environment: computed once, here, from the
declaration and the topology, as a typed list of entries.

An entry says what a variable holds, never how a substrate spells it: a literal
(:class:`Value`), a secret the declaration names (:class:`Secret`), a file's content
(:class:`File`), a credential of a kind (:class:`Credential`), where a component is reached
(:class:`Address`), a data file's path (:class:`DataPath`), a TLS file's
(:class:`TlsPath`) or the size of a component's volume (:class:`VolumeSize`). Each
substrate translates every kind into its own form — the local runner into process
environment and private files, compose into ``environment``, ``env_file`` and mounted
files, Kubernetes into ``env``, ``valueFrom`` and volumes — and decides nothing about a
component.

The rules live here too: no MAD ever receives the administrator's password (the bus gets
it, each MAD its own bus credential); what the declaration sets wins over ``.env`` (a
substrate with ``.env`` applies entries after it), and where both set a secret to different
values, :func:`check_dotenv` refuses in one line; :func:`secret_keys` is the one list of
``.env`` variables that hold secrets, which never reach a component that does not use them.

Adding a setting to the declaration is one field in :mod:`madgroup.spec.model` and one row
in :data:`DECLARED`: the field path inside the component's settings and its variable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from madgroup import topology
from madgroup.errors import UsageError
from madgroup.spec.model import (
    LLM_FIELDS,
    ComponentSpec,
    FiedlerSpec,
    GraceSpec,
    InvalidSpecError,
    MadGroupSpec,
    RedisSpec,
    SecretKeyRef,
    duration_seconds,
    field_name,
    memory_bytes,
)
from mads.core import access
from mads.core.settings import BusSettings
from mads.fiedler.contract import LLM_VARIABLES, STORE_VARIABLES
from mads.grace.contract import OAUTH_VARIABLES, TOKENS_FILE_VARIABLE, TOKENS_VARIABLE
from mads.grace.scope_file import ScopeMapFile
from mads.grace.token_file import TokenEntry, TokenFile

HEARTBEAT_VARIABLE = "MAD_HEARTBEAT_S"

# ---- the entries --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A secret the declaration names: the Secret ``name``'s key ``key`` on Kubernetes, the
    ``.env`` variable ``key`` elsewhere; ``source`` is where the declaration names it."""

    name: str
    key: str
    source: str


@dataclass(frozen=True)
class Value:
    """A literal value."""

    variable: str
    value: str


@dataclass(frozen=True)
class Secret:
    """A secret by reference; no substrate renders its value into a file it writes."""

    variable: str
    ref: Ref


@dataclass(frozen=True)
class File:
    """A file's content (settings, never a secret); the variable holds the file's path."""

    variable: str
    content: str


class CredentialKind(StrEnum):
    """Credentials the group keeps for itself (generated, or the administrator's)."""

    ADMIN_PASSWORD = "admin_password"
    """The administrator's bus password: the bus's own, never a MAD's."""
    BUS_PASSWORD = "bus_password"
    """A MAD's own bus user's password."""
    INTERNAL_TOKEN = "internal_token"
    """The group's internal credential (:mod:`mads.core.internal_access`)."""
    METRICS_TOKEN = "metrics_token"
    """The group's metrics credential: optional where a person keeps ``.env``."""


@dataclass(frozen=True)
class Credential:
    """A credential of a kind; ``user``: the bus user of a bus password; ``ref``: where
    the declaration keeps the administrator's password (None: the substrate's default)."""

    variable: str
    kind: CredentialKind
    user: str | None = None
    ref: Ref | None = None

    @property
    def required(self) -> bool:
        return self.kind != CredentialKind.METRICS_TOKEN

    @property
    def dotenv_key(self) -> str:
        """Where a substrate that keeps the group's secrets in ``.env`` finds it."""
        if self.ref is not None:
            return self.ref.key
        if self.kind == CredentialKind.ADMIN_PASSWORD:
            return topology.PASSWORD_VARIABLE
        if self.kind == CredentialKind.BUS_PASSWORD:
            assert self.user is not None
            return access.password_variable(self.user)
        if self.kind == CredentialKind.INTERNAL_TOKEN:
            return topology.INTERNAL_TOKEN_VARIABLE
        return topology.METRICS_TOKEN_VARIABLE


class Place(StrEnum):
    """What an :class:`Address` gives of a component on a substrate."""

    HOST = "host"
    """The name the others reach it by."""
    PORT = "port"
    """The port it listens on and the others reach it at."""
    MCP_URL = "mcp_url"
    """Its MCP endpoint, as the others reach it."""
    BIND = "bind"
    """The address it listens on."""
    NAMES = "names"
    """The ``Host`` names clients may use for it, comma-separated."""


@dataclass(frozen=True)
class Address:
    variable: str
    component: str
    place: Place


@dataclass(frozen=True)
class DataPath:
    """The path of a data file the component keeps (in its data directory or volume)."""

    variable: str
    filename: str


class TlsPart(StrEnum):
    CA = "ca"
    """The group's CA certificate."""
    CERT = "cert"
    """The component's own server certificate."""
    KEY = "key"
    """Its key."""


@dataclass(frozen=True)
class TlsPath:
    """The path of one of the component's TLS files on the substrate."""

    variable: str
    part: TlsPart


@dataclass(frozen=True)
class VolumeSize:
    """The size, in bytes, of ``component``'s data volume where the substrate gives volumes
    a size (Kubernetes: its claim's request); elsewhere the variable is not set."""

    variable: str
    component: str


Entry = Value | Secret | File | Credential | Address | DataPath | TlsPath | VolumeSize
KINDS: dict[str, type[Entry]] = {
    cls.__name__.lower(): cls
    for cls in (Value, Secret, File, Credential, Address, DataPath, TlsPath, VolumeSize)
}

# ---- what the declaration sets ------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """A field of a component's declared settings (a path inside them, ``llm.baseUrl``)
    and the variable it sets; ``as_file``: the variable names a file holding this text;
    ``render``: how the value is written (default: as it is, booleans ``true``/``false``)."""

    field: str
    variable: str
    as_file: Callable[[Any], str] | None = None
    render: Callable[[Any], str] | None = None


def _tokens_file(tokens: list[TokenEntry]) -> str:
    return json.dumps(TokenFile(tokens=tokens).model_dump(exclude_none=True), indent=2)


def _scopes_file(scopes: ScopeMapFile) -> str:
    return json.dumps(scopes.model_dump(exclude_none=True), indent=2)


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _comma_list(values: list[str]) -> str:
    return ",".join(values)


def number(value: float) -> str:
    """A declared number as a variable holds it: ``5``, ``0.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def seconds(duration: str) -> str:
    """A declared duration (``7d``) as a variable in seconds holds it."""
    return str(duration_seconds(duration))


DECLARED: Mapping[type[ComponentSpec], tuple[Declared, ...]] = {
    GraceSpec: (
        Declared("tokenSecretRef", TOKENS_VARIABLE),
        Declared("tokens", TOKENS_FILE_VARIABLE, as_file=_tokens_file),
        # Grace as an OAuth 2.1 resource server
        Declared("oauth.issuer", OAUTH_VARIABLES["issuer"]),
        Declared("oauth.resource", OAUTH_VARIABLES["resource"]),
        Declared("oauth.audience", OAUTH_VARIABLES["audience"], render=_comma_list),
        Declared("oauth.scopes", OAUTH_VARIABLES["scopes_file"], as_file=_scopes_file),
        Declared("oauth.staticTokens", OAUTH_VARIABLES["static_tokens"], render=_on_off),
        Declared("oauth.introspection.url", OAUTH_VARIABLES["introspection_url"]),
        Declared("oauth.introspection.clientId", OAUTH_VARIABLES["introspection_client_id"]),
        Declared(
            "oauth.introspection.clientSecretRef",
            OAUTH_VARIABLES["introspection_client_secret"],
        ),
        # the tunables
        Declared("maxInFlight", "GRACE_MAX_INFLIGHT"),
        Declared("limits.requestsPerSecond", "GRACE_DEFAULT_REQUESTS_PER_SECOND", render=number),
        Declared("limits.concurrentCalls", "GRACE_DEFAULT_CONCURRENT_CALLS"),
    ),
    FiedlerSpec: (
        *(
            Declared(f"llm.{field}", LLM_VARIABLES[setting])
            for setting, field in LLM_FIELDS.items()
        ),
        # the task store (replicas are the substrate's; the declaration checks the store
        # allows them)
        Declared("store.type", STORE_VARIABLES["store"]),
        Declared("store.uriSecretRef", STORE_VARIABLES["uri"]),
        # the tunables
        Declared("llm.timeoutSeconds", "FIEDLER_LLM_TIMEOUT_S", render=number),
        Declared("concurrency", "FIEDLER_MAX_CONCURRENCY"),
        Declared("retention.maxAge", "FIEDLER_RETENTION_MAX_AGE_S", render=seconds),
        Declared("retention.maxTasks", "FIEDLER_RETENTION_MAX_TASKS"),
    ),
}
"""Each declared setting that reaches a MAD's environment, by settings class. A field is
rendered only when the declaration sets it (a default it leaves alone stays the MAD's, or
``.env``'s), and then it wins over ``.env``."""


def on_the_bus(comp: topology.Component) -> bool:
    return comp.bus_user is not None


GROUP_DECLARED: tuple[tuple[Declared, Callable[[topology.Component], bool]], ...] = (
    (Declared("heartbeatSeconds", HEARTBEAT_VARIABLE, render=number), on_the_bus),
    (Declared("relayBacklogLimit", "MAD_RELAY_BACKLOG_LIMIT"), on_the_bus),
)
"""Group-wide settings (fields of ``spec`` itself), each with the components it reaches:
the heartbeat and the relay's backlog limit only roll the MADs on the bus, which are the
ones that beat or listen and relay."""


@dataclass(frozen=True)
class Option:
    """A field of a component's declared settings its program takes on its command line
    (Redis takes its settings there, not from its environment): ``--flag value``;
    ``default``: the value when the declaration leaves the field unset."""

    field: str
    flag: str
    render: Callable[[Any], str] | None = None
    default: Callable[[Any], Any] | None = None


def redis_memory(amount: str) -> str:
    """A declared amount of memory as Redis reads it: ``1Gi`` -> ``1gb`` (Redis's ``gb``,
    ``mb`` and ``kb`` are powers of 1024), anything else in bytes."""
    count = memory_bytes(amount)
    for unit, size in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if count % size == 0:
            return f"{count // size}{unit}"
    return str(count)


OPTIONS: Mapping[type[ComponentSpec], tuple[Option, ...]] = {
    RedisSpec: (
        Option(
            "maxmemory",
            "--maxmemory",
            render=redis_memory,
            default=lambda redis: redis.default_maxmemory(),
        ),
        Option("maxmemoryPolicy", "--maxmemory-policy"),
    ),
}
"""Declared settings a component's program reads from its command line. Unlike an
environment row, an option is always rendered, its default too: the program's own default
is not the group's (Redis's is no memory limit at all)."""

NOT_ENVIRONMENT = frozenset({"image", "replicas", "storage", "env"})
"""Settings every component has that the substrate acts on itself, or that are rendered as
they are (``env``); a test holds every other declared field to a row of :data:`DECLARED`
or :data:`OPTIONS`."""


def declared_rows(settings: ComponentSpec) -> tuple[Declared, ...]:
    return tuple(row for cls in type(settings).__mro__ for row in DECLARED.get(cls, ()))


def option_rows(settings: ComponentSpec) -> tuple[Option, ...]:
    return tuple(row for cls in type(settings).__mro__ for row in OPTIONS.get(cls, ()))


def options(settings: ComponentSpec) -> tuple[str, ...]:
    """The component's declared command-line settings: ``("--flag", "value", ...)``."""
    found: list[str] = []
    for row in option_rows(settings):
        value: Any = settings
        for part in row.field.split("."):
            value = getattr(value, part)
        if value is None and row.default is not None:
            value = row.default(settings)
        found += [row.flag, row.render(value) if row.render is not None else str(value)]
    return tuple(found)


def _set_value(settings: BaseModel, path: str) -> object:
    """The value at ``path`` when the declaration sets every step of it, else None."""
    value: object = settings
    for part in path.split("."):
        if not isinstance(value, BaseModel) or part not in value.model_fields_set:
            return None
        value = getattr(value, part)
    return value


def _ref(ref: SecretKeyRef, source: str) -> Ref:
    return Ref(name=ref.name, key=ref.key, source=source)


def _entry(row: Declared, value: object, source: str) -> Entry:
    if isinstance(value, SecretKeyRef):
        return Secret(row.variable, _ref(value, source))
    if row.as_file is not None:
        return File(row.variable, row.as_file(value))
    if row.render is not None:
        return Value(row.variable, row.render(value))
    if isinstance(value, bool):
        return Value(row.variable, "true" if value else "false")
    return Value(row.variable, str(value))


def declared_entries(
    comp: topology.Component, settings: ComponentSpec, declared: MadGroupSpec | None = None
) -> list[Entry]:
    """What the declaration sets for ``comp``: the group-wide settings that reach it, then
    its own."""
    found: list[Entry] = []
    if declared is not None:
        for row, reaches in GROUP_DECLARED:
            value = _set_value(declared, row.field)
            if value is not None and reaches(comp):
                found.append(_entry(row, value, f"spec.{row.field}"))
    for row in declared_rows(settings):
        value = _set_value(settings, row.field)
        if value is not None:
            found.append(_entry(row, value, f"spec.{field_name(comp.name)}.{row.field}"))
    return found


def extra_env(settings: ComponentSpec) -> tuple[Entry, ...]:
    """A component's extra ``env``, as it is declared (:func:`check_extra_env` refuses what
    the group owns); it comes after every entry the group computes."""
    return tuple(Value(name, value) for name, value in sorted((settings.env or {}).items()))


# ---- the variables the group owns -----------------------------------------------------------


def owned_prefixes() -> tuple[str, ...]:
    """Prefixes of the variables the product reads: the core's settings (``MAD_``,
    ``REDIS_``: every MAD reads them) and each installed MAD's own (``FIEDLER_``...)."""
    core = {name.split("_", 1)[0].upper() for name in BusSettings.model_fields}
    mads = {comp.name.upper() for comp in topology.COMPONENTS if comp.is_mad}
    return tuple(f"{prefix}_" for prefix in sorted(core | mads))


def owned_variables(
    parts: Iterable[tuple[topology.Component, ComponentSpec, tuple[Entry, ...]]],
) -> dict[str, str]:
    """Every variable the group sets or reads itself (beyond :func:`owned_prefixes`), with
    the declared field that sets it ('' when none does): what an extra ``env`` may not name.
    ``parts``: each component, its settings and its computed environment."""
    parts = list(parts)
    found: dict[str, str] = dict.fromkeys(secret_keys(entries for *_, entries in parts), "")
    for _comp, _settings, entries in parts:
        found.update({entry.variable: "" for entry in entries})
    for comp in topology.COMPONENTS:
        contract = comp.contract
        if contract is not None:
            named = (*contract.secrets, contract.url_variable, contract.client_token_variable)
            found.update({name: "" for name in named if name})
    for comp, settings, _entries in parts:
        for row in declared_rows(settings):
            found[row.variable] = f"spec.{field_name(comp.name)}.{row.field}"
    for row, _reaches in GROUP_DECLARED:
        found[row.variable] = f"spec.{row.field}"
    return found


def check_extra_env(
    comp: topology.Component, settings: ComponentSpec, owned: Mapping[str, str]
) -> None:
    """A component's extra ``env`` names no variable the group owns (:func:`owned_variables`,
    :func:`owned_prefixes`, and the ``_FILE`` twin of any of them): refused in one line
    naming it, and the field that declares it when there is one."""
    prefixes = owned_prefixes()
    own = field_name(comp.name)
    for name in sorted(settings.env or {}):
        base = name.removesuffix("_FILE")
        if name not in owned and base not in owned and not name.startswith(prefixes):
            continue
        field = owned.get(name) or owned.get(base)
        # a field of the group's, or of this component's: another's would not reach it
        if field and field.count(".") > 1 and not field.startswith(f"spec.{own}."):
            field = ""
        instead = f"declare {field} instead" if field else "it cannot be set through env"
        raise InvalidSpecError(
            f"spec.{own}.env.{name}: MadGroup sets or reads this variable itself; {instead}"
        )


# ---- the computation ----------------------------------------------------------------------

TLS_CERT_VARIABLE = "MAD_TLS_CERT_FILE"
TLS_KEY_VARIABLE = "MAD_TLS_KEY_FILE"
TLS_OWN_CA_VARIABLE = "MAD_TLS_CA_FILE"


def environment(
    comp: topology.Component, settings: ComponentSpec, declared: MadGroupSpec
) -> tuple[Entry, ...]:
    """Component ``comp``'s environment under the declaration (``settings``: its part), as
    the group computes it (its extra ``env``: :func:`extra_env`)."""
    if not comp.is_mad:  # the bus: the administrator's password, for its readiness check
        admin = declared.password()
        ref = _ref(admin, "spec.redis.passwordSecretRef") if admin is not None else None
        admin_entry = Credential(topology.PASSWORD_VARIABLE, CredentialKind.ADMIN_PASSWORD, ref=ref)
        return (admin_entry, *declared_entries(comp, settings, declared))
    found: list[Entry] = [
        Value("MAD_NAME", comp.name),
        Address("MAD_HOST", comp.name, Place.BIND),
        Address("MAD_PORT", comp.name, Place.PORT),
        Address("MAD_ALLOWED_HOSTS", comp.name, Place.NAMES),
    ]
    if comp.bus_user is not None:
        bus = topology.bus().name
        found += [
            Address("REDIS_HOST", bus, Place.HOST),
            Address("REDIS_PORT", bus, Place.PORT),
            Value(topology.BUS_USERNAME_VARIABLE, comp.bus_user),
            Credential(topology.PASSWORD_VARIABLE, CredentialKind.BUS_PASSWORD, comp.bus_user),
        ]
    for peer in comp.peers:
        contract = topology.component(peer).contract
        if contract is not None and contract.url_variable:
            found.append(Address(contract.url_variable, peer, Place.MCP_URL))
    data = comp.data_file if settings.data_elsewhere() is None else None
    if data is not None:
        found.append(DataPath(data.variable, data.filename))
        if data.size_variable is not None:
            found.append(VolumeSize(data.size_variable, comp.name))
    if comp.contract is not None and comp.contract.bus_volume_variable is not None:
        found.append(VolumeSize(comp.contract.bus_volume_variable, topology.bus().name))
    if topology.needs_internal_token(comp):
        found.append(Credential(topology.INTERNAL_TOKEN_VARIABLE, CredentialKind.INTERNAL_TOKEN))
    found.append(Credential(topology.METRICS_TOKEN_VARIABLE, CredentialKind.METRICS_TOKEN))
    if declared.tls.enabled:
        if comp.uses_bus:
            found.append(TlsPath(topology.TLS_CA_VARIABLE, TlsPart.CA))
        if topology.serves_tls(comp):
            found += [
                TlsPath(TLS_CERT_VARIABLE, TlsPart.CERT),
                TlsPath(TLS_KEY_VARIABLE, TlsPart.KEY),
                TlsPath(TLS_OWN_CA_VARIABLE, TlsPart.CA),
            ]
    found += declared_entries(comp, settings, declared)
    return tuple(found)


def admin_credential(entries: Iterable[Entry]) -> Credential | None:
    """The administrator's password among ``entries`` (the bus's), if there."""
    return next(
        (
            e
            for e in entries
            if isinstance(e, Credential) and e.kind == CredentialKind.ADMIN_PASSWORD
        ),
        None,
    )


def check_no_admin(entries: Iterable[Entry], admin: Credential) -> None:
    """No MAD's entry reads the administrator's password (a declared secret naming its key
    or its Secret): refused, one line."""
    for entry in entries:
        if isinstance(entry, Credential) and entry.kind == CredentialKind.ADMIN_PASSWORD:
            raise InvalidSpecError(
                f"{entry.variable}: a MAD never gets the administrator's password"
            )
        if not isinstance(entry, Secret):
            continue
        same_key = entry.ref.key == admin.dotenv_key
        same_secret = admin.ref is not None and (admin.ref.name, admin.ref.key) == (
            entry.ref.name,
            entry.ref.key,
        )
        if same_key or same_secret:
            raise InvalidSpecError(
                f"{entry.ref.source}: names the administrator's Redis password; no MAD may "
                "receive it (give this secret a key of its own)"
            )


def dotenv_secrets(entries: Iterable[Entry]) -> set[str]:
    """The ``.env`` variables ``entries`` read a secret from, and the variables they set
    to one."""
    found: set[str] = set()
    for entry in entries:
        if isinstance(entry, Secret):
            found |= {entry.ref.key, entry.variable}
        elif isinstance(entry, Credential):
            found |= {entry.dotenv_key, entry.variable}
    return found


def secret_keys(environments: Iterable[Iterable[Entry]]) -> frozenset[str]:
    """The one list of ``.env`` variables that hold secrets: the guide's administrator's
    password, what any component's entries read a secret or credential from (or set to
    one), and what any MAD's contract reads as a secret."""
    found = {topology.PASSWORD_VARIABLE}
    for entries in environments:
        found |= dotenv_secrets(entries)
    for comp in topology.COMPONENTS:
        if comp.contract is not None:
            found.update(comp.contract.secrets)
    return frozenset(found)


def passes_through(comp: topology.Component, entries: Iterable[Entry]) -> frozenset[str]:
    """The ``.env`` secrets a component takes as they are: those its contract reads,
    unless an entry sets that variable (then the declaration's wins)."""
    own = set(comp.contract.secrets) if comp.contract is not None else set()
    return frozenset(own - {e.variable for e in entries})


class SecretConflictError(UsageError, ValueError):
    """The declaration and ``.env`` set one secret to two values (one line, no value)."""


def check_dotenv(entries: Iterable[Entry], dotenv: Mapping[str, str]) -> None:
    """Where the declaration reads a secret from a ``.env`` variable of another name, and
    ``.env`` also sets the variable itself to a different value, refuse: one line naming
    both, never a value."""
    for entry in entries:
        ref = entry.ref if isinstance(entry, Secret | Credential) else None
        if ref is None or ref.key == entry.variable:
            continue
        both = entry.variable in dotenv and ref.key in dotenv
        if both and dotenv[entry.variable] != dotenv[ref.key]:
            raise SecretConflictError(
                f"{ref.source} names {ref.key} in .env, but .env also sets "
                f"{entry.variable} to another value: remove {entry.variable} from .env "
                "or give both the same value"
            )


# ---- as data ------------------------------------------------------------------------------


def to_json(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Entries as JSON-able data, each with its class under ``entry``."""
    return [{"entry": type(e).__name__.lower(), **asdict(e)} for e in entries]


def from_json(data: Iterable[Mapping[str, Any]]) -> tuple[Entry, ...]:
    """:func:`to_json`'s entries back, typed."""
    found: list[Entry] = []
    for item in data:
        fields = {k: v for k, v in item.items() if k != "entry"}
        if isinstance(fields.get("ref"), Mapping):
            fields["ref"] = Ref(**fields["ref"])
        cls = KINDS[str(item["entry"])]
        if cls is Credential:
            fields["kind"] = CredentialKind(fields["kind"])
        elif cls is Address:
            fields["place"] = Place(fields["place"])
        elif cls is TlsPath:
            fields["part"] = TlsPart(fields["part"])
        found.append(cls(**fields))
    return tuple(found)

"""The one description of a MAD group that every substrate renders.

Kubernetes objects, the committed ``docker-compose.yml`` and the local process runner all
read their components, commands, ports, dependencies and readiness checks from here, so
"ready" and "start order" mean the same thing everywhere. The group is data: the bus, then
every MAD the registry of contracts finds (:mod:`mads.core.registry`), in its order; each
MAD's port, banner, dependencies and data come from its own contract. What each component's
environment holds is :mod:`madgroup.environment`'s to say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from madgroup.errors import UsageError
from mads.core import access, registry
from mads.core import contract as contract_module
from mads.core.contract import DataFile, MadContract


class ProbeKind(StrEnum):
    """A readiness check's protocol (its value also names the component's port)."""

    HTTP = "http"
    """``GET /readyz`` answering 200."""
    REDIS_PING = "redis"
    """An authenticated Redis ``PING`` answering ``PONG``."""


REDIS = "redis"
"""The bus: the one component that is not a MAD (it has no contract)."""

DEFAULT_IMAGE_REPOSITORY = "ghcr.io/madgroup"
DEFAULT_IMAGE_TAG = "0.1.0"
REDIS_IMAGE = "redis:7.2-alpine"
DATA_DIR = "/data"


@dataclass(frozen=True)
class Probe:
    """How to tell a component is ready: HTTP GET on the MAD's ``/readyz``, or an
    authenticated Redis PING."""

    kind: ProbeKind
    path: str = "/readyz"


@dataclass(frozen=True)
class TlsFiles:
    """Where a TLS server finds its certificate, key and the group's CA on a substrate."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class Component:
    """One service of the group."""

    name: str
    port: int
    depends_on: tuple[str, ...]
    start_after: str | None
    description: str
    probe: Probe
    banner: str | None = None
    exposed: bool = False
    stateful: bool = False
    data_path: str | None = None
    max_replicas: int | None = None
    contract: MadContract | None = None
    """The MAD's own contract (None for Redis)."""

    @property
    def uses_bus(self) -> bool:
        return REDIS in self.depends_on

    @property
    def peers(self) -> tuple[str, ...]:
        """The MADs it calls."""
        return self.contract.peers if self.contract is not None else ()

    @property
    def data_file(self) -> DataFile | None:
        """The data file it keeps (Fiedler's task store): what backups copy."""
        return self.contract.data if self.contract is not None else None

    @property
    def keeps_data(self) -> bool:
        return self.data_file is not None

    @property
    def is_mad(self) -> bool:
        return self.name != REDIS

    @property
    def bus_user(self) -> str | None:
        """The Redis ACL user this MAD connects as (its name), None for one off the bus."""
        return self.name if self.is_mad and self.uses_bus else None

    @property
    def reloads_certificates(self) -> bool:
        """Whether a renewed TLS certificate is taken up while running (a MAD serving
        HTTPS: :mod:`mads.core.https`); Redis reads its certificate at start, or on
        ``CONFIG SET`` of its TLS files."""
        return self.is_mad

    @property
    def dns_name(self) -> str:
        """The name as a DNS label (Kubernetes object names forbid underscores)."""
        return self.name.replace("_", "-")

    def command(
        self,
        users_file: str | None = None,
        tls: TlsFiles | None = None,
        options: Sequence[str] = (),
    ) -> list[str]:
        """The command line the component runs, the same on every substrate.

        Redis takes its users (the administrator and each MAD's) from ``users_file``, the
        ACL file each substrate writes (:func:`acl_file`), never a password on its command
        line. With ``tls`` it listens on its port with TLS only (``--port 0``: no
        plaintext), client certificates optional. ``options``: the declared settings it
        reads from its command line, ``--flag value`` pairs (a MAD reads its environment
        and takes none).
        """
        if self.is_mad and options:
            raise ValueError(f"{self.name} takes its settings from its environment")
        if self.name == REDIS:
            if users_file is None:
                raise ValueError("Redis reads its users from an ACL file: give users_file")
            auth = ["--aclfile", users_file]
            listen = ["--port", str(self.port)]
            if tls is not None:
                listen = [
                    "--port",
                    "0",
                    "--tls-port",
                    str(self.port),
                    "--tls-cert-file",
                    tls.cert,
                    "--tls-key-file",
                    tls.key,
                    "--tls-ca-cert-file",
                    tls.ca,
                    "--tls-auth-clients",
                    "optional",
                ]
            return [
                "redis-server",
                *listen,
                *auth,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                DATA_DIR,
                *options,
            ]
        return ["mad-run", self.name]

    def image(
        self, repository: str = DEFAULT_IMAGE_REPOSITORY, tag: str = DEFAULT_IMAGE_TAG
    ) -> str:
        if self.name == REDIS:
            return REDIS_IMAGE
        return f"{repository}/{self.dns_name}:{tag}"


REDIS_COMPONENT = Component(
    name=REDIS,
    port=6379,
    depends_on=(),
    start_after=None,
    description="The Conversation Bus (Redis, password required, AOF persistence).",
    probe=Probe(ProbeKind.REDIS_PING),
    stateful=True,
    data_path=DATA_DIR,
    max_replicas=1,
)


def mad_component(contract: MadContract, start_after: str | None) -> Component:
    """A MAD as a component of the group, from its own contract: what it talks to (the bus
    when it uses it, the MADs it calls), its port, banner, data and limits."""
    depends = ((REDIS,) if contract.uses_bus else ()) + contract.peers
    data = contract.data
    return Component(
        name=contract.name,
        port=contract.port,
        depends_on=depends,
        start_after=start_after,
        description=contract.description,
        probe=Probe(ProbeKind.HTTP),
        banner=contract.banner,
        exposed=contract.exposed,
        stateful=data is not None,
        data_path=DATA_DIR if data is not None else None,
        max_replicas=contract.max_replicas,
        contract=contract,
    )


def start_sequence(contracts: Iterable[MadContract]) -> list[MadContract]:
    """The MADs in the registry's order (the guide's: by default port), except that a MAD
    never comes before a peer it calls; a peer no contract names is an error."""
    waiting = list(contracts)
    installed = {c.name for c in waiting}
    for contract in waiting:
        unknown = [p for p in contract.peers if p not in installed]
        if unknown:
            raise TypeError(f"MAD {contract.name} calls {', '.join(unknown)}: not installed")
    placed: list[MadContract] = []
    while waiting:
        done = {c.name for c in placed}
        ready = next((c for c in waiting if set(c.peers) <= done), None)
        if ready is None:
            raise TypeError(f"MADs that call each other: {', '.join(c.name for c in waiting)}")
        placed.append(ready)
        waiting.remove(ready)
    return placed


def _components() -> tuple[Component, ...]:
    found = [REDIS_COMPONENT]
    for contract in start_sequence(registry.contracts().values()):
        found.append(mad_component(contract, start_after=found[-1].name))
    return tuple(found)


COMPONENTS: tuple[Component, ...] = _components()
"""The bus, then every installed MAD, in the guide's start order. ``depends_on`` lists what a
component talks to (grace -> redis; rogers, fiedler -> redis, sequential_thinking);
``start_after`` is the guide's one-by-one gate: a component starts only once the one before
it is ready."""

COMPONENT_NAMES: tuple[str, ...] = tuple(c.name for c in COMPONENTS)
MAD_NAMES: tuple[str, ...] = tuple(c.name for c in COMPONENTS if c.is_mad)
DEFAULT_PORTS: dict[str, int] = {c.name: c.port for c in COMPONENTS}


Order = Literal["guide", "graph"]
ORDERS: tuple[Order, ...] = ("guide", "graph")
"""How components wait for each other. ``guide``: the deployment guide's order, each
component after the one before it (and what it talks to). ``graph``: only what it talks to
(redis and sequential_thinking at once; grace after redis; rogers and fiedler after redis
and sequential_thinking), so independent components start side by side."""


def gates(comp: Component, order: Order = "guide") -> tuple[str, ...]:
    """Everything that must be ready before ``comp`` starts: its dependencies and, in the
    guide's order, the component before it."""
    names = list(comp.depends_on)
    if order == "guide" and comp.start_after and comp.start_after not in names:
        names.append(comp.start_after)
    return tuple(n for n in COMPONENT_NAMES if n in names)


def gate_map(order: Order = "guide") -> dict[str, tuple[str, ...]]:
    """``gates`` of every component, for the planner."""
    return {comp.name: gates(comp, order) for comp in COMPONENTS}


class UnknownComponentError(UsageError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown component {name!r}; the components are: {', '.join(COMPONENT_NAMES)}"
        )
        self.name = name


def bus() -> Component:
    """The Conversation Bus (Redis)."""
    return REDIS_COMPONENT


def component(name: str) -> Component:
    for c in COMPONENTS:
        if c.name == name:
            return c
    raise UnknownComponentError(name)


def start_order(names: Iterable[str] | None = None) -> list[Component]:
    """Components in dependency order (a topological sort that keeps the guide's order)."""
    wanted = set(COMPONENT_NAMES if names is None else names)
    for n in wanted:
        component(n)
    return [c for c in COMPONENTS if c.name in wanted]


def with_gates(names: Iterable[str]) -> list[Component]:
    """The components named and, recursively, all their gates, in start order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for gate in gates(component(name)):
                add(gate)

    for name in names:
        add(name)
    return start_order(wanted)


def stop_order(names: Iterable[str] | None = None) -> list[Component]:
    return list(reversed(start_order(names)))


def reached_at_address(comp: Component) -> bool:
    """Whether others reach ``comp`` at its address (the bus, the exposed MAD, a MAD a
    peer calls) rather than only through the bus: on one host without a load balancer, one
    process serves that address, so only a component reached through the bus alone runs
    several there."""
    return not comp.is_mad or comp.exposed or any(comp.name in c.peers for c in COMPONENTS)


def tools_component() -> Component:
    """The MAD whose image runs the group's one-shot tools (``mad-bus-users``): the first
    to start, so its image is there before Redis is."""
    return next(c for c in start_order() if c.is_mad)


INTERNAL_TOKEN_VARIABLE = contract_module.INTERNAL_TOKEN_VARIABLE
METRICS_TOKEN_VARIABLE = contract_module.METRICS_TOKEN_VARIABLE


def needs_internal_token(comp: Component) -> bool:
    """Whether ``comp`` holds the group's internal credential
    (:func:`mads.core.access.uses_internal_token`)."""
    return comp.contract is not None and access.uses_internal_token(comp.contract)


PASSWORD_VARIABLE = "REDIS_PASSWORD"
"""The bus password's variable: the administrator's in the deployment guide's ``.env``; a
MAD's own bus user's in its environment."""
BUS_USERNAME_VARIABLE = "REDIS_USERNAME"
"""A MAD's bus user; its password goes in ``REDIS_PASSWORD``, as the administrator's would."""


def bus_password_variable(user: str) -> str:
    """Where a MAD's own bus password is kept (``.env``): ``GRACE_BUS_PASSWORD``..."""
    return access.password_variable(user)


def bus_users() -> tuple[str, ...]:
    """Every MAD that connects to the bus as a user of its own."""
    return tuple(c.bus_user for c in COMPONENTS if c.bus_user is not None)


def acl_file(admin_password: str, passwords: Mapping[str, str]) -> str:
    """Redis's ACL file for the group: the administrator (the guide's ``REDIS_PASSWORD``,
    the ``default`` user) and one user per MAD on the bus, each allowed what its contract
    and the core need (:mod:`mads.core.access`). Passwords appear as SHA-256 only."""
    return access.acl_file(admin_password, passwords, registry.contracts())


def acl_script(path: str) -> str:
    """A ``sh`` script writing :func:`acl_file` to ``path`` from the passwords in its
    environment (for a substrate whose secret store already holds them)."""
    return access.acl_script(registry.contracts(), path)


TLS_CA_VARIABLE = "REDIS_TLS_CA_FILE"
"""Set for a MAD on the bus when the bus speaks TLS: the CA its certificate is checked
against (:class:`mads.core.settings.BusSettings`)."""


def tls_servers() -> dict[str, Component]:
    """The components that serve TLS when the declaration asks for it, by certificate
    name: the bus, and the front door's published port."""
    return {c.name: c for c in COMPONENTS if not c.is_mad or c.exposed}


def serves_tls(comp: Component) -> bool:
    return comp.name in tls_servers()


def data_keepers() -> list[tuple[Component, DataFile]]:
    """The components that keep a data file of their own, with it: what backups copy."""
    return [(c, c.data_file) for c in COMPONENTS if c.data_file is not None]

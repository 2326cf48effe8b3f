"""Render the committed ``docker-compose.yml`` from the shared topology.

Everything a service runs with (image, command, port, environment, start gates, readiness
check) comes from the resolved declaration (:mod:`madgroup.resolved`: the topology, the
declared settings, each component's environment entries); this module only says how
compose spells it: a secret the declaration names is compose's interpolation of the
``.env`` variable, a credential is a file the credentials service writes, a declared file
is mounted read-only.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from madgroup import topology
from madgroup.environment import (
    Address,
    Credential,
    CredentialKind,
    DataPath,
    Entry,
    File,
    Place,
    Secret,
    TlsPath,
    Value,
    VolumeSize,
)
from madgroup.resolved import ResolvedComponent, ResolvedGroup, resolve
from madgroup.spec import Document, MadGroupSpec, default_document, parse_spec, substrates
from madgroup.topology import Component
from mads.core.cli import bus_users

COMPOSE_FILE = "docker-compose.yml"
DOCKERFILE = "docker/Dockerfile"
ENV_FILE = ".env"
NETWORK = "madgroup"
RESTART_POLICY = "unless-stopped"
PUBLISH_ADDRESS_VARIABLE = "GRACE_PUBLISH_ADDRESS"
DEFAULT_PUBLISH_ADDRESS = "127.0.0.1"
LOGGING: dict[str, Any] = {
    "driver": "json-file",
    "options": {"max-size": "10m", "max-file": "3"},
}
"""The deployment guide's log rotation (5.2.3), on every service."""

CREDENTIALS_SERVICE = "bus_users"
"""A one-shot service that runs before Redis: ``mad-bus-users`` writes each MAD's bus
password and the group's internal credential (made once, kept in a volume per MAD) and
Redis's ACL file (hashes only), so no generated secret is in any container's environment
or command line and the guide's ``.env`` still holds just ``REDIS_PASSWORD``."""
CREDENTIALS_DIR = "/run/madgroup"
ENV_MOUNT = "/run/madgroup-env/.env"
"""Where the credentials service reads the administrator's password: the guide's ``.env``,
mounted read-only, so that password is in no container's environment."""
ACL_VOLUME = "bus_acl"
CA_VOLUME = "tls_ca"
"""With TLS: the group's private CA (its key), mounted in the credentials service only."""
TLS_HOSTS = ("localhost", "127.0.0.1")
EXTENSION = "x-madgroup"
"""The compose file's own section (compose ignores ``x-`` keys): what ``madgroup backup`` and
``report`` need to know of the declaration it was rendered from."""
NOT_BACKED_UP = "not_backed_up"
"""In :data:`EXTENSION`: component -> where its data is, when the declaration keeps it in a
database outside the group (no backup or report copies it)."""
"""Besides its service name: what Redis's certificate names (the healthcheck's address)."""


def tls_files(comp: Component) -> topology.TlsFiles:
    """Where a TLS server's files are in its container (written by the credentials
    service into the volume it mounts on ``CREDENTIALS_DIR``)."""
    return topology.TlsFiles(
        ca=f"{CREDENTIALS_DIR}/ca.crt",
        cert=f"{CREDENTIALS_DIR}/{comp.name}.crt",
        key=f"{CREDENTIALS_DIR}/{comp.name}.key",
    )


FILES_DIR = "madgroup-files"
"""Where ``render compose`` writes the files a declaration gives a service (next to
docker-compose.yml; hashes and settings only, never a secret), mounted read-only."""
FILES_MOUNT = "/run/madgroup-files"


def declared_file(comp: Component, variable: str) -> str:
    """Where ``render compose`` writes a declared file, relative to the project."""
    return f"{FILES_DIR}/{comp.name}/{variable}"


def credentials_volume(comp: Component) -> str:
    return f"{comp.name}_credentials"


def holds_credentials(comp: Component) -> bool:
    """Whether ``comp`` is handed files by the credentials service."""
    return comp.bus_user is not None or topology.needs_internal_token(comp)


BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "EXTRA_CA_CERTS")
"""Passed to the image build from ``.env`` or the shell (unset: pip's defaults), for hosts
behind a proxy or with a private package index. ``EXTRA_CA_CERTS`` is PEM text, the CA
certificates of a proxy that re-signs TLS, trusted by the build stages only: public, so a
build argument may carry it (docker-compose 1.29's builder cannot pass BuildKit secrets)."""

HEALTHCHECK_TIMING: dict[str, str | int] = {
    "interval": "2s",
    "timeout": "3s",
    "retries": 5,
    "start_period": "30s",
}
"""Docker runs a container's first healthcheck one ``interval`` after it starts, so each
of the five gated hops of ``up -d`` takes at least that long; each check is an exec that
costs the engine tens of milliseconds of CPU. 2 s is the balance measured with
``bench/compose_bringup.py`` on engines without ``start_interval`` (see docs/packaging.md)."""

START_INTERVAL_FILE = "docker-compose.start-interval.yml"
START_INTERVAL_TIMING: dict[str, str] = {
    "interval": "30s",
    "start_interval": "250ms",
    "start_period": "60s",
}
"""For Docker Engine 25+ with Compose 2.20.2+: checks every 250 ms while a container
starts, every 30 s once it is up. Enabled with ``COMPOSE_FILE`` in ``.env``, so the
guide's commands stay as they are; compose v1 and older engines refuse ``start_interval``,
which is why it is not in ``docker-compose.yml`` itself."""

START_INTERVAL_HEADER = f"""\
# Faster, cheaper healthchecks for Docker Engine 25+ with Compose 2.20.2+: add
#   COMPOSE_FILE={COMPOSE_FILE}:{START_INTERVAL_FILE}
# to .env and every docker compose command (the guide's too) uses both files. Compose v1
# (docker-compose 1.x) and engines before 25 refuse start_interval: leave it out there.
#
# Generated by `madgroup render compose`. Do not edit by hand.
"""

HEADER = """\
# MAD Group on one host with Docker: `docker compose up -d` (or `docker-compose up -d`).
# Start order is enforced by healthchecks (depends_on: service_healthy):
#   redis <- sequential_thinking <- grace <- rogers <- fiedler
# Configuration and secrets come from .env (cp .env.example .env; set REDIS_PASSWORD).
#
# Generated from operator/madgroup/topology.py by `madgroup render compose`.
# Do not edit by hand: change the topology or the renderer and render again.
"""


def required(variable: str) -> str:
    """Compose interpolation of a ``.env`` variable that must be set: compose refuses to
    start when it is unset or empty (so Redis can never come up without a password)."""
    return f"${{{variable}:?{variable} must be set in {ENV_FILE}}}"


def optional(variable: str) -> str:
    """Compose interpolation of a ``.env`` variable that may be unset (then empty)."""
    return f"${{{variable}:-}}"


CREDENTIAL_FILES = {
    CredentialKind.ADMIN_PASSWORD: bus_users.ADMIN_PASSWORD_FILE,
    CredentialKind.BUS_PASSWORD: bus_users.PASSWORD_FILE,
    CredentialKind.INTERNAL_TOKEN: bus_users.INTERNAL_TOKEN_FILE,
}
"""The file the credentials service writes for each kind it keeps, in the volume a
service mounts on ``CREDENTIALS_DIR``."""


def environment(part: ResolvedComponent, group: ResolvedGroup) -> dict[str, str]:
    """The service's ``environment``: every ``.env`` secret it does not take blanked (it
    wins over ``env_file``, which stays, as the guide's troubleshooting expects), then its
    entries as compose has them."""
    env = {key: "" for key in sorted(group.secret_keys - part.passes_through)}
    for entry in part.environment:
        env.update(translate(entry, part.component))
    return env


def translate(entry: Entry, comp: Component) -> dict[str, str]:
    """One entry as compose spells it (a variable, or a credential's ``_FILE`` twin)."""
    match entry:
        case Value():
            return {entry.variable: entry.value}
        case Secret():  # compose reads it from .env; the file never holds it
            return {entry.variable: required(entry.ref.key)}
        case File():
            return {entry.variable: f"{FILES_MOUNT}/{entry.variable}"}
        case Credential() if entry.kind in CREDENTIAL_FILES:
            path = f"{CREDENTIALS_DIR}/{CREDENTIAL_FILES[entry.kind]}"
            return {entry.variable: "", f"{entry.variable}_FILE": path}
        case Credential():
            return {entry.variable: optional(entry.dotenv_key)}
        case Address():
            return {entry.variable: _address(entry)}
        case DataPath():
            return {entry.variable: f"{topology.DATA_DIR}/{entry.filename}"}
        case TlsPath():
            return {entry.variable: str(getattr(tls_files(comp), entry.part.value))}
        case VolumeSize():  # a named volume has no size
            return {}


def _address(entry: Address) -> str:
    """Services reach each other by compose service name on the private network."""
    port = topology.component(entry.component).port
    match entry.place:
        case Place.HOST | Place.NAMES:
            return entry.component
        case Place.PORT:
            return str(port)
        case Place.MCP_URL:
            return f"http://{entry.component}:{port}/mcp"
        case Place.BIND:
            return "0.0.0.0"


def volume_name(comp: Component) -> str:
    return f"{comp.name}_data"


def build_target(comp: Component) -> str:
    """The stage of ``docker/Dockerfile`` that builds this MAD's image."""
    return comp.dns_name


def healthcheck(comp: Component, tls: bool = False) -> dict[str, Any]:
    """Readiness, the same as every substrate: ``/readyz`` for a MAD, an authenticated PING
    for Redis (the password comes from the container's environment, never the command line;
    ``$$`` keeps compose from interpolating it; over TLS with the group's CA)."""
    if comp.probe.kind == topology.ProbeKind.REDIS_PING:
        over = f"--tls --cacert {tls_files(comp).ca} " if tls else ""
        auth = f'REDISCLI_AUTH="$$(cat {CREDENTIALS_DIR}/{bus_users.ADMIN_PASSWORD_FILE})"'
        test: list[str] = [
            "CMD-SHELL",
            f"{auth} redis-cli {over}-p {comp.port} ping | grep -q PONG",
        ]
    else:
        ca = tls_files(comp).ca if tls and topology.serves_tls(comp) else None
        probe = readyz_probe(str(comp.port), comp.probe.path, ca)
        test = ["CMD", "python", "-I", "-S", "-c", probe]
    return {"test": test, **HEALTHCHECK_TIMING}


def readyz_probe(port: str, path: str, ca: str | None = None) -> str:
    """A healthcheck that costs a bare interpreter's start (``-I -S``: no site-packages,
    nothing imported but ``socket``) and one HTTP/1.0 request, instead of importing urllib.
    Exits 0 on a 200, else 1 with one line saying why (no traceback in ``docker inspect``).
    ``port`` is Python: a literal, or ``int(os.environ['MAD_PORT'])`` in the Dockerfile.
    With a ``ca``: over TLS, the certificate checked against it."""
    wrap = (
        f" s=ssl.create_default_context(cafile='{ca}').wrap_socket(s,server_hostname='127.0.0.1')\n"
        if ca
        else ""
    )
    return (
        f"import os,socket,sys{',ssl' if ca else ''}\n"
        "try:\n"
        f" s=socket.create_connection(('127.0.0.1',{port}),3)\n"
        f"{wrap}"
        f" s.sendall(b'GET {path} HTTP/1.0\\r\\n\\r\\n')\n"
        " r=s.makefile('rb').readline()\n"
        "except OSError as e:\n"
        " sys.exit(f'not ready: {e}')\n"
        "sys.exit(0 if r.split()[1:2]==[b'200'] else "
        "'not ready: '+r.decode(errors='replace').strip())"
    )


def service(part: ResolvedComponent, group: ResolvedGroup) -> dict[str, Any]:
    comp, tls = part.component, group.spec.tls.enabled
    svc: dict[str, Any] = {"image": part.image}
    if comp.is_mad:
        svc["build"] = {
            "context": ".",
            "dockerfile": DOCKERFILE,
            "target": build_target(comp),
            "args": list(BUILD_ARGS),
        }
        svc["init"] = True
    svc["command"] = part.command(
        users_file=f"{CREDENTIALS_DIR}/users.acl", tls=tls_files(comp) if tls else None
    )
    svc["env_file"] = [ENV_FILE]
    env = environment(part, group)
    if env:
        svc["environment"] = env
    depends: dict[str, dict[str, str]] = {}
    if not comp.is_mad:
        depends[CREDENTIALS_SERVICE] = {"condition": "service_completed_successfully"}
    depends.update({name: {"condition": "service_healthy"} for name in part.gates})
    if depends:
        svc["depends_on"] = depends
    svc["healthcheck"] = healthcheck(comp, tls)
    if part.settings.replicas > 1:  # no container_name, no host port: --scale works too
        svc["deploy"] = {"replicas": part.settings.replicas}
    svc["restart"] = RESTART_POLICY
    if comp.exposed:
        svc["ports"] = [
            f"${{{PUBLISH_ADDRESS_VARIABLE}:-{DEFAULT_PUBLISH_ADDRESS}}}:{comp.port}:{comp.port}"
        ]
    volumes = [f"{volume_name(comp)}:{comp.data_path}"] if part.keeps_volume else []
    if not comp.is_mad:
        volumes.append(f"{ACL_VOLUME}:{CREDENTIALS_DIR}:ro")
    elif holds_credentials(comp):
        volumes.append(f"{credentials_volume(comp)}:{CREDENTIALS_DIR}:ro")
    volumes += [
        f"./{declared_file(comp, variable)}:{FILES_MOUNT}/{variable}:ro" for variable in part.files
    ]
    if volumes:
        svc["volumes"] = volumes
    if comp.is_mad:
        svc["read_only"] = True
        svc["tmpfs"] = ["/tmp"]
        svc["cap_drop"] = ["ALL"]
    svc["security_opt"] = ["no-new-privileges:true"]
    svc["networks"] = [NETWORK]
    svc["logging"] = LOGGING
    return svc


def credentials_service(group: ResolvedGroup) -> dict[str, Any]:
    """The one-shot that writes the credentials (as root, for the files' ownership: every
    capability dropped but CHOWN and DAC_OVERRIDE — to keep files it made for the MADs'
    user —, no network, read-only, exits when done). It reads the administrator's
    password from the ``.env`` variable the declaration names, and refuses a ``.env`` that
    sets a declared secret's variable to another value than the key the declaration
    names for it (one line)."""
    first = group.of(topology.tools_component().name)
    bus = topology.bus()
    volumes = [f"{ACL_VOLUME}:{CREDENTIALS_DIR}/{bus.name}"]
    command = ["mad-bus-users", CREDENTIALS_DIR, "--env-file", ENV_MOUNT]
    admin = group.admin
    if admin.dotenv_key != admin.variable:
        command += ["--admin-key", admin.dotenv_key]
    for part in group:  # .env must not set what the declaration reads elsewhere, apart
        for entry in part.environment:
            if isinstance(entry, Secret) and entry.ref.key != entry.variable:
                command += ["--declared", f"{entry.variable}={entry.ref.key}"]
    volumes.append(f"./{ENV_FILE}:{ENV_MOUNT}:ro")
    if group.spec.tls.enabled:
        volumes.append(f"{CA_VOLUME}:{CREDENTIALS_DIR}/ca")
        for name in topology.tls_servers():
            command += ["--tls", f"{name}={','.join([name, *TLS_HOSTS])}"]
    volumes += [
        f"{credentials_volume(c)}:{CREDENTIALS_DIR}/{c.name}"
        for c in topology.start_order()
        if c.is_mad and holds_credentials(c)
    ]
    return {
        "image": first.image,
        "build": {
            "context": ".",
            "dockerfile": DOCKERFILE,
            "target": build_target(first.component),
            "args": list(BUILD_ARGS),
        },
        "command": command,
        "user": "0:0",
        "volumes": volumes,
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": ["CHOWN", "DAC_OVERRIDE"],
        "security_opt": ["no-new-privileges:true"],
        "healthcheck": {"disable": True},
        "restart": "no",
        "logging": LOGGING,
    }


def compose_document(declared: MadGroupSpec | None = None) -> dict[str, Any]:
    group = resolve(declared or parse_spec({}))
    services = {CREDENTIALS_SERVICE: credentials_service(group)}
    services.update({part.name: service(part, group) for part in group})
    volumes: dict[str, dict[str, Any]] = {
        volume_name(p.component): {} for p in group if p.keeps_volume
    }
    volumes[ACL_VOLUME] = {}
    if group.spec.tls.enabled:
        volumes[CA_VOLUME] = {}
    volumes.update(
        {
            credentials_volume(c): {}
            for c in topology.COMPONENTS
            if c.is_mad and holds_credentials(c)
        }
    )
    document = {
        "services": services,
        "networks": {NETWORK: {"driver": "bridge"}},
        "volumes": volumes,
    }
    elsewhere = group.not_backed_up()
    if elsewhere:
        document[EXTENSION] = {NOT_BACKED_UP: elsewhere}
    return document


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors/aliases (the shared logging dict is written out in full)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_compose(declared: MadGroupSpec | None = None) -> str:
    body = yaml.dump(
        compose_document(declared),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    return HEADER + "\n" + body


def render_start_interval() -> str:
    override = {
        "services": {
            comp.name: {"healthcheck": dict(START_INTERVAL_TIMING)}
            for comp in topology.start_order()
        }
    }
    body = yaml.dump(override, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return START_INTERVAL_HEADER + "\n" + body


def render_files(document: Document | None = None) -> dict[str, str]:
    """The compose files for a MadGroup document (the built-in group when None): what
    compose cannot honour is refused, what it ignores is said on stderr."""
    declared = parse_spec((document or default_document()).raw_spec)
    for note in substrates.check(declared, substrates.COMPOSE):
        print(f"madgroup: note: {note}", file=sys.stderr)
    rendered = {
        COMPOSE_FILE: render_compose(declared),
        START_INTERVAL_FILE: render_start_interval(),
    }
    for part in resolve(declared):
        for variable, content in part.files.items():
            rendered[declared_file(part.component, variable)] = content + "\n"
    return rendered

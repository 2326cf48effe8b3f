"""One environment per component, the same on every substrate. One MadGroup — the
administrator's password from a declared secret (``spec.redis.passwordSecretRef``), an
OpenAI-compatible LLM whose key comes from a secret, Grace's tokens from a secret and as a
file — is rendered for the local runner, compose and Kubernetes; each substrate's output is
read back as its process would see it (compose's ``env_file`` and interpolation, a
credential's ``_FILE`` twin, a Secret reference, a mounted file), against one set of secret
values kept the way each substrate keeps them. Per component the variables are the same on
all three and hold the same values (where a component is reached is each substrate's own,
and checked as such); the administrator's password is in no MAD's environment; no secret
value is in any file a substrate writes. Then the local runner brings that declaration up
and the guide's checks pass with the declared key's value."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from madgroup import environment, topology
from madgroup.compose import render
from madgroup.environment import check_dotenv
from madgroup.kube import crd, credentials, naming, objects
from madgroup.kube.quantities import whole_bytes as quantity_bytes
from madgroup.local import launcher
from madgroup.local.declaration import Declared
from madgroup.local.state import StateDir
from madgroup.resolved import resolve
from madgroup.spec import read_document

from mads.core.cli import bus_users
from mads.grace import tokens as grace_tokens
from mads.grace.scope_file import ScopeMapFile
from tests.support.local_group import Group
from tests.support.sample import sample_with

GROUP = "demo"
NAMESPACE = "team-a"
LOOPBACK = "127.0.0.1"
ADMIN_KEY = "ADMIN_PW"
LLM_KEY = "OPENAI_KEY"
TOKENS_KEY = "FRONT_TOKENS"
STORE_KEY = "TASKS_URI"
CLIENT_SECRET_KEY = "GRACE_CLIENT_SECRET"
LLM_URL = "http://llm.example:11434/v1"
SCOPES = {"scopes": {"mad.fiedler": {"tools": ["fiedler_*"]}}, "limits": {"concurrent_calls": 2}}


def declaration(token_sha256: str) -> dict[str, Any]:
    return {
        "redis": {
            "passwordSecretRef": {"name": "admin", "key": ADMIN_KEY},
            "maxmemory": "512Mi",
        },
        "heartbeatSeconds": 2,
        "fiedler": {
            "llm": {
                "provider": "openai",
                "baseUrl": LLM_URL,
                "model": "llama3.1",
                "apiKeySecretRef": {"name": "llm", "key": LLM_KEY},
                "timeoutSeconds": 45,
            },
            "store": {
                "type": "postgresql",
                "uriSecretRef": {"name": "tasks-app", "key": STORE_KEY},
            },
            "concurrency": 64,
            "retention": {"maxAge": "1d", "maxTasks": 5000},
            "env": {"OTEL_SERVICE_NAME": "fiedler-a"},
        },
        "grace": {
            "tokenSecretRef": {"name": "front", "key": TOKENS_KEY},
            "tokens": [{"name": "ops", "sha256": token_sha256, "scopes": {"tools": ["x"]}}],
            "oauth": {
                "issuer": "https://id.example.com",
                "resource": "https://grace.example.com/mcp",
                "scopes": SCOPES,
                "introspection": {
                    "url": "https://id.example.com/oauth2/introspect",
                    "clientId": "grace",
                    "clientSecretRef": {"name": "grace-oauth", "key": CLIENT_SECRET_KEY},
                },
            },
            "maxInFlight": 512,
            "limits": {"requestsPerSecond": 20, "concurrentCalls": 8},
        },
    }


TUNABLES = {
    "fiedler": {
        "FIEDLER_MAX_CONCURRENCY": "64",
        "FIEDLER_LLM_TIMEOUT_S": "45",
        "FIEDLER_RETENTION_MAX_AGE_S": "86400",
        "FIEDLER_RETENTION_MAX_TASKS": "5000",
        "MAD_HEARTBEAT_S": "2",
        "OTEL_SERVICE_NAME": "fiedler-a",
    },
    "grace": {
        "GRACE_MAX_INFLIGHT": "512",
        "GRACE_DEFAULT_REQUESTS_PER_SECOND": "20",
        "GRACE_DEFAULT_CONCURRENT_CALLS": "8",
        "MAD_HEARTBEAT_S": "2",
    },
    "rogers": {"MAD_HEARTBEAT_S": "2"},
}
"""What :func:`declaration`'s tunables give each component, on every substrate."""
REDIS_MEMORY = ["--maxmemory", "512mb", "--maxmemory-policy", "noeviction"]


class World:
    """The group's secrets, one value each, kept as every substrate keeps them: ``.env``
    (local and compose), Kubernetes Secrets (declared and generated), and the files compose's
    credentials one-shot writes."""

    def __init__(self) -> None:
        def value() -> str:
            return secrets.token_urlsafe(24)

        self.admin, self.llm_key, self.front_tokens = value(), value(), value()
        self.internal, self.metrics, self.client_secret = value(), value(), value()
        self.store_uri = f"postgresql://app:{value()}@tasks-rw:5432/app"
        self.bus = {user: value() for user in topology.bus_users()}
        self.dotenv = {
            ADMIN_KEY: self.admin,
            LLM_KEY: self.llm_key,
            TOKENS_KEY: self.front_tokens,
            STORE_KEY: self.store_uri,
            CLIENT_SECRET_KEY: self.client_secret,
            topology.INTERNAL_TOKEN_VARIABLE: self.internal,
            topology.METRICS_TOKEN_VARIABLE: self.metrics,
            **{topology.bus_password_variable(u): p for u, p in self.bus.items()},
        }
        self.kube = {
            ("admin", ADMIN_KEY): self.admin,
            ("llm", LLM_KEY): self.llm_key,
            ("front", TOKENS_KEY): self.front_tokens,
            ("tasks-app", STORE_KEY): self.store_uri,
            ("grace-oauth", CLIENT_SECRET_KEY): self.client_secret,
            (naming.internal_token_secret_name(GROUP), credentials.TOKEN_KEY): self.internal,
            (naming.metrics_token_secret_name(GROUP), credentials.TOKEN_KEY): self.metrics,
            **{
                (naming.bus_secret_name(GROUP, u), credentials.PASSWORD_KEY): p
                for u, p in self.bus.items()
            },
        }

    def credential_file(self, component: str, path: str) -> str:
        """What compose's credentials one-shot (``mad-bus-users``) keeps at ``path`` in
        the volume ``component`` mounts."""
        name = path.removeprefix(f"{render.CREDENTIALS_DIR}/")
        if name == bus_users.ADMIN_PASSWORD_FILE:
            return self.admin
        if name == bus_users.INTERNAL_TOKEN_FILE:
            return self.internal
        assert name == bus_users.PASSWORD_FILE, path
        return self.bus[component]

    def values(self) -> list[str]:
        return [*self.dotenv.values()]


def settled(env: Mapping[str, str], read_file: Any) -> dict[str, str]:
    """An environment as a MAD's settings take it: ``X_FILE`` names a file holding ``X``
    when ``X`` is unset or empty (:class:`mads.core.settings.MadSettings`); empty is unset."""
    out = dict(env)
    for variable in [v for v in out if v.endswith("_FILE")]:
        secret = variable.removesuffix("_FILE")
        if not out.get(secret) and out[variable].startswith(f"{render.CREDENTIALS_DIR}/"):
            out[secret] = read_file(out.pop(variable))
    return {k: v for k, v in out.items() if v != ""}


def interpolate(text: str, dotenv: Mapping[str, str]) -> str:
    """Compose's ``${NAME:?...}`` / ``${NAME:-}`` from ``.env``."""
    return re.sub(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:\?[^}]*|:-[^}]*)?\}",
        lambda m: dotenv.get(m.group(1), ""),
        text,
    )


def local_envs(
    path: Path, world: World, state: StateDir, monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, str]]:
    """What the local runner gives each component, from this shell's nothing but PATH."""
    declared = Declared.of(resolve(_parse(path)))
    state.ensure()
    state.save_declaration(read_document(path), declared.to_json())
    monkeypatch.setattr(os, "environ", {"PATH": "/usr/bin"})
    ports = dict(topology.DEFAULT_PORTS)
    found = {}
    for comp in topology.COMPONENTS:
        env = launcher.component_env(comp, ports, world.dotenv, state, declared)
        for plumbing in ("PATH", "PYTHONUNBUFFERED"):
            env.pop(plumbing, None)
        found[comp.name] = settled(env, None)
    launcher.command(topology.bus(), ports, world.dotenv, state, declared)  # its files
    return found


def _parse(path: Path) -> Any:
    from madgroup.spec import parse_spec

    return parse_spec(read_document(path).raw_spec)


def compose_envs(files: Mapping[str, str], world: World) -> dict[str, dict[str, str]]:
    services = yaml.safe_load(files[render.COMPOSE_FILE])["services"]
    found = {}
    for comp in topology.COMPONENTS:
        service = services[comp.name]
        assert service["env_file"] == [render.ENV_FILE]
        env = dict(world.dotenv)  # env_file, then environment, which wins
        env.update(
            {k: interpolate(str(v), world.dotenv) for k, v in service["environment"].items()}
        )
        found[comp.name] = settled(env, lambda p, name=comp.name: world.credential_file(name, p))
    return found


def kube_envs(path: Path, world: World) -> tuple[dict[str, dict[str, str]], list[Any]]:
    declared = crd.parse(read_document(path).raw_spec)
    owner = objects.Owner(GROUP, NAMESPACE, "uid-1")
    found, manifests = {}, []
    for part in resolve(declared):
        made = objects.component_objects(owner, declared, part)
        manifests += made
        workload = next(m for m in made if m["kind"] in ("Deployment", "StatefulSet"))
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        env = {}
        for item in container["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            env[item["name"]] = world.kube[(ref["name"], ref["key"])] if ref else item["value"]
        found[part.name] = settled(env, None)
    return found, manifests


def file_content(substrate: str, value: str, files: Mapping[str, str], manifests: list[Any]) -> str:
    """What a declared file variable names, on each substrate."""
    if substrate == "local":
        return Path(value).read_text()
    if substrate == "compose":
        variable = value.rsplit("/", 1)[-1]
        return files[render.declared_file(topology.component("grace"), variable)].rstrip("\n")
    config_maps = [m for m in manifests if m["kind"] == "ConfigMap"]
    return str(config_maps[0]["data"][value.rsplit("/", 1)[-1]])


def placement(substrate: str, name: str) -> dict[str, str]:
    """Where each substrate says a component is reached, listens and keeps its data."""
    if substrate == "local":
        return {"host": LOOPBACK, "bind": LOOPBACK, "names": LOOPBACK, "data": ""}
    if substrate == "compose":
        return {"host": name, "bind": "0.0.0.0", "names": name, "data": "/data/"}
    service = naming.child_name(GROUP, name)
    names = objects.allowed_hosts(objects.Owner(GROUP, NAMESPACE, ""), name)
    return {"host": service, "bind": "0.0.0.0", "names": ",".join(names), "data": "/data/"}


def check_placement(substrate: str, component: str, env: dict[str, str]) -> Iterator[str]:
    """The variables whose value is where the substrate puts things: each checked against
    that substrate's own rule, and yielded."""
    own = placement(substrate, component)
    expected = {"MAD_HOST": own["bind"], "MAD_ALLOWED_HOSTS": own["names"]}
    if "REDIS_HOST" in env:
        expected["REDIS_HOST"] = placement(substrate, "redis")["host"]
    if "SEQUENTIAL_THINKING_URL" in env:
        thinking = placement(substrate, "sequential_thinking")["host"]
        expected["SEQUENTIAL_THINKING_URL"] = f"http://{thinking}:8000/mcp"
    for variable, value in expected.items():
        if variable in env:
            assert env[variable] == value, (substrate, component, variable)
            yield variable
    if "FIEDLER_DB_PATH" in env:
        assert env["FIEDLER_DB_PATH"].endswith("/fiedler_state.db")
        if own["data"]:
            assert env["FIEDLER_DB_PATH"].startswith(own["data"]), substrate
        yield "FIEDLER_DB_PATH"


def test_one_declaration_gives_each_component_the_same_environment_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe(24)
    path = sample_with(tmp_path, declaration(grace_tokens.digest(token)))
    world = World()
    state = StateDir(tmp_path / "state")

    files = render.render_files(read_document(path))
    kube, manifests = kube_envs(path, world)
    seen = {
        "compose": compose_envs(files, world),
        "kube": kube,
        "local": local_envs(path, world, state, monkeypatch),
    }
    monkeypatch.undo()

    declared = resolve(crd.parse(read_document(path).raw_spec))
    for comp in topology.COMPONENTS:
        name = comp.name
        # A volume's size is the one thing only Kubernetes has: there, and nowhere else.
        sized = {
            e.variable: e.component
            for e in declared.of(name).environment
            if isinstance(e, environment.VolumeSize)
        }
        for variable, owner in sized.items():
            storage = declared.spec.component(owner).storage
            assert seen["kube"][name][variable] == str(quantity_bytes(storage.size)), variable
            assert variable not in seen["compose"][name] and variable not in seen["local"][name]
        variables = {substrate: set(envs[name]) - set(sized) for substrate, envs in seen.items()}
        assert variables["compose"] == variables["kube"] == variables["local"], name
        substrate_own: set[str] = set()
        for substrate, envs in seen.items():
            substrate_own |= set(check_placement(substrate, name, envs[name]))
        for variable in variables["kube"] - substrate_own:
            values = {s: envs[name][variable] for s, envs in seen.items()}
            if variable in ("GRACE_TOKENS_FILE", "GRACE_OAUTH_SCOPES_FILE"):
                values = {s: file_content(s, v, files, manifests) for s, v in values.items()}
            assert len(set(values.values())) == 1, (name, variable, values)

    # What the declaration sets is there, and the administrator's password only on the bus.
    for substrate, envs in seen.items():
        fiedler, grace, redis = envs["fiedler"], envs["grace"], envs["redis"]
        assert fiedler["FIEDLER_LLM_PROVIDER"] == "openai"
        assert fiedler["FIEDLER_LLM_BASE_URL"] == LLM_URL
        assert fiedler["FIEDLER_LLM_API_KEY"] == world.llm_key
        assert grace["GRACE_API_TOKENS"] == world.front_tokens
        assert fiedler["FIEDLER_STORE"] == "postgresql"
        assert fiedler["FIEDLER_STORE_URI"] == world.store_uri
        assert "FIEDLER_DB_PATH" not in fiedler  # no data file: the tasks are in PostgreSQL
        assert grace["GRACE_OAUTH_ISSUER"] == "https://id.example.com"
        assert grace["GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET"] == world.client_secret
        scopes = file_content(substrate, grace["GRACE_OAUTH_SCOPES_FILE"], files, manifests)
        assert ScopeMapFile.model_validate_json(scopes) == ScopeMapFile.model_validate(SCOPES)
        assert redis["REDIS_PASSWORD"] == world.admin, substrate
        for mad in topology.MAD_NAMES:
            env = envs[mad]
            assert world.admin not in env.values(), (substrate, mad)
            if topology.component(mad).bus_user:
                assert env["REDIS_PASSWORD"] == world.bus[mad], (substrate, mad)
                assert env["REDIS_USERNAME"] == mad

    # The tunables reach the components they set, and only those, on every substrate.
    for substrate, envs in seen.items():
        for component, tunables in TUNABLES.items():
            assert {v: envs[component].get(v) for v in tunables} == tunables, substrate
        for component in ("redis", "sequential_thinking"):
            assert "MAD_HEARTBEAT_S" not in envs[component], (substrate, component)
    redis_commands = {
        "compose": yaml.safe_load(files[render.COMPOSE_FILE])["services"]["redis"]["command"],
        "kube": next(
            m["spec"]["template"]["spec"]["containers"][0]["command"]
            for m in manifests
            if m["kind"] == "StatefulSet" and m["metadata"]["name"].endswith("-redis")
        ),
    }
    for substrate, command in redis_commands.items():
        at = command.index("--maxmemory")
        assert command[at : at + 4] == REDIS_MEMORY, substrate
    redis_conf = state.redis_conf.read_text().splitlines()
    assert {'maxmemory "512mb"', 'maxmemory-policy "noeviction"'} <= set(redis_conf)

    # No secret value in any file a substrate writes.
    written = {
        **files,
        "kube": yaml.safe_dump_all(manifests),
        **{str(p): p.read_text() for p in state.root.rglob("*") if p.is_file()},
    }
    for where, text in written.items():
        leaked = [value for value in [*world.values(), token] if value in text]
        assert not leaked, f"a secret value is in {where}"


def test_the_declared_administrators_password_brings_the_group_up_locally(
    tmp_path: Path,
) -> None:
    """``madgroup up -f`` with ``passwordSecretRef``: Redis's users, its readiness check and
    the guide's step 2 all take the declared key's value; no MAD process has it."""
    path = sample_with(tmp_path, {"redis": {"passwordSecretRef": {"name": "a", "key": ADMIN_KEY}}})
    local = Group(tmp_path / "project", env={"MAD_HEARTBEAT_S": "0.5"})
    local.mg("init", "-f", str(path))
    dotenv = (local.root / ".env").read_text()
    assert "REDIS_PASSWORD=" not in dotenv
    admin = re.search(rf"^{ADMIN_KEY}=(.+)$", dotenv, re.M)
    assert admin is not None
    try:
        local.up("-f", str(path))
        smoke = local.mg("smoke")
        assert "smoke: all 8 steps of the guide passed" in smoke.stdout
        ping = local.mg(
            "exec", "redis", "redis-cli", "--no-auth-warning", "--pass", admin.group(1), "ping"
        )
        assert ping.stdout.strip() == "PONG"
        for mad in topology.MAD_NAMES:
            environ = Path(f"/proc/{local.pid(mad)}/environ").read_bytes()
            assert admin.group(1).encode() not in environ, mad
    finally:
        local.cleanup()


def test_a_secret_set_twice_to_two_values_is_refused_in_one_line(tmp_path: Path) -> None:
    path = sample_with(tmp_path, {"redis": {"passwordSecretRef": {"name": "a", "key": ADMIN_KEY}}})
    local = Group(tmp_path / "project")
    local.mg("init")  # the guide's REDIS_PASSWORD
    local.write_env(f"{ADMIN_KEY}={secrets.token_urlsafe(24)}\n")
    up = local.up("-f", str(path), check=False)
    assert up.returncode == 2
    assert up.stderr == (
        f"madgroup: spec.redis.passwordSecretRef names {ADMIN_KEY} in .env, but .env also "
        f"sets REDIS_PASSWORD to another value: remove REDIS_PASSWORD from .env or give both "
        "the same value; nothing was started\n"
    )
    assert not (local.state_dir / "state.json").exists()
    # The same rule for every declared secret, and none when the two agree.
    tokens = {"grace": {"tokenSecretRef": {"name": "t", "key": TOKENS_KEY}}}
    grace = resolve(_parse(sample_with(tmp_path, tokens))).of("grace").environment
    conflict = f"names {TOKENS_KEY} in .env, but .env also sets GRACE_API_TOKENS"
    with pytest.raises(ValueError, match=conflict):
        check_dotenv(grace, {TOKENS_KEY: "one-value", "GRACE_API_TOKENS": "another-value"})
    check_dotenv(grace, {TOKENS_KEY: "same-value", "GRACE_API_TOKENS": "same-value"})


def test_compose_reads_the_declared_administrators_password_and_refuses_two(
    tmp_path: Path,
) -> None:
    """compose's credentials one-shot takes the administrator's password from the key the
    declaration names (the ACL file's default user), and refuses a .env whose guide
    variable holds another; so for any secret the declaration reads from a key of its
    own."""
    path = sample_with(tmp_path, {"redis": {"passwordSecretRef": {"name": "a", "key": ADMIN_KEY}}})
    compose = yaml.safe_load(render.render_files(read_document(path))[render.COMPOSE_FILE])
    command = compose["services"][render.CREDENTIALS_SERVICE]["command"]
    assert command[-2:] == ["--admin-key", ADMIN_KEY]
    admin = secrets.token_urlsafe(24)
    env_file = tmp_path / ".env"
    env_file.write_text(f"{ADMIN_KEY}={admin}\n")
    out = tmp_path / "credentials"
    assert bus_users.main([str(out), "--env-file", str(env_file), "--admin-key", ADMIN_KEY]) == 0
    assert (out / "redis" / bus_users.ADMIN_PASSWORD_FILE).read_text() == admin
    env_file.write_text(f"REDIS_PASSWORD={secrets.token_urlsafe(24)}\n{ADMIN_KEY}={admin}\n")
    refused = bus_users.main([str(out), "--env-file", str(env_file), "--admin-key", ADMIN_KEY])
    assert refused == 2

    tokens = sample_with(tmp_path, {"grace": {"tokenSecretRef": {"name": "t", "key": TOKENS_KEY}}})
    compose = yaml.safe_load(render.render_files(read_document(tokens))[render.COMPOSE_FILE])
    command = compose["services"][render.CREDENTIALS_SERVICE]["command"]
    assert command[-2:] == ["--declared", f"GRACE_API_TOKENS={TOKENS_KEY}"]
    env_file.write_text(f"REDIS_PASSWORD={admin}\n{TOKENS_KEY}=one-{admin}\n")
    assert bus_users.main([str(out), "--env-file", str(env_file), *command[-2:]]) == 0
    env_file.write_text(f"{env_file.read_text()}GRACE_API_TOKENS=another-{admin}\n")
    assert bus_users.main([str(out), "--env-file", str(env_file), *command[-2:]]) == 2


def test_what_the_declaration_sets_wins_over_env_on_compose_and_locally(tmp_path: Path) -> None:
    """``provider: builtin`` in the file beats ``FIEDLER_LLM_PROVIDER=openai`` in .env; a
    field the file leaves alone stays .env's to set."""
    path = sample_with(tmp_path, {"fiedler": {"llm": {"provider": "builtin"}}})

    def fiedler_env(document: Any) -> dict[str, str]:
        compose = yaml.safe_load(render.render_files(document)[render.COMPOSE_FILE])
        service = compose["services"]["fiedler"]
        assert service["env_file"] == [render.ENV_FILE]  # environment wins over it
        return dict(service["environment"])

    assert fiedler_env(read_document(path))["FIEDLER_LLM_PROVIDER"] == "builtin"
    assert "FIEDLER_LLM_PROVIDER" not in fiedler_env(None)

    local = Group(tmp_path / "project", env={"MAD_HEARTBEAT_S": "0.5"})
    local.mg("init")
    local.write_env("FIEDLER_LLM_PROVIDER=openai\n")  # no endpoint: Fiedler would not start
    try:
        local.up("-f", str(path), "fiedler")
        environ = Path(f"/proc/{local.pid('fiedler')}/environ").read_bytes().split(b"\0")
        assert b"FIEDLER_LLM_PROVIDER=builtin" in environ
        status = local.mg("exec", "fiedler", "mad-status")
        assert "- Status: HEALTHY" in status.stdout
    finally:
        local.cleanup()

"""The committed docker-compose.yml: current with the topology, valid compose-spec, and
saying what the deployment guide relies on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from madgroup import topology
from madgroup.compose.render import (
    START_INTERVAL_FILE,
    render_compose,
    render_start_interval,
)

GUIDE_SERVICES = ["redis", "sequential_thinking", "grace", "rogers", "fiedler"]
# The guide's one-by-one start order plus what each service talks to (1.4).
GUIDE_GATES = {
    "redis": set(),
    "sequential_thinking": {"redis"},
    "grace": {"redis", "sequential_thinking"},
    "rogers": {"redis", "sequential_thinking", "grace"},
    "fiedler": {"redis", "sequential_thinking", "rogers"},
}
PASSWORD = "s3cret-Pass/word+=="
ONE_SHOT = "bus_users"
"""Writes the MADs' credentials and Redis's ACL file, then exits (before Redis starts)."""
CREDENTIALS = "/run/madgroup"


def test_committed_file_is_rendered_from_the_topology(compose_text: str) -> None:
    assert compose_text == render_compose(), (
        "docker-compose.yml is out of date: run `madgroup render compose`"
    )


def test_committed_start_interval_override_is_rendered(root: Path, dev_tool) -> None:
    path = root / START_INTERVAL_FILE
    assert path.read_text() == render_start_interval(), "run `madgroup render compose`"
    result = _check_jsonschema(dev_tool("check-jsonschema"), path)
    assert result.returncode == 0, result.stdout + result.stderr
    override = yaml.safe_load(path.read_text())
    assert list(override["services"]) == GUIDE_SERVICES
    for svc in override["services"].values():
        assert svc == {
            "healthcheck": {"interval": "30s", "start_interval": "250ms", "start_period": "60s"}
        }
    assert f"COMPOSE_FILE=docker-compose.yml:{START_INTERVAL_FILE}" in path.read_text()


def test_render_check_reports_drift(tmp_path: Path) -> None:
    from madgroup.cli import main

    (tmp_path / "docker-compose.yml").write_text(render_compose().replace("10m", "20m"))
    assert main(["render", "compose", "--root", str(tmp_path), "--check"]) == 1
    assert main(["render", "compose", "--root", str(tmp_path)]) == 0
    assert main(["render", "compose", "--root", str(tmp_path), "--check"]) == 0


def _check_jsonschema(tool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validates_against_the_compose_spec(root: Path, dev_tool) -> None:
    result = _check_jsonschema(dev_tool("check-jsonschema"), root / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_spec_check_rejects_a_broken_file(
    compose: dict[str, Any], dev_tool, tmp_path: Path
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(compose))
    broken["services"]["fiedler"]["depends_on"]["rogers"]["condition"] = "service_ready"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert _check_jsonschema(dev_tool("check-jsonschema"), path).returncode != 0


def test_the_guides_five_services_after_the_credentials_one_shot(compose: dict[str, Any]) -> None:
    assert list(compose["services"]) == [ONE_SHOT, *GUIDE_SERVICES]
    one_shot = compose["services"][ONE_SHOT]
    assert one_shot["command"] == [
        "mad-bus-users",
        CREDENTIALS,
        "--env-file",
        "/run/madgroup-env/.env",
    ]
    assert "env_file" not in one_shot and "environment" not in one_shot
    assert one_shot["network_mode"] == "none" and one_shot["restart"] == "no"
    assert one_shot["cap_drop"] == ["ALL"] and one_shot["cap_add"] == ["CHOWN", "DAC_OVERRIDE"]
    assert one_shot["read_only"] is True


def test_depends_on_encodes_the_guide_start_order(compose: dict[str, Any]) -> None:
    for name, gates in GUIDE_GATES.items():
        depends = dict(compose["services"][name].get("depends_on", {}))
        if name == "redis":
            assert depends.pop(ONE_SHOT) == {"condition": "service_completed_successfully"}
        assert set(depends) == gates, name
        assert all(d == {"condition": "service_healthy"} for d in depends.values()), name
        assert set(depends) == set(topology.gates(topology.component(name)))


def test_every_service_reads_env_file_and_restarts(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name == ONE_SHOT:  # reads the administrator's password from .env, mounted
            assert "./.env:/run/madgroup-env/.env:ro" in svc["volumes"]
            continue
        assert svc["env_file"] == [".env"], name
        assert svc["restart"] in ("unless-stopped", "always"), name


def test_guide_log_rotation_on_every_service(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc["logging"] == {
            "driver": "json-file",
            "options": {"max-size": "10m", "max-file": "3"},
        }, name


def test_redis_requires_the_password_from_env(compose: dict[str, Any], interpolated) -> None:
    command = compose["services"]["redis"]["command"]
    expanded = interpolated(command, {"REDIS_PASSWORD": PASSWORD})
    assert expanded[expanded.index("--aclfile") + 1] == f"{CREDENTIALS}/users.acl"
    assert PASSWORD not in expanded and "--requirepass" not in expanded
    assert expanded[expanded.index("--appendonly") + 1] == "yes"
    # Redis holds no password in its environment; unset or empty in .env, the credentials
    # service exits non-zero (tests/security/test_bus_users.py) and Redis never starts.
    assert compose["services"]["redis"]["environment"]["REDIS_PASSWORD"] == ""
    assert compose["services"]["redis"]["depends_on"][ONE_SHOT] == {
        "condition": "service_completed_successfully"
    }


def test_named_volumes_for_fiedler_and_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["fiedler"]["volumes"] == [
        "fiedler_data:/data",
        f"fiedler_credentials:{CREDENTIALS}:ro",
    ]
    assert services["redis"]["volumes"] == ["redis_data:/data", f"bus_acl:{CREDENTIALS}:ro"]
    credentials = {f"{name}_credentials" for name in GUIDE_SERVICES[1:]}
    assert set(compose["volumes"]) == {"fiedler_data", "redis_data", "bus_acl", *credentials}
    for name in ("sequential_thinking", "grace", "rogers"):
        assert services[name]["volumes"] == [f"{name}_credentials:{CREDENTIALS}:ro"], name
    # Each MAD sees only its own credentials; the one-shot writes them all.
    assert services[ONE_SHOT]["volumes"] == [
        f"bus_acl:{CREDENTIALS}/redis",
        "./.env:/run/madgroup-env/.env:ro",
        *(f"{name}_credentials:{CREDENTIALS}/{name}" for name in GUIDE_SERVICES[1:]),
    ]
    fiedler_env = compose["services"]["fiedler"]["environment"]
    assert fiedler_env["FIEDLER_DB_PATH"] == "/data/fiedler_state.db"


def test_only_grace_is_published_on_loopback_by_default(
    compose: dict[str, Any], interpolated
) -> None:
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == {"grace"}
    for name, svc in compose["services"].items():
        assert "network_mode" not in svc or name == ONE_SHOT
        assert "expose" not in svc
    ports = compose["services"]["grace"]["ports"]
    assert interpolated(ports, {}) == ["127.0.0.1:8001:8001"]
    assert interpolated(ports, {"GRACE_PUBLISH_ADDRESS": "0.0.0.0"}) == ["0.0.0.0:8001:8001"]


def test_all_services_share_one_private_network(compose: dict[str, Any]) -> None:
    assert len(compose["networks"]) == 1
    (network,) = compose["networks"]
    for name, svc in compose["services"].items():
        if name == ONE_SHOT:
            assert "networks" not in svc  # it needs none
            continue
        assert svc["networks"] == [network], name


def test_mads_reach_each_other_by_service_name(compose: dict[str, Any]) -> None:
    for name in GUIDE_SERVICES[1:]:
        env = compose["services"][name]["environment"]
        comp = topology.component(name)
        assert env["MAD_NAME"] == name
        assert env["MAD_PORT"] == str(comp.port)
        if comp.uses_bus:
            assert (env["REDIS_HOST"], env["REDIS_PORT"]) == ("redis", "6379")
        else:  # what it does not talk to, it is not told of
            assert "REDIS_HOST" not in env and "REDIS_PORT" not in env
        if "sequential_thinking" in comp.peers:
            assert env["SEQUENTIAL_THINKING_URL"] == "http://sequential_thinking:8000/mcp"
        else:
            assert "SEQUENTIAL_THINKING_URL" not in env
        assert name in env["MAD_ALLOWED_HOSTS"].split(",")
        # Not the administrator's password (from .env): each MAD's own, from a file.
        assert env["REDIS_PASSWORD"] == "", name
        if name == "sequential_thinking":
            assert "REDIS_USERNAME" not in env and "REDIS_PASSWORD_FILE" not in env
        else:
            assert env["REDIS_USERNAME"] == name
            assert env["REDIS_PASSWORD_FILE"] == f"{CREDENTIALS}/bus_password"
        internal = env.get("MAD_INTERNAL_TOKEN_FILE")
        assert internal == (None if name == "grace" else f"{CREDENTIALS}/internal_token"), name


def test_mads_build_their_own_image(root: Path, compose: dict[str, Any]) -> None:
    dockerfile = (root / "docker" / "Dockerfile").read_text()
    for name in GUIDE_SERVICES[1:]:
        svc = compose["services"][name]
        comp = topology.component(name)
        assert svc["image"] == comp.image()
        build = svc["build"]
        assert (root / build["context"] / build["dockerfile"]).is_file()
        assert f" AS {build['target']}\n" in dockerfile, name
    assert compose["services"]["redis"]["image"] == topology.REDIS_IMAGE
    assert "build" not in compose["services"]["redis"]


def test_healthchecks_gate_on_readyz(compose: dict[str, Any]) -> None:
    for name in GUIDE_SERVICES[1:]:
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        assert f"('127.0.0.1',{topology.component(name).port})" in test[-1]
        assert "GET /readyz HTTP/1.0" in test[-1]
    redis_test = compose["services"]["redis"]["healthcheck"]["test"]
    assert redis_test[0] == "CMD-SHELL"
    # the password from a file the credentials service writes; $$: not compose's to expand
    assert 'REDISCLI_AUTH="$$(cat /run/madgroup/admin_password)"' in redis_test[1]
    assert "ping" in redis_test[1]


def test_image_builds_take_the_proxy_arguments(compose: dict[str, Any], root: Path) -> None:
    """A host behind a proxy or with a private index sets them in .env (or the shell); a
    proxy that re-signs TLS gives its CA certificates as ``EXTRA_CA_CERTS`` (PEM text)."""
    dockerfile = (root / "docker" / "Dockerfile").read_text()
    example = (root / ".env.example").read_text()
    expected = ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "EXTRA_CA_CERTS"]
    built = {name: svc for name, svc in compose["services"].items() if "build" in svc}
    assert set(built) == {"bus_users", *GUIDE_SERVICES[1:]}
    for name, svc in built.items():
        args = svc["build"]["args"]
        assert args == expected, name
    for arg in args:
        assert f"\nARG {arg}=\n" in dockerfile, arg
        assert f"# {arg}=" in example, f"{arg} is not documented in .env.example"


def test_tls_renders_a_tls_only_redis_and_the_ca_for_every_bus_user():
    from madgroup.compose.render import compose_document
    from madgroup.spec import parse_spec

    doc = compose_document(parse_spec({"tls": {"enabled": True}}))
    services = doc["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--port") + 1] == "0"
    assert command[command.index("--tls-port") + 1] == "6379"
    assert "--tls --cacert /run/madgroup/ca.crt" in redis["healthcheck"]["test"][1]
    for name, svc in services.items():
        env = svc.get("environment", {})
        on_bus = name in ("grace", "rogers", "fiedler")
        assert (env.get("REDIS_TLS_CA_FILE") == "/run/madgroup/ca.crt") == on_bus, name
        holds_ca_key = any(v.startswith("tls_ca:") for v in svc.get("volumes", []))
        assert holds_ca_key == (name == "bus_users"), name
    assert services["bus_users"]["command"][4:] == [
        "--tls",
        "redis=redis,localhost,127.0.0.1",
        "--tls",
        "grace=grace,localhost,127.0.0.1",
    ]
    grace = services["grace"]
    assert grace["environment"]["MAD_TLS_CERT_FILE"] == "/run/madgroup/grace.crt"
    assert "wrap_socket" in grace["healthcheck"]["test"][-1]
    assert "wrap_socket" not in services["rogers"]["healthcheck"]["test"][-1]
    assert "tls_ca" in doc["volumes"]
    plain = compose_document(parse_spec({}))
    assert "tls_ca" not in plain["volumes"]
    assert "--tls-port" not in plain["services"]["redis"]["command"]


def test_each_container_holds_only_its_own_secrets_from_env_file():
    """``env_file: .env`` hands every container the whole file; each service's
    ``environment`` (which wins) blanks every secret of .env it does not use, and gives a
    declared secret to the variable the MAD reads, by compose's interpolation of the .env
    variable the declaration names (which itself stays blank)."""
    from madgroup.compose.render import compose_document
    from madgroup.spec import parse_spec

    declared = parse_spec(
        {
            "fiedler": {
                "llm": {
                    "provider": "openai",
                    "baseUrl": "http://llm:8080/v1",
                    "model": "m",
                    "apiKeySecretRef": {"name": "llm", "key": "OPENAI_KEY"},
                }
            },
            "grace": {"tokenSecretRef": {"name": "t", "key": "FRONT_DOOR_TOKENS"}},
        }
    )
    services = compose_document(declared)["services"]
    secrets = {
        "REDIS_PASSWORD",
        "OPENAI_KEY",
        "FRONT_DOOR_TOKENS",
        "GRACE_API_TOKENS",
        "FIEDLER_LLM_API_KEY",
        "MAD_INTERNAL_TOKEN",
        "GRACE_BUS_PASSWORD",
    }
    own = {
        "grace": {"GRACE_API_TOKENS": "FRONT_DOOR_TOKENS"},
        "fiedler": {"FIEDLER_LLM_API_KEY": "OPENAI_KEY"},
    }
    for name, svc in services.items():
        env = svc.get("environment", {})
        if name == "bus_users":  # no env_file: it reads .env mounted, as a file
            assert "env_file" not in svc and env == {}
            continue
        assert svc["env_file"] == [".env"], name
        held = own.get(name, {})
        for key in secrets - set(held):
            assert env.get(key) == "", (name, key)
        for variable, key in held.items():
            assert env[variable].startswith(f"${{{key}:?"), (name, variable)


def test_fiedler_on_postgresql_renders_replicas_a_valid_file_and_says_where_its_data_is(
    dev_tool, tmp_path: Path
) -> None:
    """Three Fiedler containers on the shared store: a valid compose file, no Fiedler
    volume, and the file's own section naming where Fiedler's data is, which ``madgroup
    backup|report --compose`` read (and copy none of it)."""
    from madgroup.compose import operations
    from madgroup.compose.render import COMPOSE_FILE, render_files
    from madgroup.spec import Document

    store = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app", "key": "TASKS_URI"}}
    document = Document("demo", {"fiedler": {"replicas": 3, "store": store}})
    for name, text in render_files(document).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = _check_jsonschema(dev_tool("check-jsonschema"), tmp_path / COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = yaml.safe_load((tmp_path / COMPOSE_FILE).read_text())
    assert rendered["services"]["fiedler"]["deploy"] == {"replicas": 3}
    (line,) = operations.Compose(tmp_path, program="docker-compose").not_backed_up().values()
    assert line.startswith("fiedler's data is in PostgreSQL, whose own backups keep it")
    # The guide's group says nothing of it: its data is all in its volumes.
    assert "x-madgroup" not in yaml.safe_load(render_compose())

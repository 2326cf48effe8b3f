"""The small pieces: .env parsing and creation, Redis's generated config, ports, state."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import redis as redis_lib
from madgroup import topology
from madgroup.local import envfile, launcher, ports, processes, redis_admin
from madgroup.local.state import ComponentState, GroupState, StateDir


def test_env_parsing_follows_the_env_file_syntax() -> None:
    text = (
        "# comment\n\nexport A=1\nB = two words  # note\nC='x # not a comment'\n"
        'D="quoted"\nREDIS_PASSWORD=first\nREDIS_PASSWORD=ab+/cd==\n'
    )
    assert envfile.parse(text) == {
        "A": "1",
        "B": "two words",
        "C": "x # not a comment",
        "D": "quoted",
        "REDIS_PASSWORD": "ab+/cd==",
    }


@pytest.mark.parametrize("line", ["just words", "1BAD=x", "=x", "K='open"])
def test_a_malformed_line_is_named_by_number_without_its_content(line: str) -> None:
    with pytest.raises(envfile.EnvFileError) as caught:
        envfile.parse(f"OK=1\n{line}\n", source=".env")
    assert ".env line 2" in str(caught.value)
    assert line not in str(caught.value)


def test_init_creates_a_private_env_with_a_csprng_password(tmp_path: Path) -> None:
    (tmp_path / ".env.example").write_text("# REDIS_PASSWORD=\nMAD_HEARTBEAT_S=5\n")
    env = tmp_path / ".env"
    said = envfile.init(env, tmp_path / ".env.example")
    assert "created .env" in said
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    values = envfile.parse(env.read_text())
    assert values["MAD_HEARTBEAT_S"] == "5"
    assert len(base64.b64decode(values["REDIS_PASSWORD"])) == 24
    assert values["REDIS_PASSWORD"] not in said
    assert envfile.new_password() != envfile.new_password()


def test_init_never_replaces_a_password_but_fills_an_empty_one(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("REDIS_PASSWORD=mine\n")
    env.chmod(0o644)
    assert "left unchanged" in envfile.init(env, tmp_path / "missing.example")
    assert env.read_text() == "REDIS_PASSWORD=mine\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    env.write_text("A=1\nREDIS_PASSWORD=\nB=2\n")
    envfile.init(env, tmp_path / "missing.example")
    values = envfile.parse(env.read_text())
    assert values["A"] == "1" and values["B"] == "2" and len(values["REDIS_PASSWORD"]) == 32
    assert env.read_text().count("REDIS_PASSWORD") == 1


BUS_PASSWORDS = {topology.bus_password_variable(u): f"pw-{u}" for u in topology.bus_users()}
BUS_PASSWORDS["MAD_INTERNAL_TOKEN"] = "internal-credential"


def test_init_adds_each_mads_bus_password_and_never_replaces_one(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("REDIS_PASSWORD=mine\nGRACE_BUS_PASSWORD=kept\nROGERS_BUS_PASSWORD=\n")
    users = {u: topology.bus_password_variable(u) for u in topology.bus_users()}
    assert set(users) == {"grace", "rogers", "fiedler"}  # Sequential Thinking is off the bus
    said = envfile.init(env, tmp_path / "missing.example", users)
    assert said == "updated .env with new bus passwords for rogers, fiedler (mode 0600)"
    values = envfile.parse(env.read_text())
    assert values["REDIS_PASSWORD"] == "mine" and values["GRACE_BUS_PASSWORD"] == "kept"
    assert len(base64.b64decode(values["ROGERS_BUS_PASSWORD"])) == 24
    assert values["FIEDLER_BUS_PASSWORD"] != values["ROGERS_BUS_PASSWORD"]
    assert not any(value in said for value in values.values())
    again = envfile.init(env, tmp_path / "missing.example", users)
    assert "already has REDIS_PASSWORD and the other secrets; left unchanged" in again


def test_redis_gets_the_topology_command_and_its_users_as_private_files(tmp_path: Path) -> None:
    redis = topology.component(topology.REDIS)
    state = StateDir(tmp_path / "state")
    state.ensure()
    dotenv = {"REDIS_PASSWORD": 'p"a\\ss', **BUS_PASSWORDS}
    argv = launcher.command(redis, {"redis": 16379}, dotenv, state)
    assert argv[-1] == str(state.redis_conf) and len(argv) == 2
    conf = state.redis_conf.read_text()
    assert "requirepass" not in conf and f'aclfile "{state.redis_acl}"' in conf
    acl = state.redis_acl.read_text()
    assert stat.S_IMODE(state.redis_acl.stat().st_mode) == 0o600
    assert [line.split()[1] for line in acl.splitlines()] == ["default", *topology.bus_users()]
    assert not any(secret in acl or secret in conf for secret in dotenv.values())
    assert 'port "16379"' in conf and 'bind "127.0.0.1"' in conf
    assert 'appendonly "yes"' in conf and 'appendfsync "everysec"' in conf
    assert f'dir "{state.data_dir("redis")}"' in conf
    assert stat.S_IMODE(state.redis_conf.stat().st_mode) == 0o600


def test_the_generated_config_really_protects_redis(tmp_path: Path) -> None:
    """Run redis-server with the generated file: NOAUTH without the password, PONG with."""
    import subprocess

    from tests.support.ports import free_port
    from tests.support.waiting import wait_for

    redis = topology.component(topology.REDIS)
    state = StateDir(tmp_path / "state")
    state.ensure()
    port = free_port()
    dotenv = {"REDIS_PASSWORD": "pw-123", **BUS_PASSWORDS}
    argv = launcher.command(redis, {"redis": port}, dotenv, state)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis_admin.ready(port, "pw-123"), timeout=10)
        assert redis_admin.ping(port, None).startswith("NOAUTH")
        assert redis_admin.ping(port, "wrong").startswith("WRONGPASS")
        grace = redis_lib.Redis(port=port, username="grace", password="pw-grace")
        assert grace.ping()
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            grace.flushall()
    finally:
        proc.terminate()
        proc.wait()


def test_mads_get_local_addresses_and_a_db_inside_the_state_dir(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    plan = ports.plan(100, list(topology.COMPONENT_NAMES))
    dotenv = {"REDIS_PASSWORD": "x", "REDIS_PORT": "1", "MAD_LOG_LEVEL": "DEBUG", **BUS_PASSWORDS}
    env = launcher.component_env(topology.component("fiedler"), plan, dotenv, state)
    assert env["MAD_NAME"] == "fiedler" and env["MAD_PORT"] == "8103"
    assert env["MAD_HOST"] == "127.0.0.1"
    assert env["REDIS_HOST"] == "127.0.0.1" and env["REDIS_PORT"] == "6479"
    assert env["SEQUENTIAL_THINKING_URL"] == "http://127.0.0.1:8100/mcp"
    assert env["FIEDLER_DB_PATH"] == str(state.data_dir("fiedler") / "fiedler_state.db")
    # Its own bus user, and no other secret of .env; the rest of .env as compose's env_file.
    assert env["REDIS_USERNAME"] == "fiedler" and env["REDIS_PASSWORD"] == "pw-fiedler"
    assert not any(key.endswith("_BUS_PASSWORD") for key in env)
    assert env["MAD_LOG_LEVEL"] == "DEBUG"
    thinking = launcher.component_env(
        topology.component("sequential_thinking"), plan, dotenv, state
    )
    assert "REDIS_PASSWORD" not in thinking and "REDIS_USERNAME" not in thinking


def test_port_plan_and_offset_errors() -> None:
    assert ports.plan(0, ["redis", "grace"]) == {"redis": 6379, "grace": 8001}
    with pytest.raises(ports.PortError, match="ports must be 1024-65535"):
        ports.plan(60000, ["grace"])


def test_a_component_run_by_several_processes_gives_each_a_port_and_a_name() -> None:
    from madgroup.local.declaration import Declared
    from madgroup.resolved import resolve
    from madgroup.spec import parse_spec

    store = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app", "key": "TASKS_URI"}}
    declared = Declared.of(resolve(parse_spec({"fiedler": {"replicas": 3, "store": store}})))
    assert declared.instances("fiedler") == ["fiedler", "fiedler-2", "fiedler-3"]
    assert declared.instances("grace") == ["grace"]
    assert Declared.from_json(declared.to_json()) == declared
    first = ports.plan(10, list(topology.COMPONENT_NAMES))
    planned = ports.instance_ports(first, {n: declared.instances(n) for n in first})
    assert planned["fiedler"] == first["fiedler"] == 8013
    assert [planned["fiedler-2"], planned["fiedler-3"]] == [8113, 8213]
    assert len(set(planned.values())) == len(planned)  # no two processes share a port
    with pytest.raises(ports.PortError, match="fiedler-3 would listen on port 65"):
        ports.instance_ports({"fiedler": 65400}, {"fiedler": declared.instances("fiedler")})
    # A group declared before replicas existed is read back with one process each.
    old = {k: v for k, v in declared.to_json().items() if k not in ("replicas", "not_backed_up")}
    assert Declared.from_json(old).instances("fiedler") == ["fiedler"]


def test_state_round_trips_and_pids_are_matched_by_start_time(tmp_path: Path) -> None:
    import os

    sd = StateDir(tmp_path / "s")
    me = ComponentState(
        name="grace", port=1, pid=os.getpid(), ticks=processes.start_ticks(os.getpid())
    )
    sd.save(GroupState(ports={"grace": 1}, wanted=["grace"], components={"grace": me}))
    loaded = sd.load().components["grace"]
    assert loaded == me
    assert processes.alive(loaded.pid, loaded.ticks)
    assert not processes.alive(loaded.pid, (loaded.ticks or 0) + 1)  # a reused pid
    assert not sd.supervisor_running()
    with sd.hold_supervisor_lock() as got:
        assert got and sd.supervisor_running()


def test_plain_progress_shows_every_phase_even_when_a_start_is_missed() -> None:
    import io

    from madgroup.local.progress import Progress
    from madgroup.local.state import ComponentState, GroupState

    out = io.StringIO()
    progress = Progress(["redis"], stream=out)
    progress.update(GroupState(components={"redis": ComponentState("redis", 6379)}))
    ready = ComponentState("redis", 6379, pid=42, phase="ready", started_at=1.0, ready_at=1.5)
    progress.update(GroupState(components={"redis": ready}))
    assert out.getvalue().splitlines() == [
        "redis  waiting",
        "redis  starting (pid 42)",
        "redis  ready in 0.50s (pid 42, port 6379)",
    ]

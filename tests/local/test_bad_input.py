"""Bad input gets one clear line, a non-zero exit, no traceback, and starts nothing."""

from __future__ import annotations

import socket
import subprocess

import pytest
from madgroup import topology

from tests.support.local_group import Group


def assert_clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def assert_nothing_started(group: Group) -> None:
    events = group.state_dir / "events.log"
    assert not events.exists() or " starting " not in events.read_text()
    assert_nothing_listening(group)


def assert_nothing_listening(group: Group) -> None:
    for comp in topology.COMPONENTS:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", group.port(comp.name))) != 0, comp.name


@pytest.mark.parametrize(
    "args",
    [
        ("logs", "postgres"),
        ("exec", "postgres", "mad-status"),
        ("up", "postgres"),
        ("stop", "postgres"),
    ],
)
def test_unknown_component(group: Group, args: tuple[str, ...]) -> None:
    group.mg("init")
    result = group.mg(*args, check=False)
    assert_clear_failure(result, "unknown component 'postgres'", "redis, sequential_thinking")
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("env_text", "message"),
    [
        (None, ".env does not exist; create it with: madgroup init"),
        ("MAD_HEARTBEAT_S=1\n", "REDIS_PASSWORD is not set in"),
        ("REDIS_PASSWORD=\n", "REDIS_PASSWORD in"),
        ("REDIS_PASSWORD=s3cr3t-value\nthis line is broken\n", ".env line 2 is not KEY=VALUE"),
    ],
    ids=["missing", "no-password", "empty-password", "malformed-line"],
)
def test_up_with_a_broken_env(group: Group, env_text: str | None, message: str) -> None:
    if env_text is not None:
        (group.root / ".env").write_text(env_text)
    result = group.up(check=False)
    assert_clear_failure(result, message)
    assert "s3cr3t-value" not in result.stderr + result.stdout
    assert result.returncode == 2
    assert_nothing_started(group)


def test_occupied_port_names_the_component_and_the_fix(group: Group) -> None:
    group.mg("init")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", group.port("rogers")))
        holder.listen()
        result = group.up(check=False)
    assert_clear_failure(
        result,
        f"{group.port('rogers')} (rogers) already in use",
        "nothing was started",
        "--port-offset",
    )
    assert_nothing_started(group)


def test_a_component_failing_to_start_stops_the_bring_up(group: Group) -> None:
    group.mg("init")
    group.write_env("MAD_HEARTBEAT_S=often\n")  # every MAD refuses this at start
    result = group.up(check=False)
    assert_clear_failure(
        result,
        "sequential_thinking failed: exited with code 2 before it was ready",
        "not started: grace, rogers, fiedler",
        "MAD_HEARTBEAT_S is invalid",  # its last log lines are shown
    )
    started = [n for _, n, e, _ in group.events() if e == "starting"]
    assert started == ["redis", "sequential_thinking"]
    assert_nothing_listening(group)  # what had started was stopped


def test_down_volumes_without_a_terminal_asks_for_yes(group: Group) -> None:
    group.mg("init")
    data = group.state_dir / "data"
    data.mkdir(parents=True)
    result = group.mg("down", "--volumes", check=False)
    assert_clear_failure(result, "add --yes to confirm")
    assert data.exists()
    declined = group.mg("down", "--volumes", check=False, input="n\n")
    assert declined.returncode != 0 and data.exists()


def test_commands_that_need_a_running_group_say_so(group: Group) -> None:
    group.mg("init")
    assert_clear_failure(
        group.mg("exec", "grace", "mad-status", check=False), "not running", "madgroup up"
    )
    assert_clear_failure(group.mg("smoke", check=False), "not running")
    assert_clear_failure(group.mg("stop", "grace", check=False), "not running")
    assert_clear_failure(group.mg("exec", "grace", check=False), "no command given")
    health = group.mg("health", check=False)
    assert health.returncode == len(topology.MAD_NAMES)
    assert "ALERT: Service fiedler is NOT HEALTHY!" in health.stdout
    assert "nothing was running" in group.mg("down").stdout

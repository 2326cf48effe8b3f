"""The README's main command from a clean checkout: ``madgroup init && madgroup up &&
madgroup smoke && madgroup down``, then what an operator does next with the same group."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from madgroup import topology
from madgroup.local import processes

from tests.support.local_group import Group

GATES_READY_BEFORE_START = "every gate of a component was ready before it started"


def assert_started_in_order(group: Group) -> None:
    """From the supervisor's timestamps: each component started only after each of its
    gates was ready, and each MAD's log shows its first connection attempts succeeding."""
    starts: dict[str, float] = {}
    readies: dict[str, float] = {}
    for when, name, event, _ in group.events():
        if event == "starting":
            starts.setdefault(name, when)
        elif event == "ready":
            readies.setdefault(name, when)
    assert list(starts) == list(topology.COMPONENT_NAMES), starts
    for comp in topology.COMPONENTS:
        for gate in topology.gates(comp):
            assert readies[gate] <= starts[comp.name], (GATES_READY_BEFORE_START, comp.name, gate)
    for name in ("grace", "rogers", "fiedler"):
        log = group.log(name)
        assert "Successfully connected to Rogers Conversation Bus (Redis)" in log
        assert "Connection refused" not in log and "Error 111" not in log, log


def test_main_command_from_a_clean_checkout(group: Group) -> None:
    # Step 1: init creates .env (0600) with a password it never prints or replaces.
    init = group.mg("init")
    env_file = group.root / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    password = group.password()
    assert len(password) == 32 and password not in init.stdout
    assert "left unchanged" in group.mg("init").stdout
    assert group.password() == password

    up = group.up()
    assert "The MAD group is up" in up.stdout
    for name in topology.COMPONENT_NAMES:
        assert re.search(rf"^{name} +ready in", up.stdout, re.MULTILINE), (name, up.stdout)
    assert_started_in_order(group)

    smoke = group.mg("smoke", timeout=180)
    for step in range(2, 10):
        assert f"PASS  step {step} " in smoke.stdout, smoke.stdout
    assert "FAIL" not in smoke.stdout
    task_id = next(
        line.split("task ")[1].split()[0]
        for line in smoke.stdout.splitlines()
        if line.startswith("PASS  step 8 ")
    )

    # The secret is in no output and on no command line.
    everything = up.stdout + up.stderr + smoke.stdout + smoke.stderr
    assert password not in everything
    for name in topology.COMPONENT_NAMES:
        cmdline = Path(f"/proc/{group.pid(name)}/cmdline").read_bytes().decode()
        assert password not in cmdline, name
    conf = group.state_dir / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600

    # A second up is a no-op that says so.
    again = group.up()
    assert "already running" in again.stdout and "nothing to do" in again.stdout

    status = group.mg("status").stdout
    for name in topology.COMPONENT_NAMES:
        row = next(line for line in status.splitlines() if line.startswith(name + " "))
        assert str(group.pid(name)) in row and str(group.port(name)) in row and " yes " in row

    assert group.mg("health").returncode == 0

    # exec: the guide's docker-compose exec commands, with this component's environment.
    noauth = group.mg("exec", "redis", "redis-cli", "ping", check=False)
    assert "NOAUTH Authentication required." in noauth.stdout + noauth.stderr
    pong = group.mg("exec", "redis", "redis-cli", "--pass", password, "ping")
    assert pong.stdout.strip() == "PONG"
    fiedler_status = group.mg("exec", "fiedler", "mad-status").stdout.splitlines()
    assert fiedler_status[:3] == ["[FiedlerV1 Status]", "- MAD Name: fiedler", "- Status: HEALTHY"]
    assert "- Database Status: OK" in fiedler_status
    stats = json.loads(group.mg("exec", "rogers", "mad-cli", "rogers_get_stats").stdout)
    assert stats["total_messages"] > 0

    logs = group.mg("logs", "fiedler", "--tail", "50").stdout
    assert f"fiedler | INFO:fiedler:Task {task_id} status changed to COMPLETED" in logs

    running = {name: (c["pid"], c.get("ticks")) for name, c in group.state()["components"].items()}
    assert set(running) == set(topology.COMPONENT_NAMES) and all(
        processes.alive(pid, ticks) for pid, ticks in running.values()
    ), running
    down = group.mg("down")
    assert down.stdout.split().index("fiedler") < down.stdout.split().index("redis")
    for name, (pid, ticks) in running.items():
        assert not processes.alive(pid, ticks), (name, pid)

    # down keeps data: after up, Fiedler still knows the task.
    group.up()
    status_of_task = json.loads(
        group.mg(
            "exec",
            "fiedler",
            "mad-cli",
            "fiedler_get_task_status",
            json.dumps({"task_id": task_id}),
        ).stdout
    )
    assert status_of_task["status"] == "COMPLETED"
    assert status_of_task["result_payload"] == "OK"

    # down --volumes (confirmed) deletes it.
    group.mg("down", "--volumes", "--yes")
    assert not (group.state_dir / "data").exists()
    group.up()
    gone = group.mg(
        "exec",
        "fiedler",
        "mad-cli",
        "fiedler_get_task_status",
        json.dumps({"task_id": task_id}),
        check=False,
    )
    assert gone.returncode != 0 and task_id in gone.stderr
    group.mg("down")

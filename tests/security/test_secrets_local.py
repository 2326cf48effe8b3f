"""No generated secret shows anywhere an operator or another local user can look, on the
local runner: process command lines, every log, the supervisor's events and state, each
MAD's /status and /metrics, ``madgroup status``, and the files it renders (Redis's config,
and its ACL file, which holds hashes only). And each MAD's environment holds no secret but
its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from madgroup import topology
from madgroup.local import envfile

from tests.support.local_group import Group
from tests.support.local_group import group as group  # the fixture
from tests.support.secrets import exposures


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {key: value for key, _, value in pairs}


def test_no_secret_is_visible_outside_the_process_that_needs_it(group: Group) -> None:
    token = "grace-token-" + envfile.new_password()
    group.mg("init")
    group.write_env(f"GRACE_API_TOKENS={token}\n")
    secrets = {
        key: value
        for key, value in envfile.load(group.root / ".env").items()
        if key in ("REDIS_PASSWORD", "GRACE_API_TOKENS", "MAD_INTERNAL_TOKEN")
        or key.endswith("_BUS_PASSWORD")
    }
    assert len(secrets) == 3 + len(topology.bus_users())
    up = group.up()
    smoke = group.mg("smoke", timeout=180)
    assert "FAIL" not in smoke.stdout, smoke.stdout
    status = group.mg("status")

    places: dict[str, str] = {
        "madgroup up": up.stdout + up.stderr,
        "madgroup smoke": smoke.stdout + smoke.stderr,
        "madgroup status": status.stdout + status.stderr,
        "ps": subprocess.run(
            ["ps", "-eo", "pid,args", "ww"], capture_output=True, text=True, check=True
        ).stdout,
    }
    for path in group.state_dir.rglob("*"):
        if path.is_file() and not path.is_relative_to(group.state_dir / "data"):
            places[str(path.relative_to(group.root))] = path.read_text(errors="replace")
    headers = {"Authorization": f"Bearer {token}"}
    for name in topology.MAD_NAMES:
        base = f"http://127.0.0.1:{group.port(name)}"
        for page in ("/status", "/metrics"):
            places[f"{name} {page}"] = httpx.get(base + page, headers=headers, timeout=10).text
    assert "users.acl" in " ".join(places) and "logs/fiedler.log" in " ".join(places)
    assert exposures(places, secrets) == []

    # Each MAD holds its own secrets only (Sequential Thinking, off the bus, none).
    state = group.state()
    for name in topology.MAD_NAMES:
        env = _environment(int(state["components"][name]["pid"]))
        held = {key for key, value in secrets.items() if value in env.values()}
        own = {topology.bus_password_variable(name)} if name in topology.bus_users() else set()
        if name == "grace":
            own.add("GRACE_API_TOKENS")
        if topology.needs_internal_token(topology.component(name)):
            own.add("MAD_INTERNAL_TOKEN")
        assert held == own, name

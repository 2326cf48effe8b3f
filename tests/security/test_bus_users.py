"""Each MAD's bus user, on a real redis-server loaded with the group's ACL file: the MADs do
all their work as their own users, and a user can do nothing else — no administration,
no other MAD's keys, no channel it does not own — and cannot publish as another MAD."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from madgroup import topology

from mads.core import access, channels, registry
from mads.core.bus import Bus
from mads.core.envelope import make_envelope
from tests.support.grace import call, grace_session, new_token, ok
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for

USERS = topology.bus_users()
ADMIN = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("KEYS", "*"),
    ("ACL", "LIST"),
    ("SHUTDOWN", "NOSAVE"),
    ("MODULE", "LIST"),
    ("SCRIPT", "FLUSH"),
    ("MONITOR",),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("BGSAVE",),
]


def test_the_group_has_a_user_per_mad_on_the_bus() -> None:
    assert USERS == ("grace", "rogers", "fiedler")
    assert "sequential_thinking" not in access.group_permissions(registry.contracts())


@pytest.mark.parametrize("user", USERS)
def test_no_mad_may_run_an_administrative_command(redis_server: RedisServer, user: str) -> None:
    client = redis_server.user_client(user)
    assert client.ping()
    for command in ADMIN:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    # DEBUG is off for everyone; ACL DRYRUN shows this user would be refused it anyway.
    for command in [*ADMIN, ("DEBUG", "SLEEP", "0")]:
        verdict = redis_server.client().execute_command("ACL", "DRYRUN", user, *command)
        assert b"no permissions" in verdict, (command, verdict)
    assert redis_server.client().ping()  # still up, still configured
    assert redis_server.client().config_get("appendonly") == {"appendonly": "yes"}


def _foreign_keys(user: str) -> list[str]:
    """Keys that belong to other MADs and that ``user`` has no business writing."""
    others = [u for u in USERS if u != user]
    keys = [access.registry_key(other) for other in others]
    if user != "grace":
        keys.append("mad.grace.clients")
    keys += [f"mad.{other}.replies.some-request" for other in others]
    return keys


@pytest.mark.parametrize("user", USERS)
def test_no_mad_may_write_another_mads_keys(redis_server: RedisServer, user: str) -> None:
    client = redis_server.user_client(user)
    for key in _foreign_keys(user):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set(key, "forged")
    if user != "grace":  # only Grace reads the outside clients' state
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("mad.grace.clients")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.get("some.other.application.key")
    assert redis_server.client().dbsize() == 0


def _foreign_channels(user: str) -> list[str]:
    others = [u for u in USERS if u != user]
    found = [channels.heartbeat(other) for other in others]
    found += ["mad.system.announce", "mad.other.anything"]
    if user != "fiedler":
        found += ["mad.fiedler.task.status", "mad.stream.some-task"]
    if user != "grace":
        found += ["mad.topic.news", "mad.direct.someone"]
    if user != "grace":
        # a relay reply to Grace as if from another owner (Grace itself may publish in its
        # own mad.direct.grace.* space; a reply there is still only taken from its owner)
        found += [channels.reply("grace", "x", other) for other in others if other != "grace"]
    return found


@pytest.mark.parametrize("user", USERS)
def test_no_mad_may_publish_on_a_channel_it_does_not_own(
    redis_server: RedisServer, user: str
) -> None:
    client = redis_server.user_client(user)
    assert client.publish(channels.heartbeat(user), "{}") == 0  # its own: allowed
    for channel in _foreign_channels(user):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.publish(channel, "{}")


async def test_a_message_naming_another_mad_as_sender_is_dropped_and_counted(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the channel's rules cannot stop it (the administrator, or a user allowed on a
    shared channel), the receiver does: a heartbeat claiming to be Fiedler's on Grace's
    heartbeat channel, a task status from 'rogers', are dropped; the real one goes through."""
    receiver = Bus(
        host="127.0.0.1",
        port=redis_server.port,
        password=redis_server.bus_passwords["rogers"],
        username="rogers",
        sender_id="rogers",
        senders=access.SenderPolicy(registry.contracts()),
    )
    await receiver.start()
    assert await receiver.wait_connected(10)
    heard: list[tuple[str, str]] = []

    async def listen() -> None:
        async for message in receiver.messages(patterns=[channels.ALL]):
            if message.envelope is not None:
                heard.append((message.channel, message.envelope.sender_id))

    listener = asyncio.create_task(listen())
    admin = redis_server.client()
    try:

        def send(channel: str, sender: str) -> None:
            envelope = make_envelope(channel=channel, sender_id=sender, payload={})
            admin.publish(channel, envelope.model_dump_json())

        async def subscribed() -> bool:
            send(channels.heartbeat("grace"), "grace")
            return bool(heard)

        await async_wait_for(subscribed, interval=0.2, what="the receiver subscribed")
        for _ in range(3):
            send(channels.heartbeat("grace"), "fiedler")
        send("mad.fiedler.task.status", "rogers")
        send("mad.fiedler.task.status", "fiedler")
        send("mad.topic.end", "tester")
        await async_wait_for(lambda: ("mad.topic.end", "tester") in heard, what="the last one")
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await receiver.close()
    assert ("mad.fiedler.task.status", "fiedler") in heard
    assert not [h for h in heard if h[1] == "fiedler" and h[0] != "mad.fiedler.task.status"]
    assert ("mad.fiedler.task.status", "rogers") not in heard
    assert receiver.sender_mismatches == 4
    warnings = [r.getMessage() for r in caplog.records if "forged sender" in r.getMessage()]
    assert len(warnings) == 2  # once per sender and channel family, not per message


async def test_the_group_does_all_its_work_as_its_own_users(mad_group: ProcessGroup) -> None:
    """The guide's step 7 and 8 through Grace, every MAD connected as its own user, and
    Redis denied nothing along the way (its ACL LOG stays empty)."""
    token = new_token()
    thinking = mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
    mad_group.start("rogers")
    fiedler = mad_group.start("fiedler")
    assert "REDIS_USERNAME" not in thinking.env and "REDIS_PASSWORD" not in thinking.env
    assert fiedler.env["REDIS_USERNAME"] == "fiedler"

    async def offered() -> bool:
        async with grace_session(grace.url, token) as s:
            names = {tool.name for tool in (await s.list_tools()).tools}
        return {"fiedler_converse", "rogers_get_connections"} <= names

    await async_wait_for(offered, timeout=60, what="Grace to offer the group's tools")
    async with grace_session(grace.url, token) as s:
        created = await ok(
            s,
            "fiedler_converse",
            {"prompt": "System check, please respond with OK.", "requester_id": "acl"},
        )

        async def completed() -> dict[str, object] | None:
            done, status = await call(s, "fiedler_get_task_status", {"task_id": created["task_id"]})
            assert done, status
            return status if status["status"] == "COMPLETED" else None

        assert (await async_wait_for(completed, timeout=60))["result_payload"] == "OK"

        async def all_healthy() -> bool:
            connections = await ok(s, "rogers_get_connections", {})
            healthy = {c["mad_id"] for c in connections["connections"] if c["status"] == "HEALTHY"}
            return healthy >= set(USERS)

        await async_wait_for(all_healthy, timeout=30, what="every MAD HEALTHY in Rogers")
        client_id = "acl-test-client"
        await ok(s, "grace_subscribe", {"client_id": client_id, "topics": ["mad.topic.*"]})
        await ok(s, "grace_send_message", {"channel": "mad.topic.news", "payload": {"n": 1}})

        async def delivered() -> bool:
            polled = await ok(s, "grace_poll_messages", {"client_id": client_id})
            return bool(polled["messages"])

        await async_wait_for(delivered, timeout=30, what="the fan-out to deliver")
    admin = mad_group.redis.client()
    users = {
        entry["user"] for entry in admin.client_list() if entry.get("user") not in (None, "default")
    }
    assert users == set(USERS)
    assert admin.acl_log() == []


def test_mad_bus_users_makes_credentials_once_and_the_acl_file_every_run(
    tmp_path: Path,
) -> None:
    """What the compose one-shot runs: passwords and the internal credential are made once
    and kept; the ACL file follows the administrator's password; nothing secret printed."""
    out = tmp_path / "credentials"
    tool = str(Path(sys.executable).parent / "mad-bus-users")

    def run(admin: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"}
        if admin is not None:
            env["REDIS_PASSWORD"] = admin
        return subprocess.run([tool, str(out)], env=env, capture_output=True, text=True)

    missing = run(None)
    assert missing.returncode == 2 and "REDIS_PASSWORD is not set" in missing.stderr
    first = run("admin-one")
    assert first.returncode == 0, first.stderr
    made = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    passwords = {p.parent.name: v for p, v in made.items() if p.name == "bus_password"}
    assert set(passwords) == set(USERS)
    tokens = {v for p, v in made.items() if p.name == "internal_token"}
    assert len(tokens) == 1
    assert {p.parent.name for p in made if p.name == "internal_token"} == {
        "sequential_thinking",
        "rogers",
        "fiedler",
    }
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o444 if path.name == "users.acl" else 0o400), path
    assert not any(value in first.stdout + first.stderr for value in made.values())
    acl = (out / "redis" / "users.acl").read_text()
    assert access.password_sha256("admin-one") in acl
    assert all(access.password_sha256(p) in acl for p in passwords.values())

    assert made[out / "redis" / "admin_password"] == "admin-one"  # Redis's healthcheck's

    assert run("admin-two").returncode == 0
    again = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    follows_admin = ("users.acl", "admin_password")
    assert {p: v for p, v in again.items() if p.name not in follows_admin} == {
        p: v for p, v in made.items() if p.name not in follows_admin
    }
    assert access.password_sha256("admin-two") in again[out / "redis" / "users.acl"]
    assert again[out / "redis" / "admin_password"] == "admin-two"

    # From the guide's .env, mounted read-only (compose): its REDIS_PASSWORD line, the
    # value after the first "="; absent or empty, nothing is written and the exit is 2.
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nLOG_LEVEL=INFO\nREDIS_PASSWORD=abc=def+/==\n")
    plain_env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"}
    from_file = subprocess.run(
        [tool, str(out), "--env-file", str(env_file)], env=plain_env, capture_output=True, text=True
    )
    assert from_file.returncode == 0, from_file.stderr
    assert (out / "redis" / "admin_password").read_text() == "abc=def+/=="
    assert "abc=def" not in from_file.stdout + from_file.stderr
    before = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    for content in ("LOG_LEVEL=INFO\n", "REDIS_PASSWORD=\n"):
        env_file.write_text(content)
        refused = subprocess.run(
            [tool, str(out), "--env-file", str(env_file)],
            env=plain_env,
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and f"REDIS_PASSWORD is not set in {env_file}" in (
            refused.stderr
        )
        assert "Traceback" not in refused.stderr
    assert {p: p.read_text() for p in out.rglob("*") if p.is_file()} == before


def test_a_secret_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mads.core.settings import BusSettings, ConfigurationError, load_settings

    secret = tmp_path / "bus_password"
    secret.write_text("from-the-file-0123456789\n")
    monkeypatch.setenv("MAD_NAME", "fiedler")
    monkeypatch.setenv("REDIS_PASSWORD", "")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    settings = load_settings(BusSettings)
    assert settings.redis_password.get_secret_value() == "from-the-file-0123456789"
    monkeypatch.setenv("REDIS_PASSWORD", "from-the-environment")
    assert load_settings(BusSettings).redis_password.get_secret_value() == "from-the-environment"
    monkeypatch.setenv("REDIS_PASSWORD", "")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"REDIS_PASSWORD_FILE .* cannot be read"):
        load_settings(BusSettings)

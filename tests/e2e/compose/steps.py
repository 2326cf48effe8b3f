"""The deployment guide's steps as functions, shared by the compose end-to-end modules
(the committed file, and the same guide with TLS on)."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import yaml

from tests.e2e.compose.harness import CommandFailed, GuideHost, order_violations
from tests.support.evidence import record

MADS = ("sequential_thinking", "grace", "rogers", "fiedler")
IMAGES = {
    "sequential_thinking": "ghcr.io/madgroup/sequential-thinking:0.1.0",
    "grace": "ghcr.io/madgroup/grace:0.1.0",
    "rogers": "ghcr.io/madgroup/rogers:0.1.0",
    "fiedler": "ghcr.io/madgroup/fiedler:0.1.0",
}
OPERATOR_IMAGE = "ghcr.io/madgroup/operator:0.1.0"
BUS_LINE = "Successfully connected to Rogers Conversation Bus (Redis)"
THINKING_LINE = "Successfully connected to Sequential Thinking MCP server"
PROMPT = "System check, please respond with OK."
STATUS_BLOCKS = {
    "grace": [
        "[GraceV0 Status]",
        "- MAD Name: grace",
        "- Status: HEALTHY",
        "- Conversation Bus Connected: True",
    ],
    "rogers": [
        "[RogersV1 Status]",
        "- MAD Name: rogers",
        "- Status: HEALTHY",
        "- Conversation Bus Connected: True",
        "- Sequential Thinking Connected: True",
    ],
    "fiedler": [
        "[FiedlerV1 Status]",
        "- MAD Name: fiedler",
        "- Status: HEALTHY",
        "- Conversation Bus Connected: True",
        "- Sequential Thinking Connected: True",
        "- Database Status: OK",
    ],
}


def note(host: GuideHost, line: str) -> None:
    """Keep ``line`` in the run's summary, under the pass it was seen in."""
    label = host.compose.label if host.compose is not None else "compose"
    record("compose e2e", f"{label}: {line}")


def depends_on(host: GuideHost) -> dict[str, list[str]]:
    doc = yaml.safe_load((host.workdir / "docker-compose.yml").read_text())
    return {name: list(svc.get("depends_on", {})) for name, svc in doc["services"].items()}


def healthy(host: GuideHost, service: str, ps_output: str) -> bool:
    """Whether ``ps`` listed ``service``'s container running and healthy, as the pass's
    compose prints it (:meth:`Compose.healthy_row`)."""
    assert host.compose is not None
    return bool(host.compose.healthy_row(host.project, service).search(ps_output))


def wait_healthy(host: GuideHost, service: str, timeout: float = 180) -> str:
    def attempt() -> str | None:
        out = host.sh(f"docker-compose ps {service}").output
        return out if healthy(host, service, out) else None

    return host.until(attempt, timeout=timeout, what=f"{service} to be running (healthy)")


def wait_all_healthy(host: GuideHost, compose: str = "docker-compose") -> str:
    """Until one ``ps`` lists Redis and every MAD running and healthy; returns it."""

    def attempt() -> str | None:
        out = host.sh(f"{compose} ps").output
        return out if all(healthy(host, s, out) for s in ("redis", *MADS)) else None

    return host.until(attempt, timeout=180, what=f"{compose} ps to list every service healthy")


def started_at(host: GuideHost, service: str) -> str:
    """When ``service``'s container was last started (a restart or a recreate changes it)."""
    return host.sh(
        f"docker inspect -f '{{{{.State.StartedAt}}}}' $(docker-compose ps -q {service})"
    ).output.strip()


def engine_major() -> int:
    """The Docker Engine's major version (20 for Debian 12's 20.10)."""
    version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return int(version.split(".")[0])


def wait_log(host: GuideHost, service: str, *needles: str, timeout: float = 60) -> str:
    def attempt() -> str | None:
        out = host.sh(f"docker-compose logs {service}").output
        return out if all(n in out for n in needles) else None

    return host.until(attempt, timeout=timeout, what=f"{service} logs to show {needles}")


def status_block(host: GuideHost, service: str, compose: str = "docker-compose") -> list[str]:
    out = host.sh(f"{compose} exec {service} mad-status", tty=True).output
    return [line.rstrip() for line in out.strip().splitlines()]


def assert_status_block(host: GuideHost, service: str, compose: str = "docker-compose") -> None:
    """The guide's expected output, line for line, at the top of ``mad-status`` (run with
    ``compose exec``: the guide's ``docker-compose`` unless told)."""
    expected = STATUS_BLOCKS[service]
    lines = host.until(
        lambda: (b := status_block(host, service, compose))[: len(expected)] == expected and b,
        timeout=60,
        what=f"{service} mad-status to print the guide's block",
    )
    assert lines[: len(expected)] == expected


def connections(host: GuideHost) -> dict[str, str]:
    doc = host.json("docker-compose exec rogers mad-cli rogers_get_connections")
    assert doc["status"] == "success"
    return {c["mad_id"]: c["status"] for c in doc["connections"]}


def assert_step7(host: GuideHost) -> None:
    seen = host.until(
        lambda: (
            (c := connections(host)).get("grace") == "HEALTHY"
            and c.get("fiedler") == "HEALTHY"
            and c
        ),
        timeout=90,
        what="rogers_get_connections to list grace and fiedler HEALTHY",
    )
    print(f"step 7: {seen}")


def converse(host: GuideHost) -> str:
    created = host.json(
        "docker-compose exec fiedler mad-cli fiedler_converse "
        '\'{"prompt": "System check, please respond with OK.", "requester_id": "ops-team"}\''
    )
    assert set(created) == {"status", "task_id", "stream_topic"}
    assert created["status"] == "pending"
    assert created["stream_topic"] == f"mad.stream.{created['task_id']}"
    return str(created["task_id"])


def task_status(host: GuideHost, task_id: str) -> dict[str, Any]:
    return dict(
        host.json(
            f"docker-compose exec fiedler mad-cli fiedler_get_task_status "
            f'\'{{"task_id": "{task_id}"}}\''
        )
    )


def assert_completed(host: GuideHost, task_id: str) -> None:
    final = host.until(
        lambda: (s := task_status(host, task_id))["status"] not in ("PENDING", "RUNNING") and s,
        timeout=60,
        what=f"task {task_id} to finish",
    )
    guide = {
        "task_id": task_id,
        "status": "COMPLETED",
        "prompt": PROMPT,
        "result_payload": "OK",
        "error_details": None,
    }
    assert {key: final.get(key) for key in guide} == guide
    # The guide's fields, plus the two timestamps docs/fiedler.md adds.
    assert set(final) - set(guide) == {"created_at", "updated_at"}


def assert_start_order(host: GuideHost) -> int:
    assert host.events is not None
    problems, checked = order_violations(host.events.events(), depends_on(host))
    assert checked > 0, "docker events recorded no container start"
    assert not problems, "start order broken: " + "; ".join(problems)
    return checked


REDIS_ADMIN = (
    "docker-compose exec -T redis sh -c "
    "'REDISCLI_AUTH=\"$(cat /run/madgroup/admin_password)\" redis-cli {}'"
)
NO_TOKEN_CALL = (
    "import urllib.request,urllib.error\n"
    "r=urllib.request.Request('http://fiedler:8003/mcp',data=b'{}',method='POST',"
    "headers={'Content-Type':'application/json','Accept':'application/json, text/event-stream'})\n"
    "try:\n urllib.request.urlopen(r,timeout=5);print(200)\n"
    "except urllib.error.HTTPError as e:\n print(e.code)"
)


def raw(host: GuideHost, argv: list[str]) -> str:
    """A command's output as it is (not masked), for a scan that must see a secret."""
    done = subprocess.run(
        argv,
        cwd=host.workdir,
        env=host.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def configure_env(host: GuideHost) -> str:
    """The guide's step 1 recipe, as written: ``.env`` from the example and a random
    ``REDIS_PASSWORD``; returns the password (which the harness masks from then on)."""
    host.sh(
        "cp .env.example .env\n"
        "REDIS_PASS=$(openssl rand -base64 24)\n"
        'echo "REDIS_PASSWORD=${REDIS_PASS}" >> .env'
    )
    lines = (host.workdir / ".env").read_text().splitlines()
    passwords = [line for line in lines if line.startswith("REDIS_PASSWORD=")]
    assert len(passwords) == 1, "the recipe wrote one REDIS_PASSWORD line"
    password = passwords[0].split("=", 1)[1]
    host.secrets.append(password)
    return password


BUS_USERS = ("grace", "rogers", "fiedler")
"""The MADs that connect to Redis, each as its own ACL user (Sequential Thinking does not)."""


def bus_connects(host: GuideHost, service: str) -> int:
    """How many times ``service`` has logged the guide's bus line: once at its start and
    once each time its bus watcher finds Redis again (a new Redis run included)."""
    return host.sh(f"docker-compose logs --no-color {service}").output.count(BUS_LINE)


def bus_clients(host: GuideHost) -> dict[str, list[int]]:
    """Redis's connected clients by ACL user: each connection's age in seconds."""
    listed = host.sh(REDIS_ADMIN.format("client list") + " < /dev/null").output
    ages: dict[str, list[int]] = {}
    for line in listed.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "user" in fields and fields.get("age", "").isdigit():
            ages.setdefault(fields["user"], []).append(int(fields["age"]))
    return ages


def redis_uptime(host: GuideHost) -> int:
    info = host.sh(REDIS_ADMIN.format("info server") + " < /dev/null").output
    found = re.search(r"^uptime_in_seconds:(\d+)", info, re.M)
    assert found, info
    return int(found.group(1))


def wait_bus_reconnected(
    host: GuideHost, connects_before: dict[str, int], since: float, timeout: float = 90
) -> dict[str, list[int]]:
    """Wait until every MAD in ``connects_before`` has really connected to the Redis that
    started after ``since`` (a ``time.monotonic()`` taken before the restart): a new bus
    line in its log, and Redis lists a connection of its ACL user, none of them older
    than the restart. Returns the connections' ages by user."""

    def attempt() -> dict[str, list[int]]:
        slack = 1  # CLIENT LIST counts whole seconds
        elapsed = time.monotonic() - since
        clients = bus_clients(host)
        waiting = []
        for service, before in connects_before.items():
            if bus_connects(host, service) <= before:
                waiting.append(f"{service} has logged no new {BUS_LINE!r}")
            ages = clients.get(service, [])
            if not ages:
                waiting.append(f"Redis lists no connection of the bus user {service}")
            elif max(ages) > elapsed + slack:
                waiting.append(f"{service} has a connection {max(ages)} s old, from before")
        if waiting:
            raise CommandFailed("; ".join(waiting))
        return {service: clients[service] for service in connects_before}

    return host.until(
        attempt, timeout=timeout, what="every MAD to reconnect to the restarted Redis"
    )

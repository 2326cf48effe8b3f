"""The deployment guide, Parts 1-5, against the committed ``docker-compose.yml`` on a real
Docker engine, once under Docker Compose v2 and once under docker-compose 1.x.

Each test is one step of the guide, run with the guide's own commands (its ``.env``
recipe, ``docker-compose up -d --build <service>``, ``exec``, ``logs``, ``ps``,
``restart``, ``down``), in the guide's order; ``docker-compose`` is the pass's compose. The
README's bring-up is typed as the README gives it, ``docker compose up -d``, in the v2
pass. Where the guide says "wait N seconds" the test waits for the condition it names,
with a generous deadline.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from madgroup import topology
from packaging.markers import Marker

from tests.e2e.compose.flavours import plugin_only_path
from tests.e2e.compose.harness import GuideHost, Result
from tests.e2e.compose.steps import (
    BUS_LINE,
    BUS_USERS,
    IMAGES,
    MADS,
    NO_TOKEN_CALL,
    OPERATOR_IMAGE,
    REDIS_ADMIN,
    THINKING_LINE,
    assert_completed,
    assert_start_order,
    assert_status_block,
    assert_step7,
    bus_connects,
    configure_env,
    converse,
    engine_major,
    healthy,
    note,
    raw,
    redis_uptime,
    started_at,
    task_status,
    wait_all_healthy,
    wait_bus_reconnected,
    wait_healthy,
    wait_log,
)
from tests.support import evidence
from tests.support.evidence import record
from tests.support.secrets import exposures

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[3]
# --- Part 1 ---------------------------------------------------------------------------


def test_part1_prerequisites(host: GuideHost) -> None:
    assert host.compose is not None
    for command in ("git --version", "docker --version", "docker-compose --version"):
        print(host.sh(command).output.strip())
    print(f"project directory: {host.workdir} (compose project {host.project})")
    version = host.sh("docker-compose version --short").output.strip().lstrip("v")
    major = int(version.split(".")[0])
    if host.compose.flavour == "v2":
        # The guide's table asks for docker-compose 2.0+; the README types docker compose.
        assert major == 2, version
        plugin = host.sh("docker compose version --short").output.strip().lstrip("v")
        assert plugin == version, (plugin, version)
    else:
        assert major == 1, version


# --- Part 2 ---------------------------------------------------------------------------


def test_step1_configure_environment(host: GuideHost) -> None:
    password = configure_env(host)
    assert len(password) == 32
    assert "REDIS_PASSWORD=***" in host.sh("cat .env").output


def test_step2_redis(host: GuideHost) -> None:
    host.sh("docker-compose up -d redis")
    wait_log(host, "redis", "Ready to accept connections")
    refused = host.sh("docker-compose exec redis redis-cli ping", tty=True, check=False)
    assert refused.output.strip() == "(error) NOAUTH Authentication required.", str(refused)
    answered = host.sh(
        "docker-compose exec redis redis-cli --pass $(grep REDIS_PASSWORD .env | cut -d '=' -f2) "
        "ping",
        tty=True,
    )
    assert answered.output.strip().splitlines()[-1] == "PONG", str(answered)


def test_step3_sequential_thinking(host: GuideHost) -> None:
    """The guide's verification, ``docker-compose ps sequential_thinking``, in the columns
    the pass's compose prints (docs/packaging.md): v2's are the guide's sample's plus IMAGE
    and CREATED, and its STATUS says ``Up <how long> (healthy)``; v1's are Name, Command,
    State (``Up (healthy)``) and Ports."""
    assert host.compose is not None
    host.sh("docker-compose up -d --build sequential_thinking", timeout=900)
    wait_log(host, "sequential_thinking", "MCP Server started on port 8000")
    ps = wait_healthy(host, "sequential_thinking")
    print(ps)
    header = ps.splitlines()[0].split()
    row = next(ln for ln in ps.splitlines() if healthy(host, "sequential_thinking", ln))
    if host.compose.flavour == "v2":
        assert header == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
        # Under the guide's own project name (its directory's), the container is the
        # guide's sample's mad-group-v1-sequential_thinking-1.
        config = host.sh("env -u COMPOSE_PROJECT_NAME docker-compose config --format json")
        assert json.loads(config.output)["name"] == "mad-group-v1"
    else:
        assert header == ["Name", "Command", "State", "Ports"]
    note(host, f"step 3 ps: {' '.join(row.split())}")


def test_step4_grace(host: GuideHost) -> None:
    host.sh("docker-compose up -d --build grace", timeout=900)
    wait_log(host, "grace", BUS_LINE)
    assert_status_block(host, "grace")


def test_step5_rogers(host: GuideHost) -> None:
    host.sh("docker-compose up -d --build rogers", timeout=900)
    wait_log(host, "rogers", BUS_LINE, THINKING_LINE)
    assert_status_block(host, "rogers")


def test_step6_fiedler(host: GuideHost) -> None:
    host.sh("docker-compose up -d --build fiedler", timeout=900)
    wait_log(
        host,
        "fiedler",
        BUS_LINE,
        THINKING_LINE,
        "Initialized SQLite state database at /data/fiedler_state.db...",
    )
    assert_status_block(host, "fiedler")
    assert_start_order(host)


# --- Part 3 and Part 4 ------------------------------------------------------------------


def test_step7_integration(host: GuideHost) -> None:
    assert_step7(host)


def test_step8_smoke(host: GuideHost) -> None:
    task_id = converse(host)
    assert_completed(host, task_id)
    host.task_id = task_id


def test_step9_logs(host: GuideHost) -> None:
    task_id = host.task_id
    fiedler = host.sh("docker-compose logs --tail=20 fiedler").output
    for line in (
        f"INFO:fiedler:Received new task {task_id}",
        f"INFO:fiedler:Task {task_id} status changed to RUNNING",
        f"INFO:fiedler:Task {task_id} status changed to COMPLETED",
    ):
        assert line in fiedler, f"{line!r} not in the last 20 lines of fiedler:\n{fiedler}"
    metrics = (
        "INFO:rogers:[Metrics] Received message from sender: fiedler on channel: "
        "mad.fiedler.task.status"
    )
    host.until(
        lambda: metrics in host.sh("docker-compose logs --tail=20 rogers").output,
        timeout=30,
        what="the [Metrics] line in the last 20 lines of rogers' log",
    )


# --- Part 5: monitoring and runbooks -------------------------------------------------


def total_messages(host: GuideHost) -> int:
    stats = host.json("docker-compose exec rogers mad-cli rogers_get_stats")
    return int(stats["total_messages"])


def test_5_2_1_routine_health_checks(host: GuideHost) -> None:
    ps = host.sh("docker-compose ps").output
    print(ps)
    for service in ("redis", *MADS):
        assert healthy(host, service, ps), ps
        assert healthy(host, service, host.sh(f"docker-compose ps {service}").output)
    for service in ("fiedler", "rogers", "grace"):
        assert (
            "Status: HEALTHY"
            in host.sh(f"docker-compose exec {service} mad-status", tty=True).output
        )
    first = total_messages(host)
    later = host.until(
        lambda: (n := total_messages(host)) > first and n,
        timeout=60,
        what=f"total_messages to rise above {first}",
    )
    note(host, f"5.2.1 bus activity: total_messages {first} -> {later}")


HEALTH_SCRIPT = ROOT / "scripts" / "mad_health_check.sh"


def assert_all_healthy(run: Result) -> None:
    assert run.code == 0, str(run)
    for service in ("grace", "rogers", "fiedler"):
        assert f"Service {service} is HEALTHY." in run.output, str(run)


def test_5_2_2_health_script(host: GuideHost, tmp_path: Path) -> None:
    """scripts/mad_health_check.sh: healthy without a terminal (cron) and at one (under
    ``script``, a real controlling terminal, where ``timeout`` runs the check in the
    background); with v2 also on a host where Compose came only as the Docker CLI's plugin
    (no ``docker-compose`` on PATH: it runs ``docker compose``); one stopped MAD alerts."""
    assert host.compose is not None
    script = HEALTH_SCRIPT
    env = f"MAD_PROJECT_DIR={host.workdir}"
    healthy = host.sh(f"{env} {script}", check=False)
    assert_all_healthy(healthy)
    assert_all_healthy(host.sh(f"script -qec {shlex.quote(f'{env} {script}')} /dev/null"))
    if host.compose.flavour == "v2":
        plugin_only = plugin_only_path(tmp_path)
        assert host.sh(f"PATH={plugin_only} command -v docker-compose", check=False).code != 0
        assert_all_healthy(host.sh(f"PATH={plugin_only} {env} {script}", check=False))

    host.sh("docker-compose stop grace")
    try:
        degraded = host.sh(f"{env} {script}", check=False)
        assert degraded.code == 1, str(degraded)
        assert "ALERT: Service grace is NOT HEALTHY!" in degraded.output
        assert "Alerts would be sent for failed services:  grace" in degraded.output
        assert "Service rogers is HEALTHY." in degraded.output
    finally:
        host.sh("docker-compose up -d grace", timeout=300)
    wait_healthy(host, "grace")
    note(
        host,
        f"5.2.2 scripts/mad_health_check.sh: exit {healthy.code} healthy, exit "
        f"{degraded.code} with grace stopped (ALERT naming grace)",
    )


def test_5_2_2_literal_script_under_cron(host: GuideHost) -> None:
    """Why scripts/mad_health_check.sh adds ``-T``: under cron (no terminal) the guide's
    literal ``docker-compose exec`` fails with compose v1, so a healthy group alerts;
    compose v2 allocates no TTY when its output is not a terminal, and the line works."""
    assert host.compose is not None
    literal = host.sh(
        'timeout 10s docker-compose exec "grace" mad-status | grep -q "Status: HEALTHY"',
        check=False,
    )
    cron_like = host.sh("docker-compose exec grace mad-status", check=False)
    if host.compose.flavour == "v1":
        assert literal.code != 0
        assert "the input device is not a TTY" in cron_like.output, str(cron_like)
    else:
        assert literal.code == 0, str(literal)
        assert cron_like.code == 0 and "- Status: HEALTHY" in cron_like.output, str(cron_like)


START_INTERVAL = "COMPOSE_FILE=docker-compose.yml:docker-compose.start-interval.yml"
V1_REFUSES = "services.redis.healthcheck value 'start_interval' does not match any of the regexes"
OLD_ENGINE_REFUSED = (
    "can't set healthcheck.start_interval as feature require Docker Engine v25 or later"
)


def test_start_interval_override(host: GuideHost) -> None:
    """``docker-compose.start-interval.yml`` enabled as docs/packaging.md says (its
    ``COMPOSE_FILE`` line in ``.env``), then the guide's ``docker-compose up -d``: compose
    v1 refuses the key and compose v2 an engine before 25, each saying so and leaving the
    running group as it was; compose v2 on Engine 25+ recreates the group with it."""
    assert host.compose is not None
    services = ("redis", *MADS)
    before = {service: started_at(host, service) for service in services}
    env_file = host.workdir / ".env"
    committed = env_file.read_text()
    env_file.write_text(committed + START_INTERVAL + "\n")
    try:
        done = host.sh("docker-compose up -d", check=False, timeout=600)
        if host.compose.flavour == "v2" and engine_major() >= 25:
            assert done.code == 0, str(done)
            for service in services:
                wait_healthy(host, service)
                check = host.sh(
                    "docker inspect -f '{{json .Config.Healthcheck}}' "
                    f"$(docker-compose ps -q {service})"
                )
                assert json.loads(check.output)["StartInterval"] == 250_000_000, check.output
    finally:
        env_file.write_text(committed)
    if host.compose.flavour == "v2" and engine_major() >= 25:
        outcome = "accepted: checks every 250 ms while a container starts"
    else:
        expected = V1_REFUSES if host.compose.flavour == "v1" else OLD_ENGINE_REFUSED
        assert done.code != 0 and expected in done.output, str(done)
        assert {service: started_at(host, service) for service in services} == before
        outcome = f"refused ({expected}), nothing recreated"
    host.sh("docker-compose up -d", timeout=600)
    wait_all_healthy(host)
    note(host, f"Docker Engine {engine_major()}: start-interval override {outcome}")


def test_runbook1_restart_fiedler(host: GuideHost) -> None:
    host.sh("docker-compose restart fiedler", timeout=300)
    wait_healthy(host, "fiedler")
    assert_status_block(host, "fiedler")
    assert_step7(host)


def test_restart_redis_everyone_reconnects(host: GuideHost) -> None:
    """Each MAD finds the new Redis by itself: checked on Redis's side and in each MAD's
    log before its status block, which right after the restart could still show the
    state from before it."""
    before = {service: bus_connects(host, service) for service in BUS_USERS}
    since = time.monotonic()
    host.sh("docker-compose restart redis", timeout=300)
    wait_healthy(host, "redis")
    assert redis_uptime(host) <= time.monotonic() - since + 1, "Redis did not restart"
    ages = wait_bus_reconnected(host, before, since)
    note(host, f"restart redis: every MAD reconnected (connection ages in s): {ages}")
    for service in BUS_USERS:
        assert_status_block(host, service)
    # The task from step 8 survived in Redis's AOF and Fiedler's store; a new one completes.
    assert task_status(host, host.task_id)["status"] == "COMPLETED"  # type: ignore[attr-defined]
    assert_completed(host, converse(host))
    assert_step7(host)


# --- least privilege ---------------------------------------------------------------------


def test_each_mad_is_its_own_bus_user_and_no_secret_shows(host: GuideHost) -> None:
    """Every MAD connects as its own Redis user and Redis denied nothing; the generated
    credentials are in no container's configuration (``docker inspect``), the
    administrator's password in none of the MADs', and a caller on the compose network
    without the internal credential is refused by Fiedler."""
    generated = {}
    for service in ("grace", "rogers", "fiedler"):
        generated[f"{service} bus password"] = host.sh(
            f"docker-compose exec -T {service} cat /run/madgroup/bus_password < /dev/null"
        ).output.strip()
    generated["internal credential"] = host.sh(
        "docker-compose exec -T fiedler cat /run/madgroup/internal_token < /dev/null"
    ).output.strip()
    assert all(len(value) == 32 for value in generated.values()), "credentials not readable"
    assert len(set(generated.values())) == len(generated)
    host.secrets.extend(generated.values())

    clients = host.sh(REDIS_ADMIN.format("client list") + " < /dev/null").output
    users = set(re.findall(r" user=(\S+)", clients)) - {"default"}
    assert users == {"grace", "rogers", "fiedler"}, clients
    assert host.sh(REDIS_ADMIN.format("acl log") + " < /dev/null").output.strip() == ""

    ids = host.sh("docker-compose ps -q").output.split()
    described = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    inspected = {item["Name"]: json.dumps(item) for item in json.loads(described)}
    admin = host.secrets[0]
    # Redis reads it from its ACL file, its healthcheck from a file, the one-shot from .env
    # mounted read-only: no container's configuration holds it.
    leaks = exposures(inspected, {**generated, "REDIS_PASSWORD": admin})
    assert leaks == []
    redis_args = next(
        item["Args"]
        for item in json.loads(described)
        if item["Config"]["Labels"]["com.docker.compose.service"] == "redis"
    )
    assert "--aclfile" in redis_args and admin not in " ".join(redis_args)

    refused = host.sh(f'docker-compose exec -T grace python -c "{NO_TOKEN_CALL}" < /dev/null')
    assert refused.output.strip() == "401", refused.output

    # Nor in any log, /status or /metrics (read raw: the harness masks what it knows).
    everything = {**generated, "REDIS_PASSWORD": admin}
    seen = {"logs": raw(host, ["docker-compose", "logs", "--no-color"])}
    for service in MADS:
        port = topology.component(service).port
        for page in ("/status", "/metrics"):
            code = (
                "import urllib.request;print(urllib.request.urlopen("
                f"'http://127.0.0.1:{port}{page}',timeout=5).read().decode())"
            )
            seen[f"{service} {page}"] = raw(
                host, ["docker-compose", "exec", "-T", service, "python", "-c", code]
            )
    # Nor on any process's command line: every container's processes are the host's too.
    seen["ps"] = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    assert all(seen.values())
    assert exposures(seen, everything) == []


# --- the images -------------------------------------------------------------------------


MARKER_ENVIRONMENT = """
import json, os, platform, sys
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": platform.python_version(),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""
INSTALLED = (
    "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower()"
    ".replace('_', '-'): d.version for d in m.distributions()}))"
)


def in_image(image: str, code: str) -> Any:
    out = subprocess.run(
        ["docker", "run", "--rm", image, "python", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return json.loads(out)


def locked_versions(lock: Path, image: str) -> dict[str, str]:
    """The pins of ``lock`` whose environment markers hold in ``image``."""
    environment = in_image(image, MARKER_ENVIRONMENT)
    pins = {}
    for name, version, marker in re.findall(
        r"^([A-Za-z0-9_.\-]+)==([^\s;]+)(?: ; ([^\\]+))?", lock.read_text(), re.M
    ):
        if not marker or Marker(marker.strip()).evaluate(environment):
            pins[name.lower().replace("_", "-")] = version
    return pins


def installed_versions(image: str) -> dict[str, str]:
    installed = dict(in_image(image, INSTALLED))
    installed.pop("madgroup")  # the project itself, installed from its wheel
    return installed


def image_size_mb(image: str) -> float:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out) / 1e6


def test_images_carry_only_their_job(host: GuideHost, engine: str) -> None:
    host.sh(
        f"docker build -q -f docker/Dockerfile --target operator -t {OPERATOR_IMAGE} .",
        timeout=900,
    )
    for image in IMAGES.values():
        refused = host.sh(f"docker run --rm {image} python -c 'import kopf'", check=False)
        assert refused.code != 0 and "No module named 'kopf'" in refused.output, str(refused)
        lock = locked_versions(host.workdir / "requirements" / "mads.txt", image)
        assert installed_versions(image) == lock, f"{image} is not requirements/mads.txt"
    lock = locked_versions(host.workdir / "requirements" / "operator.txt", OPERATOR_IMAGE)
    assert installed_versions(OPERATOR_IMAGE) == lock, f"{OPERATOR_IMAGE} is not the lock"
    helped = host.sh(f"docker run --rm {OPERATOR_IMAGE} madgroup operator --help")
    assert "usage: madgroup operator" in helped.output
    base = "a local stand-in (debootstrap)" if "stand-in" in engine else "the official"
    for image in (*IMAGES.values(), OPERATOR_IMAGE):
        line = f"{image}: {image_size_mb(image):.0f} MB on {base} python base"
        if ("image size", line) not in evidence.LINES:  # the same images in both passes
            record("image size", line)


def test_fiedler_explains_a_data_directory_it_cannot_write(host: GuideHost, tmp_path: Path) -> None:
    data = tmp_path / "root-owned"
    data.mkdir(mode=0o755)
    name = f"{host.project}-readonly-data"
    host.sh(
        f"docker run -d --name {name} -v {data}:/data -e REDIS_PASSWORD=unused {IMAGES['fiedler']}"
    )
    try:
        line = host.until(
            lambda: next(
                (
                    ln
                    for ln in host.sh(f"docker logs {name}").output.splitlines()
                    if "Cannot open the SQLite state database" in ln
                ),
                None,
            ),
            timeout=60,
            what="fiedler to explain why it cannot open its database",
        )
        assert line.startswith("ERROR:fiedler:"), line
        assert "/data" in line and "uid 10001" in line and "chown" in line, line
        status = host.sh(f"docker exec {name} mad-status", check=False)
        assert status.code != 0
        assert "- Status: DEGRADED" in status.output, str(status)
        assert "- Database Status: ERROR" in status.output, str(status)
        assert "Traceback" not in host.sh(f"docker logs {name}").output
    finally:
        host.sh(f"docker rm -f {name}", check=False)


# --- 5.1 rollback, and the start order ---------------------------------------------------


def test_5_1_down_keeps_the_task(host: GuideHost) -> None:
    host.sh("docker-compose down", timeout=300)
    host.sh("docker-compose up -d", timeout=600)
    wait_healthy(host, "fiedler")
    assert task_status(host, host.task_id)["status"] == "COMPLETED"  # type: ignore[attr-defined]


def test_start_order_follows_the_healthchecks(host: GuideHost) -> None:
    checked = assert_start_order(host)
    note(
        host,
        f"start order: {checked} container starts, each after its dependencies were "
        "healthy (docker events)",
    )


MADGROUP = Path(sys.executable).with_name("madgroup")


def test_report_on_compose(host: GuideHost, tmp_path: Path) -> None:
    """``madgroup report --compose``: every listed part, and no secret anywhere in it
    (the administrator's password, every bus password and the internal credential)."""
    assert host.compose is not None
    archive = tmp_path / "report.tar.gz"
    # With v2, as on a host where Compose came only as the Docker CLI's plugin: the report
    # is taken through docker compose (backup and restore below, through docker-compose).
    path = f"PATH={plugin_only_path(tmp_path)} " if host.compose.flavour == "v2" else ""
    done = host.sh(f"{path}{MADGROUP} report --compose -o {archive}", timeout=300)
    assert "every secret redacted" in done.output, str(done)
    with tarfile.open(archive) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
    manifest = json.loads(files.pop("manifest.json"))
    assert manifest["substrate"] == "compose" and manifest["missing"] == {}, manifest
    for comp in topology.COMPONENTS:
        assert f"{comp.name}/log.txt" in files
        if comp.is_mad:
            assert json.loads(files[f"{comp.name}/status.json"])["status"] == "HEALTHY"
            assert "mad_up" in files[f"{comp.name}/metrics.txt"].decode()
    assert json.loads(files["fiedler/fiedler_count_tasks.json"])["total"] >= 1
    versions = json.loads(files["versions.json"])
    ran = re.search(r"\d+\.\d+\.\d+", versions["docker-compose"])
    assert ran and ran.group() in host.compose.version, versions  # the pass's compose
    everything = b"".join(files.values())
    assert host.secrets and not [s for s in host.secrets if s.encode() in everything]


def test_backup_and_restore_on_compose(host: GuideHost, tmp_path: Path) -> None:
    """``madgroup backup --compose`` while the group runs, ``down --volumes``, a truncated
    archive refused (nothing changed), ``restore --compose``, ``up``: step 8's task is back."""
    archive = tmp_path / "backup.tar.gz"
    taken = host.sh(f"{MADGROUP} backup --compose -o {archive}", timeout=300)
    assert "fiedler/fiedler_state.db" in taken.output and "redis/dump.rdb" in taken.output
    host.sh("docker-compose down --volumes", timeout=300)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    refused = host.sh(f"{MADGROUP} restore --compose {truncated}", check=False)
    assert refused.code == 2 and "cannot be read to its end" in refused.output, str(refused)
    volumes = host.sh(
        f"docker volume ls -q --filter label=com.docker.compose.project={host.project}"
    )
    assert volumes.output.split() == []  # the refused restore created nothing
    host.sh(f"{MADGROUP} restore --compose {archive}", timeout=300)
    host.sh("docker-compose up -d", timeout=600)
    wait_healthy(host, "fiedler")
    assert task_status(host, host.task_id)["status"] == "COMPLETED"


def test_5_1_down_volumes_then_the_readme_bring_up(host: GuideHost) -> None:
    """5.1's full rollback wipes the data; then the README's bring-up from nothing but
    ``.env``, typed as the README gives it (``docker compose up -d``: in the v2 pass, the
    README's words), with docs/packaging.md's checks (``ps``, ``exec fiedler
    mad-status``), each container started only once what it depends on was healthy."""
    assert host.compose is not None
    compose = host.compose.spelling
    task_id = host.task_id
    host.sh("docker-compose down --volumes", timeout=300)
    host.sh(f"{compose} up -d", timeout=600)
    print(wait_all_healthy(host, compose))
    assert_status_block(host, "fiedler", compose)
    gone = host.sh(
        f"docker-compose exec fiedler mad-cli fiedler_get_task_status "
        f'\'{{"task_id": "{task_id}"}}\'',
        tty=True,
        check=False,
    )
    assert gone.code == 1 and "no such task" in gone.output, str(gone)
    checked = assert_start_order(host)
    note(
        host,
        f"'{compose} up -d' from nothing: every service healthy, "
        f"{checked} container starts in dependency order",
    )


def test_nothing_is_left_after_down_volumes(host: GuideHost) -> None:
    host.sh("docker-compose down --volumes", timeout=300)
    label = f"label=com.docker.compose.project={host.project}"
    for kind in ("container ls -a", "network ls", "volume ls"):
        left = host.sh(f"docker {kind} -q --filter {label}").output.split()
        assert left == [], f"docker {kind}: {left} left behind"

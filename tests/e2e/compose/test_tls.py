"""The deployment guide with TLS on the bus, with docker-compose on a real Docker engine.

The compose file is rendered from a MadGroup declaration with ``spec.tls.enabled: true``
(``madgroup render compose -f``); the guide's commands run against it, step 2 with
``redis-cli --tls --cacert /run/madgroup/ca.crt`` (the group's private CA, made by the
credentials service). A plaintext client is refused, every MAD connects over TLS as its own
user, and a renewed certificate is served without restarting anything.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.compose.harness import GuideHost
from tests.e2e.compose.steps import (
    MADS,
    assert_completed,
    assert_status_block,
    assert_step7,
    configure_env,
    converse,
    raw,
    task_status,
    wait_healthy,
    wait_log,
)
from tests.support.secrets import exposures

pytestmark = pytest.mark.timeout(900)

MADGROUP = str(Path(sys.executable).parent / "madgroup")
DECLARATION = """\
apiVersion: madgroup.io/v1alpha1
kind: MadGroup
metadata:
  name: madgroup
spec:
  tls:
    enabled: true
"""
CA = "/run/madgroup/ca.crt"
PASS = "--pass $(grep REDIS_PASSWORD .env | cut -d '=' -f2)"
ADMIN_TLS = (
    "docker-compose exec -T redis sh -c "
    '\'REDISCLI_AUTH="$(cat /run/madgroup/admin_password)" '
    f"redis-cli --tls --cacert {CA} {{}}' < /dev/null"
)
PEER_CERTIFICATE = (
    "import hashlib,socket,ssl\n"
    f"c=ssl.create_default_context(cafile='{CA}')\n"
    "s=c.wrap_socket(socket.create_connection(('redis',6379),5),server_hostname='redis')\n"
    "print(hashlib.sha256(s.getpeercert(True)).hexdigest())"
)


def served_certificate(host: GuideHost) -> str:
    """The SHA-256 of the certificate Redis presents to a MAD, checked against the CA."""
    return host.sh(
        f'docker-compose exec -T fiedler python -c "{PEER_CERTIFICATE}" < /dev/null'
    ).output.strip()


def grace_certificate(host: GuideHost) -> bytes:
    """What Grace presents on the published port, verified against the group's CA."""
    ca = host.sh("docker-compose exec -T grace cat /run/madgroup/ca.crt < /dev/null").output
    context = ssl.create_default_context(cadata=ca.strip())
    with (
        socket.create_connection(("127.0.0.1", 8001), timeout=5) as raw_socket,
        context.wrap_socket(raw_socket, server_hostname="localhost") as tls_socket,
    ):
        der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_render_the_tls_declaration_and_configure(host: GuideHost) -> None:
    (host.workdir / "madgroup-tls.yaml").write_text(DECLARATION)
    rendered = host.sh(f"{MADGROUP} render compose -f madgroup-tls.yaml")
    assert "wrote docker-compose.yml" in rendered.output
    compose = (host.workdir / "docker-compose.yml").read_text()
    assert "--tls-port" in compose and "REDIS_TLS_CA_FILE" in compose
    configure_env(host)


def test_the_group_comes_up_over_tls(host: GuideHost) -> None:
    host.sh("docker-compose up -d --build", timeout=900)
    for service in ("redis", *MADS):
        wait_healthy(host, service)
    wait_log(host, "redis", "Ready to accept connections")


def test_step2_over_tls_and_plaintext_is_refused(host: GuideHost) -> None:
    plain = host.sh(f"docker-compose exec -T redis redis-cli {PASS} ping < /dev/null", check=False)
    assert "PONG" not in plain.output, str(plain)
    refused = host.sh(
        f"docker-compose exec -T redis redis-cli --tls --cacert {CA} ping < /dev/null",
        check=False,
    )
    assert "NOAUTH Authentication required" in refused.output, str(refused)
    answered = host.sh(
        f"docker-compose exec -T redis redis-cli --tls --cacert {CA} {PASS} ping < /dev/null"
    )
    assert answered.output.strip().splitlines()[-1] == "PONG", str(answered)
    ports = host.sh(ADMIN_TLS.format("config get *port")).output.split()
    settings = dict(zip(ports[::2], ports[1::2], strict=True))
    assert settings["port"] == "0" and settings["tls-port"] == "6379", settings


def test_every_mad_connects_over_tls_and_the_guide_passes(host: GuideHost) -> None:
    for service in ("grace", "rogers", "fiedler"):
        assert_status_block(host, service)
    clients = host.sh(ADMIN_TLS.format("client list")).output
    users = {part.split("=", 1)[1] for part in clients.split() if part.startswith("user=")}
    assert users - {"default"} == {"grace", "rogers", "fiedler"}, clients
    assert host.sh(ADMIN_TLS.format("acl log")).output.strip() == ""
    assert_step7(host)
    assert grace_certificate(host)  # the published port speaks HTTPS, from the group's CA
    plain = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8001/healthz"],
        capture_output=True,
        text=True,
    )
    assert plain.stdout != "200", "Grace answered plaintext HTTP"
    host.task_id = converse(host)
    assert_completed(host, host.task_id)


def test_the_private_keys_show_nowhere(host: GuideHost) -> None:
    key = host.sh("docker-compose exec -T redis cat /run/madgroup/redis.key < /dev/null").output
    assert "PRIVATE KEY" in key
    body = "".join(line for line in key.splitlines() if "PRIVATE KEY" not in line)
    secrets = {"redis.key": body.strip()}
    ids = host.sh("docker-compose ps -q").output.split()
    inspected = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    seen = {
        "docker inspect": inspected,
        "logs": raw(host, ["docker-compose", "logs", "--no-color"]),
        "ps": subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout,
    }
    assert exposures(seen, secrets) == []
    for service in MADS:  # the CA's key is with the one-shot only; a MAD holds its own key
        listing = host.sh(f"docker-compose exec -T {service} ls /run/madgroup < /dev/null")
        keys = {name for name in listing.output.split() if name.endswith(".key")}
        assert keys == ({"grace.key"} if service == "grace" else set()), (service, keys)


def test_a_renewed_certificate_is_served_without_a_restart(host: GuideHost) -> None:
    def started() -> dict[str, str]:
        """When each container was last started (a restart changes it)."""
        return {
            s: host.sh(
                f"docker inspect -f '{{{{.State.StartedAt}}}}' $(docker-compose ps -q {s})"
            ).output.strip()
            for s in ("redis", *MADS)
        }

    before = served_certificate(host)
    first_started = started()
    renewed = host.sh("docker-compose run --rm -T -e MAD_TLS_RENEW=1 bus_users < /dev/null")
    assert "redis/redis.crt" in renewed.output, str(renewed)
    assert "grace/grace.crt" in renewed.output, str(renewed)
    reload = ADMIN_TLS.format(
        "config set tls-cert-file /run/madgroup/redis.crt tls-key-file /run/madgroup/redis.key"
    )
    assert host.sh(reload).output.strip() == "OK"
    after = served_certificate(host)
    assert after != before
    fresh = host.sh("docker-compose exec -T grace cat /run/madgroup/grace.crt < /dev/null").output
    host.until(
        lambda: grace_certificate(host) == ssl.PEM_cert_to_DER_cert(fresh.strip()),
        timeout=60,
        what="Grace to serve its renewed certificate on the published port",
    )
    assert task_status(host, host.task_id)["status"] == "COMPLETED"
    assert_completed(host, converse(host))
    assert started() == first_started, "a container was restarted"
    status = json.loads(
        host.sh("docker-compose exec -T rogers mad-cli rogers_get_connections < /dev/null").output
    )
    healthy = {c["mad_id"] for c in status["connections"] if c["status"] == "HEALTHY"}
    assert {"grace", "fiedler"} <= healthy


def test_down_volumes_leaves_nothing(host: GuideHost) -> None:
    host.sh("docker-compose down --volumes", timeout=300)
    left = host.sh(
        f"docker ps -aq --filter label=com.docker.compose.project={host.project}; "
        f"docker volume ls -q --filter label=com.docker.compose.project={host.project}"
    ).output.split()
    assert left == []

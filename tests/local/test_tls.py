"""TLS on the bus, locally: ``madgroup init --tls`` makes the group's CA and Redis's
certificate, ``madgroup up --tls`` runs Redis with TLS only, the guide still passes, a
plaintext client is refused, and a renewed certificate is served without a restart."""

from __future__ import annotations

import json
import re
import socket
import ssl
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis
from cryptography import x509

from mads.core import tls
from tests.support.local_group import Group
from tests.support.waiting import wait_for


def _served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _redis_cli(group: Group, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-p", str(group.port("redis")), *args, "ping"],
        env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": group.password()},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _reconnects(group: Group, name: str) -> float:
    scheme, context = "http", None
    if name == "grace":  # the front door serves HTTPS
        scheme = "https"
        context = ssl.create_default_context(cafile=str(group.state_dir / "tls" / tls.CA_CERT))
    url = f"{scheme}://127.0.0.1:{group.port(name)}/metrics"
    with urllib.request.urlopen(url, timeout=5, context=context) as r:
        text = r.read().decode()
    found = re.search(r"^mad_bus_reconnects (\S+)$", text, re.MULTILINE)
    assert found, f"{name} exports no mad_bus_reconnects"
    return float(found.group(1))


def test_the_guide_passes_with_tls_and_plaintext_is_refused(group: Group) -> None:
    init = group.mg("init", "--tls")
    tls_dir = group.state_dir / "tls"
    ca = tls_dir / tls.CA_CERT
    assert str(ca) in init.stdout
    for key in (tls.CA_KEY, tls.key_file("redis")):
        assert stat.S_IMODE((tls_dir / key).stat().st_mode) == 0o600, key
    assert "certificates are current" in group.mg("init", "--tls").stdout

    group.up("--tls")
    smoke = group.mg("smoke", timeout=180)
    for step in range(2, 10):
        assert f"PASS  step {step} " in smoke.stdout, smoke.stdout
    assert "plaintext refused (TLS only)" in smoke.stdout

    # Grace's published port speaks HTTPS, with a certificate from the same CA.
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(
        f"https://127.0.0.1:{group.port('grace')}/healthz", timeout=5, context=context
    ) as answer:
        assert answer.status == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{group.port('grace')}/healthz", timeout=5)
    health = group.mg("health")
    assert "Service grace is HEALTHY." in health.stdout

    plain = _redis_cli(group)
    assert plain.stdout.strip() != "PONG", plain.stdout
    assert _redis_cli(group, "--tls", "--cacert", str(ca)).stdout.strip() == "PONG"
    with pytest.raises(redis.ConnectionError):  # not our CA: Redis's certificate is refused
        other = tls.ensure(group.root / "other-ca", "other", {})
        assert other
        redis.Redis(
            port=group.port("redis"),
            password=group.password(),
            ssl=True,
            ssl_ca_certs=str(group.root / "other-ca" / tls.CA_CERT),
            socket_timeout=5,
        ).ping()

    # Renewal: the running Redis serves the new certificate, no MAD reconnects, and the
    # task made before it is still there while a new one completes.
    before = _served_serial(group.port("redis"), ca)
    grace_before = _served_serial(group.port("grace"), ca)
    reconnects = {name: _reconnects(group, name) for name in ("grace", "rogers", "fiedler")}
    renewed = group.mg("init", "--tls", "--renew")
    assert "now serves its new certificate" in renewed.stdout
    on_disk = x509.load_pem_x509_certificate((tls_dir / tls.cert_file("redis")).read_bytes())
    after = _served_serial(group.port("redis"), ca)
    assert after == on_disk.serial_number != before
    grace_cert = x509.load_pem_x509_certificate((tls_dir / tls.cert_file("grace")).read_bytes())
    assert grace_cert.serial_number != grace_before
    wait_for(
        lambda: _served_serial(group.port("grace"), ca) == grace_cert.serial_number,
        timeout=60,
        what="Grace to serve its renewed certificate",
    )
    assert "Serving the renewed TLS certificate" in group.log("grace")
    first_task = next(
        line.split("task ")[1].split()[0]
        for line in smoke.stdout.splitlines()
        if line.startswith("PASS  step 8 ")
    )
    again = group.mg("smoke", timeout=180)
    assert "FAIL" not in again.stdout, again.stdout
    status = group.mg(
        "exec", "fiedler", "mad-cli", "fiedler_get_task_status", json.dumps({"task_id": first_task})
    )
    assert json.loads(status.stdout)["status"] == "COMPLETED"
    assert {name: _reconnects(group, name) for name in reconnects} == reconnects


def test_renew_without_tls_is_refused_and_changes_nothing(group: Group) -> None:
    refused = group.mg("init", "--renew", check=False)
    assert refused.returncode == 2
    assert "use it with --tls" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (group.root / ".env").exists()

"""Each MAD's bus user on Kubernetes: one Secret per MAD, each pod referencing only its own
credentials, and Redis's ACL file written by an init container from the Secrets.

The last test plays the kubelet for real: it runs the Redis pod's init container and Redis's
command line (as rendered) on this machine, with the environment the Secrets give them, and
connects as each MAD pod would.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest
import redis
from madgroup import topology
from madgroup.kube import certificates, crd, naming, objects
from madgroup.resolved import resolve

from tests.support import processes
from tests.support.ports import free_port
from tests.support.waiting import wait_for

OWNER = objects.Owner("demo", "team-a", "0000-1111")


def _pod(name: str, raw: dict | None = None) -> dict:
    desired = crd.parse(raw or {})
    return objects.workload(OWNER, desired, resolve(desired).of(name))["spec"]["template"]["spec"]


def _secret_names(container: dict) -> set[str]:
    return {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}


def _values(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_each_mad_pod_references_only_its_own_credentials():
    for name in topology.MAD_NAMES:
        comp = topology.component(name)
        container = _pod(name)["containers"][0]
        expected = set()
        if comp.bus_user is not None:
            expected.add(naming.bus_secret_name("demo", comp.bus_user))
            assert _values(container)["REDIS_USERNAME"] == comp.bus_user
        else:
            assert "REDIS_USERNAME" not in _values(container)
            assert "REDIS_PASSWORD" not in {e["name"] for e in container["env"]}
        if topology.needs_internal_token(comp):
            expected.add(naming.internal_token_secret_name("demo"))
        expected.add(naming.metrics_token_secret_name("demo"))  # /metrics for a scraper
        assert _secret_names(container) == expected, name
        assert "initContainers" not in _pod(name)
    assert "sequential_thinking" not in topology.bus_users()  # it needs none of the bus's


def test_redis_alone_holds_the_administrators_password_and_its_init_container_every_users():
    pod = _pod("redis")
    assert _secret_names(pod["containers"][0]) == {"demo-redis-password"}
    (init,) = pod["initContainers"]
    assert init["image"] == pod["containers"][0]["image"]  # a new MAD image never restarts Redis
    assert _secret_names(init) == {"demo-redis-password"} | {
        naming.bus_secret_name("demo", u) for u in topology.bus_users()
    }
    command = pod["containers"][0]["command"]
    assert command[command.index("--aclfile") + 1] == objects.ACL_PATH
    assert "--requirepass" not in command


def test_the_operator_generates_a_secret_per_bus_user_unless_one_is_referenced():
    generated = {s.name for s in objects.generated_secrets(OWNER, crd.parse({}))}
    assert generated == {
        "demo-redis-password",
        "demo-internal-token",
        "demo-metrics-token",
        *(naming.bus_secret_name("demo", u) for u in topology.bus_users()),
    }
    raw = {"grace": {"busPasswordSecretRef": {"name": "grace-bus", "key": "pw"}}}
    declared = crd.parse(raw)
    assert "demo-grace-bus" not in {s.name for s in objects.generated_secrets(OWNER, declared)}
    grace = {e["name"]: e for e in _pod("grace", raw)["containers"][0]["env"]}
    assert grace["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "grace-bus",
        "key": "pw",
    }
    (init,) = _pod("redis", raw)["initContainers"]
    assert "grace-bus" in _secret_names(init)


def test_a_bus_secret_reference_is_refused_where_no_bus_user_exists():
    with pytest.raises(Exception, match="busPasswordSecretRef"):
        crd.parse({"sequentialThinking": {"busPasswordSecretRef": {"name": "x", "key": "y"}}})


def _resolve(container: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet gives it."""
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _decoded(manifest: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in manifest["data"].items()}


def _made(declared: crd.KubeMadGroupSpec) -> dict[str, dict[str, str]]:
    """Every generated Secret's values, made as the operator makes them (a server's
    certificate from the group's CA, made first)."""
    ca = None
    made = {}
    for secret in objects.generated_secrets(OWNER, declared):
        manifest = secret.manifest(OWNER, ca)
        if isinstance(secret, certificates.CaSecret):
            ca = certificates.load_ca(manifest)
        made[secret.name] = _decoded(manifest)
    return made


@pytest.mark.parametrize("tls_on", [False, True], ids=["plain", "tls"])
def test_the_redis_pod_runs_with_its_users_and_each_mad_pod_connects_as_its_own(
    tmp_path: Path, tls_on: bool
) -> None:
    raw = {"tls": {"enabled": True}} if tls_on else {}
    declared = crd.parse(raw)
    secrets = _made(declared)
    pod = _pod("redis", raw)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    if tls_on:  # the kubelet projects the TLS Secret's keys as files
        for key, value in secrets[naming.tls_secret_name("demo", "redis")].items():
            (tls_dir / key).write_text(value)
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    run_dir.mkdir()
    data_dir.mkdir()

    (init,) = pod["initContainers"]
    script = init["command"][2].replace(objects.CREDENTIALS_DIR, str(run_dir))
    env = {"PATH": os.environ["PATH"], **_resolve(init, secrets)}
    done = subprocess.run(
        [*init["command"][:2], script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == ""  # says nothing, least of all a password
    acl = run_dir / "users.acl"
    passwords = {u: env[topology.bus_password_variable(u)] for u in topology.bus_users()}
    assert acl.read_text() == topology.acl_file(env["REDIS_PASSWORD"], passwords)
    assert stat.S_IMODE(acl.stat().st_mode) == 0o600
    assert not [v for v in env.values() if len(v) >= 32 and v in acl.read_text()]

    missing = subprocess.run(
        [*init["command"][:2], script],
        env={k: v for k, v in env.items() if k != "GRACE_BUS_PASSWORD"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0 and "GRACE_BUS_PASSWORD is not set" in missing.stderr

    port = free_port()
    command = [
        arg.replace(certificates.TLS_DIR, str(tls_dir))
        .replace(objects.CREDENTIALS_DIR, str(run_dir))
        .replace(topology.DATA_DIR, str(data_dir))
        for arg in pod["containers"][0]["command"]
    ]
    command[command.index("--tls-port" if tls_on else "--port") + 1] = str(port)
    tls_client = {"ssl": True, "ssl_ca_certs": str(tls_dir / "ca.crt")} if tls_on else {}
    server = subprocess.Popen(
        [*command, "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin_env = _resolve(pod["containers"][0], secrets)
        admin = redis.Redis(
            port=port, password=admin_env["REDIS_PASSWORD"], socket_timeout=5, **tls_client
        )

        def answers() -> bool:
            try:
                return bool(admin.ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=15, what="redis-server with the pod's ACL file")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=5, **tls_client).ping()
        if tls_on:
            with pytest.raises(redis.ConnectionError):  # plaintext: refused
                redis.Redis(
                    port=port, password=admin_env["REDIS_PASSWORD"], socket_timeout=5
                ).ping()
        for name in topology.MAD_NAMES:
            mad_pod = _pod(name, raw)
            mad_env = _resolve(mad_pod["containers"][0], secrets)
            if tls_on and "REDIS_USERNAME" in mad_env:
                (volume,) = [v for v in mad_pod["volumes"] if "secret" in v]
                if topology.serves_tls(topology.component(name)):  # Grace: its own Secret
                    assert volume["secret"]["secretName"] == f"demo-{name}-tls"
                    assert "items" not in volume["secret"]
                else:  # only the CA's certificate, never a key
                    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
                assert mad_env["REDIS_TLS_CA_FILE"] == f"{certificates.TLS_DIR}/ca.crt"
            if "REDIS_USERNAME" not in mad_env:
                continue
            mad = redis.Redis(
                port=port,
                username=mad_env["REDIS_USERNAME"],
                password=mad_env["REDIS_PASSWORD"],
                socket_timeout=5,
                **tls_client,
            )
            assert mad.ping() is True, name
            for refused in (mad.flushall, lambda m=mad: m.config_get("*")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    refused()
        assert admin.dbsize() == 0
    finally:
        processes.stop(server)


def test_every_bus_user_and_only_they_can_reference_a_bus_secret():
    declared = crd.KubeMadGroupSpec()
    for name in topology.MAD_NAMES:
        has_field = "busPasswordSecretRef" in type(declared.component(name)).model_fields
        assert has_field == (name in topology.bus_users()), name


def test_with_tls_the_redis_probe_and_certificate_fit_the_service():
    raw = {"tls": {"enabled": True}}
    redis_pod = _pod("redis", raw)
    probe = " ".join(redis_pod["containers"][0]["readinessProbe"]["exec"]["command"])
    assert f"--tls --cacert {certificates.TLS_DIR}/ca.crt" in probe
    made = _made(crd.parse(raw))
    assert set(made) >= {"demo-ca", "demo-redis-tls", "demo-grace-tls"}
    assert set(made["demo-redis-tls"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert made["demo-redis-tls"]["ca.crt"] == made["demo-grace-tls"]["ca.crt"]  # one CA
    assert made["demo-ca"]["tls.crt"] == made["demo-redis-tls"]["ca.crt"]
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(made["demo-redis-tls"]["tls.crt"].encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(objects.allowed_hosts(OWNER, "redis")) <= set(
        names.get_values_for_type(x509.DNSName)
    )
    # Sequential Thinking is off the bus: no TLS Secret mounted.
    assert not [v for v in _pod("sequential_thinking", raw)["volumes"] if "secret" in v]

"""The deployment guide with the group's secrets declared, with docker-compose on a real
Docker engine.

The compose file is rendered from a MadGroup that names ``.env`` keys of its own: the
administrator's password (``spec.redis.passwordSecretRef``), the OpenAI-compatible LLM's
key and Grace's tokens; ``.env`` holds those keys and no ``REDIS_PASSWORD`` line. The group
comes up; the guide's step 2 reads NOAUTH without a password and PONG with the declared
key's value; each MAD connects as its own bus user and the administrator's password is in
no container's configuration; the declared secrets reach the MADs that use them; and a
``.env`` that also sets ``REDIS_PASSWORD`` to another value stops the credentials service
with one line.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mads.grace import tokens as grace_tokens
from tests.e2e.compose.harness import GuideHost
from tests.e2e.compose.steps import (
    BUS_USERS,
    MADS,
    REDIS_ADMIN,
    assert_status_block,
    assert_step7,
    raw,
    wait_healthy,
    wait_log,
)
from tests.support.secrets import exposures

pytestmark = pytest.mark.timeout(900)

MADGROUP = str(Path(sys.executable).parent / "madgroup")
ADMIN_KEY = "ADMIN_PW"
LLM_KEY = "OPENAI_KEY"
TOKENS_KEY = "FRONT_TOKENS"
DECLARATION = f"""\
apiVersion: madgroup.io/v1alpha1
kind: MadGroup
metadata:
  name: madgroup
spec:
  redis:
    passwordSecretRef: {{name: admin, key: {ADMIN_KEY}}}
  fiedler:
    llm:
      provider: openai
      baseUrl: http://llm.invalid:11434/v1
      model: llama3.1
      apiKeySecretRef: {{name: llm, key: {LLM_KEY}}}
  grace:
    tokenSecretRef: {{name: front, key: {TOKENS_KEY}}}
    tokens:
      - name: ops
        sha256: {{sha256}}
        scopes: {{tools: [fiedler_get_task_status]}}
"""


def dotenv(host: GuideHost) -> dict[str, str]:
    values = {}
    for line in (host.workdir / ".env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key] = value
    return values


def test_render_the_declaration_and_configure(host: GuideHost) -> None:
    scoped = secrets.token_urlsafe(24)
    (host.workdir / "madgroup-secrets.yaml").write_text(
        DECLARATION.replace("{sha256}", grace_tokens.digest(scoped))
    )
    rendered = host.sh(f"{MADGROUP} render compose -f madgroup-secrets.yaml")
    assert "wrote docker-compose.yml" in rendered.output
    compose = yaml.safe_load((host.workdir / "docker-compose.yml").read_text())
    command = compose["services"]["bus_users"]["command"]
    assert command[command.index("--admin-key") + 1] == ADMIN_KEY
    host.sh(
        "cp .env.example .env\n"
        f'echo "{ADMIN_KEY}=$(openssl rand -base64 24)" >> .env\n'
        f'echo "{LLM_KEY}=sk-$(openssl rand -hex 16)" >> .env\n'
        f'echo "{TOKENS_KEY}=$(openssl rand -hex 20)" >> .env'
    )
    values = dotenv(host)
    assert "REDIS_PASSWORD" not in values
    host.secrets.extend([values[ADMIN_KEY], values[LLM_KEY], values[TOKENS_KEY], scoped])


def test_the_group_comes_up(host: GuideHost) -> None:
    host.sh("docker-compose up -d --build", timeout=900)
    for service in ("redis", *MADS):
        wait_healthy(host, service)
    wait_log(host, "redis", "Ready to accept connections")


def test_step2_reads_noauth_and_pong_with_the_declared_keys_value(host: GuideHost) -> None:
    refused = host.sh("docker-compose exec redis redis-cli ping", tty=True, check=False)
    assert refused.output.strip() == "(error) NOAUTH Authentication required.", str(refused)
    answered = host.sh(
        f"docker-compose exec redis redis-cli --pass $(grep {ADMIN_KEY} .env | cut -d '=' -f2) "
        "ping",
        tty=True,
    )
    assert answered.output.strip().splitlines()[-1] == "PONG", str(answered)


def test_each_mad_is_its_own_bus_user_and_the_administrator_in_none(host: GuideHost) -> None:
    for service in BUS_USERS:
        assert_status_block(host, service)
    assert_step7(host)
    clients = host.sh(REDIS_ADMIN.format("client list") + " < /dev/null").output
    users = set(re.findall(r" user=(\S+)", clients)) - {"default"}
    assert users == set(BUS_USERS), clients
    assert host.sh(REDIS_ADMIN.format("acl log") + " < /dev/null").output.strip() == ""
    ids = host.sh("docker-compose ps -q").output.split()
    described = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    inspected = {item["Name"]: json.dumps(item) for item in json.loads(described)}
    admin = dotenv(host)[ADMIN_KEY]
    assert exposures(inspected, {ADMIN_KEY: admin}) == []
    for service in MADS:
        environment = raw(host, ["docker-compose", "exec", "-T", service, "env"])
        assert admin not in environment, f"the administrator's password is in {service}'s"


def test_the_declared_secrets_reach_the_mads_that_use_them(host: GuideHost) -> None:
    values = dotenv(host)

    def variable(service: str, name: str) -> str:
        printed = raw(host, ["docker-compose", "exec", "-T", service, "printenv", name])
        return printed.strip()

    assert variable("fiedler", "FIEDLER_LLM_API_KEY") == values[LLM_KEY]
    assert variable("fiedler", "FIEDLER_LLM_PROVIDER") == "openai"
    assert variable("grace", "GRACE_API_TOKENS") == values[TOKENS_KEY]
    assert values[LLM_KEY] not in raw(host, ["docker-compose", "exec", "-T", "grace", "env"])


def test_a_second_administrators_password_in_env_is_refused(host: GuideHost) -> None:
    host.sh('echo "REDIS_PASSWORD=$(openssl rand -base64 24)" >> .env')
    host.secrets.append(dotenv(host)["REDIS_PASSWORD"])
    refused = host.sh("docker-compose run --rm -T bus_users < /dev/null", check=False)
    assert refused.code == 2, str(refused)
    assert f"sets REDIS_PASSWORD and {ADMIN_KEY}" in refused.output, str(refused)


def test_down_volumes_leaves_nothing(host: GuideHost) -> None:
    host.sh("docker-compose down --volumes", timeout=300)
    left = host.sh(
        f"docker ps -aq --filter label=com.docker.compose.project={host.project}; "
        f"docker volume ls -q --filter label=com.docker.compose.project={host.project}"
    ).output.split()
    assert left == []

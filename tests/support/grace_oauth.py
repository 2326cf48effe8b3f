"""A MAD group whose Grace is an OAuth resource server of a real Hydra: the environment it
is started with, the scopes file, and a module-wide group (Sequential Thinking, Grace,
Fiedler) for the tests that share one.

A test module takes the fixtures with
``from tests.support.grace_oauth import oauth_group as oauth_group`` (and ``hydra`` from
:mod:`tests.support.hydra_server` the same way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.grace import new_token
from tests.support.group import ProcessGroup, process_group
from tests.support.hydra_server import HydraServer
from tests.support.mad_process import MadProcess
from tests.support.ports import free_port

CONVERSE_SCOPE = "mad.converse"
READ_SCOPE = "mad.read"
BUS_SCOPE = "mad.bus"
SCOPES = {
    "scopes": {
        READ_SCOPE: {"tools": ["fiedler_get_task_status", "fiedler_list_tasks", "rogers_*"]},
        CONVERSE_SCOPE: {"tools": ["fiedler_converse", "fiedler_get_task_status"]},
        BUS_SCOPE: {"tools": ["grace_*"], "topics": ["mad.topic.*"]},
    },
    "limits": {"concurrent_calls": 50},
    "subjects": {"limited-client": {"limits": {"requests_per_second": 2}}},
}
LIMITED_SUBJECT = "limited-client"
"""A subject the scopes file limits to 2 requests/s."""
INTROSPECTION_CLIENT = "grace-introspection"
SMOKE = {"prompt": "System check, please respond with OK.", "requester_id": "ops-team"}


def oauth_env(hydra: HydraServer, resource: str, workdir: Path) -> dict[str, str]:
    """Grace's OAuth variables for ``hydra``, with the scopes file and the introspection
    client's secret written to ``workdir``: a small leeway and JWKS refresh period, so
    expiry and rotation are seen quickly."""
    workdir.mkdir(parents=True, exist_ok=True)
    scopes = workdir / "oauth-scopes.json"
    scopes.write_text(json.dumps(SCOPES))
    introspection = hydra.client([], [], client_id=INTROSPECTION_CLIENT)
    secret = workdir / "introspection-secret"
    secret.write_text(introspection.secret)
    secret.chmod(0o600)
    return {
        "GRACE_OAUTH_ISSUER": hydra.issuer,
        "GRACE_OAUTH_RESOURCE": resource,
        "GRACE_OAUTH_SCOPES_FILE": str(scopes),
        "GRACE_OAUTH_LEEWAY_S": "1",
        "GRACE_OAUTH_JWKS_REFRESH_MIN_S": "1",
        "GRACE_OAUTH_INTROSPECTION_URL": hydra.introspection_url,
        "GRACE_OAUTH_INTROSPECTION_CLIENT_ID": introspection.client_id,
        "GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET_FILE": str(secret),
    }


@dataclass
class OAuthGroup:
    group: ProcessGroup
    grace: MadProcess
    resource: str
    static_token: str
    internal_token: str
    """The group's internal credential (MAD_INTERNAL_TOKEN), which every MAD here has."""

    def metric(self, name: str, **labels: str) -> float:
        """A sample of Grace's /metrics (read from loopback, which needs no token)."""
        text = httpx.get(f"{self.grace.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        raise AssertionError(f"no sample {name}{labels} in Grace's /metrics")


@pytest.fixture(scope="module")
def oauth_group(
    hydra: HydraServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OAuthGroup]:
    """Sequential Thinking, Rogers, Fiedler and a Grace that accepts Hydra's tokens for its
    own resource (``http://127.0.0.1:<port>/mcp``) and one static token, for a test module;
    the internal MADs serve MCP only with the group's internal credential."""
    workdir = tmp_path_factory.mktemp("oauth-group")
    internal = {"MAD_INTERNAL_TOKEN": new_token()}
    with process_group(workdir / "group") as group:
        group.start("sequential_thinking", internal)
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        static = new_token()
        env = {**oauth_env(hydra, resource, workdir), "GRACE_API_TOKENS": static, **internal}
        grace = group.start("grace", env, port=port)
        group.start("rogers", internal)
        group.start("fiedler", internal)
        yield OAuthGroup(group, grace, resource, static, internal["MAD_INTERNAL_TOKEN"])

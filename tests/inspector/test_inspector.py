"""The MCP Inspector (``@modelcontextprotocol/inspector``, pinned in ``package.json`` next to
this file), the tool people point at an MCP server, in its CLI mode against the group as
its processes run: it lists Grace's tools and runs the guide's step 8 through Grace with a
static token and with an access token from a real authorization server (Ory Hydra), lists
each internal MAD's tools with the group's internal credential, and is refused without it.

The credential travels as an HTTP header from the Inspector's server configuration file
(``mcpServers.<name>.headers``, read-only ``--config``), so no token is on a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import node
from tests.support.grace_oauth import CONVERSE_SCOPE, READ_SCOPE, SMOKE, OAuthGroup
from tests.support.grace_oauth import oauth_group as oauth_group  # the fixture
from tests.support.hydra_server import HydraServer
from tests.support.hydra_server import hydra as hydra  # the fixture
from tests.support.waiting import wait_for

HERE = Path(__file__).resolve().parent
LAUNCHER = (
    HERE
    / "node_modules"
    / "@modelcontextprotocol"
    / "inspector"
    / "clients"
    / "launcher"
    / "build"
    / "index.js"
)
INTERNAL_TOOLS = {
    "sequential_thinking": {"sequentialthinking"},
    "rogers": {"rogers_get_connections", "rogers_get_stats"},
    "fiedler": {"fiedler_converse", "fiedler_get_task_status"},
}


@pytest.fixture(scope="module")
def launcher() -> Path:
    return node.installed(HERE, LAUNCHER)


class Inspector:
    def __init__(self, launcher: Path, workdir: Path) -> None:
        self.launcher = launcher
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._configs = 0

    def run(self, url: str, token: str | None, *method: str) -> subprocess.CompletedProcess[str]:
        """``inspector --cli --config <file> --server target <method...>``: the server's URL
        and its ``Authorization`` header in the configuration file."""
        self._configs += 1
        server: dict[str, Any] = {"type": "streamable-http", "url": url}
        if token is not None:
            server["headers"] = {"Authorization": f"Bearer {token}"}
        config = self.workdir / f"servers-{self._configs}.json"
        config.write_text(json.dumps({"mcpServers": {"target": server}}))
        config.chmod(0o600)
        env = {
            **os.environ,
            "HOME": str(self.workdir),  # whatever it keeps stays in the test's folder
            "NO_COLOR": "1",
            "MCP_INSPECTOR_SECRET_STORE": "memory",  # no OS keychain here
        }
        # --stored-auth-only: a 401 is an answer, not the start of an interactive login.
        command = [
            *(str(node.node()), str(self.launcher), "--cli", "--stored-auth-only"),
            *("--config", str(config)),
        ]
        return subprocess.run(
            [*command, "--server", "target", *method],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            cwd=self.workdir,
        )

    def json(self, url: str, token: str | None, *method: str) -> Any:
        done = self.run(url, token, *method)
        assert done.returncode == 0, (method, done.stdout[-2000:], done.stderr[-2000:])
        return json.loads(done.stdout)

    def tool_names(self, url: str, token: str | None) -> set[str]:
        return {tool["name"] for tool in self.json(url, token, "--method", "tools/list")["tools"]}

    def call(self, url: str, token: str | None, tool: str, **arguments: str) -> Any:
        args = [f"{key}={value}" for key, value in arguments.items()]
        result = self.json(
            url, token, "--method", "tools/call", "--tool-name", tool, "--tool-arg", *args
        )
        assert not result.get("isError"), result
        return result.get("structuredContent") or json.loads(result["content"][0]["text"])


@pytest.fixture
def inspector(launcher: Path, tmp_path: Path) -> Inspector:
    return Inspector(launcher, tmp_path / "inspector")


def step8(inspector: Inspector, url: str, token: str, requester: str) -> dict[str, Any]:
    """The guide's step 8 through the Inspector: converse, then the task's status until
    it is done."""
    pending = inspector.call(url, token, "fiedler_converse", **{**SMOKE, "requester_id": requester})
    assert pending["status"] == "pending", pending

    def done() -> dict[str, Any] | None:
        status = inspector.call(url, token, "fiedler_get_task_status", task_id=pending["task_id"])
        return status if status["status"] in ("COMPLETED", "FAILED") else None

    return wait_for(done, timeout=60, interval=0.5, what="the task to finish")


def grace_mcp(group: OAuthGroup) -> str:
    return f"{group.grace.url}/mcp"


def test_the_inspector_lists_graces_tools_and_runs_step8_with_a_static_token(
    inspector: Inspector, oauth_group: OAuthGroup
) -> None:
    url, token = grace_mcp(oauth_group), oauth_group.static_token
    wait_for(
        lambda: "fiedler_converse" in inspector.tool_names(url, token),
        timeout=60,
        interval=1,
        what="Fiedler's tools listed through Grace",
    )
    names = inspector.tool_names(url, token)
    assert {"grace_send_message", "grace_subscribe", "grace_poll_messages"} <= names
    status = step8(inspector, url, token, "inspector-static")
    assert status["status"] == "COMPLETED" and "OK" in str(status["result_payload"]), status


def test_the_inspector_runs_step8_with_a_hydra_access_token(
    inspector: Inspector, hydra: HydraServer, oauth_group: OAuthGroup
) -> None:
    client = hydra.client([CONVERSE_SCOPE, READ_SCOPE], [oauth_group.resource])
    token = hydra.token(client, [CONVERSE_SCOPE], oauth_group.resource)
    url = grace_mcp(oauth_group)
    wait_for(
        lambda: "fiedler_converse" in inspector.tool_names(url, token),
        timeout=60,
        interval=1,
        what="Fiedler's tools listed through Grace",
    )
    status = step8(inspector, url, token, "inspector-oauth")
    assert status["status"] == "COMPLETED" and "OK" in str(status["result_payload"]), status


@pytest.mark.parametrize("name", sorted(INTERNAL_TOOLS))
def test_the_inspector_lists_an_internal_mads_tools_only_with_the_internal_credential(
    inspector: Inspector, oauth_group: OAuthGroup, name: str
) -> None:
    url = f"{oauth_group.group[name].url}/mcp"
    assert INTERNAL_TOOLS[name] <= inspector.tool_names(url, oauth_group.internal_token)
    for token in (None, oauth_group.static_token):
        refused = inspector.run(url, token, "--method", "tools/list")
        assert refused.returncode != 0, refused.stdout
        said = refused.stdout + refused.stderr
        error = next(
            json.loads(line)["error"] for line in said.splitlines() if line.startswith('{"error"')
        )
        assert error["code"] == "auth_required", error
        assert "present the group's internal credential" in error["message"], error
        assert '"tools"' not in refused.stdout

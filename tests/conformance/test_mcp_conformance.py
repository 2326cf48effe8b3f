"""The official MCP conformance suite (``@modelcontextprotocol/conformance``, pinned in
``package.json`` next to this file) against Sequential Thinking, Fiedler and Grace as the
processes every substrate runs, with every server scenario that applies to a server of
this kind. The suite is written against its own fixture server: the scenarios that call
its fixture items by name, or need features no MAD offers, are listed in NOT_APPLICABLE
with the reason (docs/architecture.md says the same)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import npm
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture

HERE = Path(__file__).resolve().parent
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
APPLICABLE = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
)
FIXTURE = "calls the suite's own fixture {} by name, which no MAD has"
NOT_APPLICABLE = {
    "tools-call-simple-text": FIXTURE.format("tool test_simple_text"),
    "tools-call-error": FIXTURE.format("tool test_error_handling"),
    "tools-call-image": FIXTURE.format("image tool"),
    "tools-call-audio": FIXTURE.format("audio tool"),
    "tools-call-embedded-resource": FIXTURE.format("resource tool"),
    "tools-call-mixed-content": FIXTURE.format("mixed-content tool"),
    "tools-call-with-progress": FIXTURE.format("progress tool"),
    "json-schema-2020-12": FIXTURE.format("tool json_schema_2020_12_tool"),
    "resources-read-text": FIXTURE.format("resource test://static-text"),
    "resources-read-binary": FIXTURE.format("resource test://static-binary"),
    "resources-templates-read": FIXTURE.format("resource template"),
    "prompts-get-simple": FIXTURE.format("prompt test_simple_prompt"),
    "prompts-get-with-args": FIXTURE.format("prompt test_prompt_with_arguments"),
    "prompts-get-embedded-resource": FIXTURE.format("prompt with an embedded resource"),
    "prompts-get-with-image": FIXTURE.format("prompt with an image"),
    "tools-call-with-logging": "the MADs offer no logging capability (logging/setLevel)",
    "logging-set-level": "the MADs offer no logging capability",
    "completion-complete": "the MADs offer no completions capability",
    "resources-subscribe": "the MADs offer no resources to subscribe to",
    "resources-unsubscribe": "the MADs offer no resources to subscribe to",
    "tools-call-sampling": "no MAD asks its client for sampling",
    "tools-call-elicitation": "no MAD asks its client for elicitation",
    "elicitation-sep1034-defaults": "no MAD asks its client for elicitation",
    "elicitation-sep1330-enums": "no MAD asks its client for elicitation",
    "server-sse-polling": "the MADs are stateless and answer in JSON, not SSE sessions",
    "server-sse-multiple-streams": "the MADs are stateless and answer in JSON, not SSE sessions",
}


@pytest.fixture(scope="module")
def suite() -> Path:
    return npm.installed(HERE, SUITE)


def scenarios(suite: Path) -> set[str]:
    listed = subprocess.run(
        ["node", str(suite), "list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    section = listed.split("Server scenarios", 1)[1].split("Client scenarios", 1)[0]
    return {line.strip().removeprefix("- ") for line in section.splitlines() if "- " in line}


def run(suite: Path, url: str, scenario: str, out: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        ["node", str(suite), "server", "--url", url, "--scenario", scenario, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    checks = [
        check
        for found in out.glob(f"server-{scenario}-*/checks.json")
        for check in json.loads(found.read_text())
    ]
    assert done.returncode == 0, (scenario, done.stdout[-2000:], checks)
    return checks


def test_every_scenario_is_run_or_said_why_not(suite: Path) -> None:
    known = scenarios(suite)
    assert known == set(APPLICABLE) | set(NOT_APPLICABLE), known ^ (
        set(APPLICABLE) | set(NOT_APPLICABLE)
    )


@pytest.mark.parametrize("name", ["sequential_thinking", "fiedler", "grace"])
def test_the_applicable_scenarios_pass(
    suite: Path,
    name: str,
    mad_group: ProcessGroup,
    tmp_path: Path,
) -> None:
    st = mad_group.start("sequential_thinking")
    server = st if name == "sequential_thinking" else mad_group.start(name)
    for scenario in APPLICABLE:
        checks = run(suite, f"{server.url}/mcp", scenario, tmp_path / "results")
        assert checks and all(c["status"] == "SUCCESS" for c in checks), (scenario, checks)

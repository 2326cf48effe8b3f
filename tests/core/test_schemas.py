"""What a tool publishes is what is enforced: for every tool of every MAD, the input schema
``tools/list`` publishes and the schema the argument check validates against are one
object — the SDK's own registered schema, not a copy that could drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mads.core import sdk
from mads.core.registry import contracts
from mads.core.service import MadService, build


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[MadService]:
    """Every installed MAD's service, built as ``mad-run`` builds it (nothing started)."""
    monkeypatch.setenv("REDIS_PASSWORD", "not-used-nothing-connects")
    monkeypatch.setenv("SEQUENTIAL_THINKING_URL", "http://127.0.0.1:9/mcp")
    monkeypatch.setenv("FIEDLER_DB_PATH", str(tmp_path / "fiedler_state.db"))
    built = []
    for name, contract in contracts().items():
        monkeypatch.setenv("MAD_NAME", name)
        built.append(build(contract))
    return built


async def test_the_published_schema_is_the_enforced_one(services: list[MadService]) -> None:
    checked = 0
    for service in services:
        published = {tool.name: tool for tool in await service.mcp.list_tools()}
        assert set(published) == set(service.arguments.signatures), service.name
        for name, signature in service.arguments.signatures.items():
            tool = sdk.registered_tool(service.mcp, name)
            assert tool is not None
            # One object from the SDK's registry to the validator...
            assert signature.schema is sdk.published_schema(tool), name
            assert signature.validator.schema is signature.schema, f"{name}: a copy is enforced"
            # ...and tools/list says exactly that object's content.
            assert published[name].input_schema == signature.schema, name
            checked += 1
    assert checked >= 8, f"only {checked} tools found"

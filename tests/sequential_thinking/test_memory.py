"""The history cap over 10,000 calls through the MCP tool path (in-process, to stay fast)."""

import pytest

from mads.sequential_thinking import service


@pytest.fixture
def capped(monkeypatch: pytest.MonkeyPatch):
    """The service in this process (tests.support.thinking runs it as a process)."""
    monkeypatch.setenv("SEQUENTIAL_THINKING_MAX_HISTORY", "100")
    monkeypatch.setenv("SEQUENTIAL_THINKING_MAX_BRANCHES", "10")
    return service.build()


async def test_history_cap_holds_over_ten_thousand_calls(capped) -> None:
    for n in range(1, 10_001):
        ok, data = await capped.call_tool_locally(
            "sequentialthinking",
            {
                "thought": f"step {n}",
                "thoughtNumber": n,
                "totalThoughts": 10_000,
                "nextThoughtNeeded": True,
                "branchFromThought": 1,
                "branchId": f"b{n % 50}",
            },
        )
        assert ok, data
    assert data["thoughtHistoryLength"] == 100
    assert len(data["branches"]) == 10
    report = await capped.status_report()
    assert report.lines[0].value == "100/100"

"""What each MAD's contract declares is what it serves: the gateway routes a tool the
registry lacks by its contract, so a contract that lied would send calls astray."""

from __future__ import annotations

import pytest

from mads.core.contract import MadContract
from mads.core.registry import contracts
from mads.core.service import build

ENV = {
    "REDIS_PASSWORD": "contract-test-password",
    "GRACE_API_TOKENS": "contract-test-token-0123456789",
}


@pytest.mark.parametrize("contract", list(contracts().values()), ids=lambda c: c.name)
async def test_declared_tools_are_the_served_ones(
    contract: MadContract, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    if contract.data is not None:
        monkeypatch.setenv(contract.data.variable, str(tmp_path / contract.data.filename))
    service = build(contract)
    served = {tool["name"] for tool in await service.tool_definitions()}
    assert served == set(contract.tools)


def test_no_tool_has_two_owners() -> None:
    owners: dict[str, str] = {}
    for contract in contracts().values():
        for tool in contract.tools:
            assert tool not in owners, f"{tool} is declared by {owners[tool]} and {contract.name}"
            owners[tool] = contract.name

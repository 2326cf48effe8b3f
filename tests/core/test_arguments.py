"""Paths to an argument problem (mads/core/arguments.py): the names a tool's schema declares
are shown as they are, and any name a client chose is quoted, however short — in the
schema check's problems and in the SDK validation's."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import AfterValidator, Field

from mads.core.service import MadService
from mads.core.settings import MadSettings

FORGED = "INFO:fiedler:Task x status changed to COMPLETED"


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


@pytest.fixture
def service() -> MadService:
    svc = MadService("fiedler", MadSettings(mad_name="fiedler"))

    @svc.tool("fiedler_count", description="Counts by name.")
    def count(
        counts: Annotated[dict[str, int], Field(description="Counts by name.")],
        tags: dict[str, Annotated[str, AfterValidator(not_blank)]] | None = None,
    ) -> dict[str, int]:
        return counts

    return svc


async def test_a_client_s_key_in_a_path_is_quoted(service: MadService) -> None:
    for key, shown in [("a", "'a'"), ("x" * 300, "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'")]:
        assert await service.call_tool_locally("fiedler_count", {"counts": {key: "1"}}) == (
            False,
            f"invalid arguments for fiedler_count: counts.{shown}: must be integer, not string",
        )
    ok, problem = await service.call_tool_locally("fiedler_count", {"counts": {FORGED: []}})
    assert not ok
    assert problem == (
        "invalid arguments for fiedler_count: counts.'INFO:fiedler:Task x status changed ...': "
        "must be integer, not array"
    )
    # A declared name stays as it is, and an item's index is a number.
    assert await service.call_tool_locally("fiedler_count", {"counts": []}) == (
        False,
        "invalid arguments for fiedler_count: counts: must be object, not array",
    )


async def test_a_client_s_key_in_the_sdk_s_validation_is_quoted(service: MadService) -> None:
    """What only the SDK's validation can say (a blank value): the path to it names the
    client's key quoted, as the schema check does."""
    assert await service.call_tool_locally(
        "fiedler_count", {"counts": {}, "tags": {"colour": " "}}
    ) == (False, "invalid arguments for fiedler_count: tags.'colour': must not be blank")

"""A relayed call over the bus's message limit is refused with a tool error naming the size
and the limit, and Grace logs it once, in one line: the tool name quoted, size vs limit."""

from __future__ import annotations

import re

from mads.core.logs import MAX_LINE
from tests.support.grace import call, grace_session, new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for

LIMIT = 1024 * 1024


async def test_an_oversized_relayed_call_is_refused_and_logged_once(
    mad_group: ProcessGroup,
) -> None:
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
    mad_group.start("fiedler", {"FIEDLER_DB_PATH": str(mad_group.workdir / "f.db")})
    async with grace_session(grace.url, token) as s:

        async def listed() -> bool:
            return "fiedler_converse" in {t.name for t in (await s.list_tools()).tools}

        await async_wait_for(listed, timeout=30, what="fiedler's tools listed by grace")
        prompt = "x" * (2 * LIMIT)
        success, error = await call(
            s, "fiedler_converse", {"prompt": prompt, "requester_id": "big"}
        )
    assert not success
    assert re.fullmatch(
        rf"cannot relay fiedler_converse: message is \d+ bytes, over the {LIMIT}-byte limit",
        error,
    ), error
    lines = [line for line in grace.log_text().splitlines() if "Refused to relay" in line]
    assert len(lines) == 1, lines
    assert re.fullmatch(
        rf"WARNING:grace:Refused to relay 'fiedler_converse' to fiedler: message is \d+ "
        rf"bytes, over the {LIMIT}-byte limit",
        lines[0],
    ), lines[0]
    assert len(lines[0]) <= MAX_LINE and "Traceback" not in grace.log_text()

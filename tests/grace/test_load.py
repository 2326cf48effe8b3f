"""Load: 1,000 messages per second for 10 s through grace_send_message (MCP ``tools/call``,
bearer token); Rogers' count of topic traffic must match exactly what Grace accepted.

MADGROUP_LOAD_RATE sets another rate; the assertions are the same at any rate.
"""

import os

from mads.core.mcp_client import result_data, session
from tests.grace.load import paced_send
from tests.support.grace import new_token
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for

RATE = float(os.environ.get("MADGROUP_LOAD_RATE", "1000"))
SECONDS = 10.0


async def topic_count(rogers_url: str) -> int:
    async with session(f"{rogers_url}/mcp") as s:
        stats = result_data(await s.call_tool("rogers_get_stats", {}))
    return int(stats["by_channel_class"]["topic"])


async def test_rogers_counts_every_message_sent_through_grace(mad_group: ProcessGroup) -> None:
    token = new_token()
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace", {"GRACE_API_TOKENS": token})
    rogers = mad_group.start("rogers")
    before = await topic_count(rogers.url)

    result = await paced_send(grace.url, token, rate=RATE, seconds=SECONDS)
    print(
        f"\nload: {result.sent} sent in {result.seconds:.1f} s = {result.rate:.0f}/s "
        f"(target {RATE:g}/s), {result.failed} failed"
    )
    assert result.errors == []
    assert result.sent == int(RATE * SECONDS)
    # The rate achieved is printed, not asserted (a busy machine is slower, not wrong);
    # bench/calls.py measures the ceiling.

    async def settled() -> bool:
        return await topic_count(rogers.url) - before >= result.sent

    await async_wait_for(settled, timeout=30, interval=0.5, what="rogers to count the load")
    assert await topic_count(rogers.url) - before == result.sent
    assert "Traceback" not in rogers.log_text()
    # Summarised, not flooded: one plain line for the pair (the client-named channel
    # quoted), then counts per interval.
    plain = "[Metrics] Received message from sender: grace on channel: 'mad.topic.load'"
    assert rogers.log_text().count(plain) <= 2

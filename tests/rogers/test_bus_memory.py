"""Rogers reads Redis's memory against its maxmemory from the real server: /metrics carries
both figures (what the MadBusMemory alerts divide), and its log says once when the data
passes 80% of the limit and once when it is back under."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import wait_for

HIGH = "of its maxmemory of"
LOW = "under 80% of its maxmemory again"


def memory_metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("rogers_bus_memory_")
    }


def test_rogers_reports_redis_memory_and_warns_before_the_limit(mad_group: ProcessGroup) -> None:
    mad_group.start("sequential_thinking")
    rogers = mad_group.start("rogers")
    seen = wait_for(
        lambda: memory_metrics(rogers.url) or None, timeout=30, what="Rogers' memory metrics"
    )
    assert seen["rogers_bus_memory_max_bytes"] == 0  # the test's Redis: no limit yet
    assert HIGH not in rogers.log_text()

    admin = mad_group.redis.client()
    used = int(admin.info("memory")["used_memory"])
    limit = int(used / 0.85)  # the data takes 85% of it: past the warning, not the limit
    admin.config_set("maxmemory", limit)
    seen = wait_for(
        lambda: (m := memory_metrics(rogers.url))["rogers_bus_memory_max_bytes"] == limit and m,
        timeout=30,
        what="Rogers to read the new limit",
    )
    assert 0 < seen["rogers_bus_memory_used_bytes"] < limit
    wait_for(lambda: HIGH in rogers.log_text(), timeout=30, what="the warning")
    (warning,) = [line for line in rogers.log_text().splitlines() if HIGH in line]
    assert warning.startswith("WARNING:rogers:Redis holds ")
    assert "refuses writes (noeviction)" in warning

    admin.config_set("maxmemory", limit * 10)
    wait_for(lambda: LOW in rogers.log_text(), timeout=30, what="back under the limit")
    assert memory_metrics(rogers.url)["rogers_bus_memory_max_bytes"] == limit * 10
    assert rogers.log_text().count(HIGH) == 1

"""The connections table, the traffic counts and the summarising traffic log, in-process
with controlled clocks."""

import logging
from datetime import UTC, datetime

import pytest

from mads.rogers.connections import DISCONNECTED, HEALTHY, STALE, ConnectionTable
from mads.rogers.stats import OTHER_SENDER, TrafficStats
from mads.rogers.traffic_log import TrafficLog


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_status_follows_missed_heartbeat_periods() -> None:
    clock = Clock()
    table = ConnectionTable(2.0, monotonic=clock, wall=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    table.saw("grace")
    assert table.status_of("grace") == HEALTHY
    clock.now += 6.0  # exactly 3 periods: still healthy
    assert table.status_of("grace") == HEALTHY
    clock.now += 0.01
    assert table.status_of("grace") == STALE
    assert table.transitions() == [("grace", HEALTHY, STALE)]
    clock.now += 18.0  # past 12 periods
    assert table.status_of("grace") == DISCONNECTED
    table.saw("grace")
    assert table.status_of("grace") == HEALTHY
    assert table.transitions() == [("grace", STALE, HEALTHY)]
    view = table.snapshot()[0]
    assert view["mad_id"] == "grace"
    assert view["last_heartbeat"] == "2025-01-01T00:00:00.000Z"


def test_table_is_bounded_and_evicts_the_longest_silent() -> None:
    clock = Clock()
    table = ConnectionTable(1.0, max_entries=3, monotonic=clock)
    for name in ("a", "b", "c"):
        table.saw(name)
        clock.now += 1
    table.saw("a")
    table.saw("d")
    assert sorted(c["mad_id"] for c in table.snapshot()) == ["a", "c", "d"]


def test_stats_totals_windows_rate_and_sender_cap() -> None:
    clock = Clock(start=3600.0 * 1000)
    stats = TrafficStats(max_senders=2, retention_h=2, clock=clock)
    for _ in range(10):
        stats.record("grace", "topic")
    clock.now += 2 * 3600  # two hours later
    for sender in ("rogers", "fiedler", "mallory"):
        stats.record(sender, "system")
    stats.record_malformed()
    everything = stats.summary()
    assert everything["total_messages"] == 13
    assert everything["by_sender"] == {"grace": 10, "rogers": 1, OTHER_SENDER: 2}
    assert everything["by_channel_class"]["topic"] == 10
    assert everything["by_channel_class"]["system"] == 3
    assert everything["malformed_messages"] == 1
    recent = stats.summary(hours=1)
    assert recent["total_messages"] == 3
    assert recent["by_channel_class"]["topic"] == 0
    assert recent["rate_per_s"] == pytest.approx(3 / 60)


def test_traffic_log_summarises_instead_of_flooding(caplog: pytest.LogCaptureFixture) -> None:
    log = TrafficLog(logging.getLogger("rogers"), interval_s=10, max_pairs=2)
    with caplog.at_level(logging.INFO, logger="rogers"):
        for _ in range(1000):
            log.saw("fiedler", "mad.fiedler.task.status")
        log.saw("grace", "mad.topic.a")
        log.saw("grace", "mad.topic.b")  # over the pair cap
        log.flush()
        log.saw("fiedler", "mad.fiedler.task.status")  # a new interval logs it plainly again
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "[Metrics] Received message from sender: fiedler on channel: mad.fiedler.task.status",
        "[Metrics] Received message from sender: grace on channel: 'mad.topic.a'",
        "[Metrics] Received 999 more message(s) from sender: fiedler on channel: "
        "mad.fiedler.task.status in the last 10 s",
        "[Metrics] Received 1 message(s) on further sender/channel pairs in the last 10 s",
        "[Metrics] Received message from sender: fiedler on channel: mad.fiedler.task.status",
    ]

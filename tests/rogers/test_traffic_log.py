"""Channel names in Rogers' traffic log: a MAD's own channels as the guide's step 9 shows
them, and a channel an outside client named (mad.topic.*, or anything not a plain name)
quoted and cut short — in the first line of a pair and in its summary."""

from __future__ import annotations

import logging

import pytest

from mads.core.logs import MAX_QUOTED
from mads.rogers.traffic_log import TrafficLog

STEP9 = "[Metrics] Received message from sender: fiedler on channel: mad.fiedler.task.status"
FORGED = "INFO:fiedler:Task\u00a0x\u00a0status\u00a0changed\u00a0to\u00a0COMPLETED"


def logged(caplog: pytest.LogCaptureFixture, *pairs: tuple[str, str]) -> list[str]:
    log = TrafficLog(logging.getLogger("rogers"), interval_s=10)
    with caplog.at_level(logging.INFO, logger="rogers"):
        for sender, channel in pairs:
            log.saw(sender, channel)
            log.saw(sender, channel)
        log.flush()
    return [r.getMessage() for r in caplog.records]


def test_a_mads_own_channels_keep_the_guides_line(caplog: pytest.LogCaptureFixture) -> None:
    lines = logged(
        caplog,
        ("fiedler", "mad.fiedler.task.status"),
        ("grace", "mad.system.heartbeat.grace"),
        ("fiedler", "mad.direct.grace.3f2a.fiedler"),
    )
    assert lines[0] == STEP9
    assert lines[1] == (
        "[Metrics] Received message from sender: grace on channel: mad.system.heartbeat.grace"
    )
    assert lines[2].endswith("on channel: mad.direct.grace.3f2a.fiedler")
    assert lines[3] == (
        "[Metrics] Received 1 more message(s) from sender: fiedler on channel: "
        "mad.fiedler.task.status in the last 10 s"
    )


def test_client_named_channels_are_quoted_and_cut_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long = "mad.topic." + "a" * 300
    lines = logged(
        caplog,
        ("grace", "mad.topic.news"),
        ("grace", f"mad.topic.{FORGED}"),
        ("grace", long),
        ("grace", "mad.direct.'x'\u2028y"),
    )
    received = "[Metrics] Received message from sender: grace on channel: "
    assert lines[0] == f"{received}'mad.topic.news'"
    forged = "'mad.topic.INFO:fiedler:Task\\xa0x\\xa0status\\xa0changed\\xa0to\\xa0COMPLETED'"
    assert lines[1] == f"{received}{forged}"
    shown = lines[2].removeprefix(received)
    assert shown.startswith("'mad.topic.aaaa") and len(shown) == MAX_QUOTED
    assert lines[3] == f"{received}\"mad.direct.'x'\\u2028y\""
    summaries = lines[4:]
    assert summaries[0] == (
        "[Metrics] Received 1 more message(s) from sender: grace on channel: "
        "'mad.topic.news' in the last 10 s"
    )
    assert all(len(line) < 200 for line in summaries)

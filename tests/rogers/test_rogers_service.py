"""Rogers as a real process on a real Redis: status block, connections, stats rising while
the group idles, malformed traffic, the traffic log and /metrics."""

import json

import httpx

from mads.core.envelope import make_envelope
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import wait_for

ROGERS_BLOCK = """[RogersV1 Status]
- MAD Name: rogers
- Status: HEALTHY
- Conversation Bus Connected: True
- Sequential Thinking Connected: True
"""


def cli_json(mad, tool: str, arguments: str = "{}") -> dict:
    done = mad.cli("mad-cli", tool, arguments)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_rogers_monitors_the_bus(mad_group: ProcessGroup) -> None:
    mad_group.start("sequential_thinking")
    rogers = mad_group.start("rogers")

    status = rogers.cli("mad-status")
    assert status.returncode == 0, status.stderr
    assert status.stdout == ROGERS_BLOCK
    log = rogers.log_text()
    assert "INFO:rogers:Successfully connected to Rogers Conversation Bus (Redis)" in log
    assert "INFO:rogers:Successfully connected to Sequential Thinking MCP server" in log

    # It hears itself: its own heartbeat is a valid envelope on mad.*.
    def rogers_listed() -> dict | None:
        reply = cli_json(rogers, "rogers_get_connections")
        return reply if any(c["mad_id"] == "rogers" for c in reply["connections"]) else None

    reply = wait_for(rogers_listed, timeout=15, what="rogers in its own table")
    assert reply["status"] == "success"
    entry = reply["connections"][0]
    assert set(entry) >= {"mad_id", "status", "last_heartbeat"}
    assert entry["status"] == "HEALTHY"
    assert entry["last_heartbeat"].endswith("Z")

    # guide 5.2.1: total_messages rises between two calls while the group idles.
    first = cli_json(rogers, "rogers_get_stats")["total_messages"]
    wait_for(
        lambda: cli_json(rogers, "rogers_get_stats")["total_messages"] > first,
        timeout=15,
        what="total_messages to rise",
    )

    # A sender publishing straight into Redis; and junk that is not an envelope.
    client = mad_group.redis.client()
    envelope = make_envelope("fiedler", "mad.fiedler.task.status", {"status": "RUNNING"})
    client.publish("mad.fiedler.task.status", envelope.model_dump_json())
    for _ in range(5):
        client.publish("mad.topic.junk", b"not json at all")
    client.publish("mad.topic.junk2", json.dumps({"sender_id": "x"}))

    def counted() -> dict | None:
        stats = cli_json(rogers, "rogers_get_stats", '{"hours": 1}')
        ok = stats["malformed_messages"] == 6 and stats["by_sender"].get("fiedler") == 1
        return stats if ok else None

    stats = wait_for(counted, timeout=15, what="fiedler and the junk to be counted")
    assert stats["by_channel_class"]["other"] == 1
    assert stats["by_channel_class"]["system"] >= 1
    assert stats["window_hours"] == 1

    log = rogers.log_text()
    assert (
        "INFO:rogers:[Metrics] Received message from sender: fiedler on channel: "
        "mad.fiedler.task.status" in log
    )
    # malformed traffic is logged once per channel, and the monitor keeps going
    assert log.count("malformed message on channel 'mad.topic.junk'") == 1
    assert log.count("malformed message on channel 'mad.topic.junk2'") == 1
    connections = cli_json(rogers, "rogers_get_connections")["connections"]
    assert {c["mad_id"] for c in connections} == {"rogers", "fiedler"}

    metrics = httpx.get(rogers.url + "/metrics", timeout=5).text
    assert 'rogers_messages_by_sender_total{sender="fiedler"} 1.0' in metrics
    assert "rogers_malformed_messages_total 6.0" in metrics
    assert 'rogers_connections{status="HEALTHY"}' in metrics

    # A bad argument is refused with one clear line, not a traceback.
    bad = rogers.cli("mad-cli", "rogers_get_stats", '{"hours": -1}')
    assert bad.returncode == 1
    assert "hours" in bad.stderr and "Traceback" not in bad.stderr

"""Guide step 7 with the whole group as real processes: rogers_get_connections lists grace
and fiedler HEALTHY; grace killed with SIGKILL turns STALE within 3 heartbeat periods; after
a restart it is HEALTHY again."""

import json

from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import wait_for

HEARTBEAT_S = 0.5  # what tests.support.mad_process gives every MAD


def connections(rogers) -> dict[str, dict]:
    done = rogers.cli("mad-cli", "rogers_get_connections")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["status"] == "success"
    return {c["mad_id"]: c for c in reply["connections"]}


def test_step7_connections_follow_grace(mad_group: ProcessGroup) -> None:
    mad_group.start("sequential_thinking")
    grace = mad_group.start("grace")
    rogers = mad_group.start("rogers")
    mad_group.start("fiedler")

    def both_healthy() -> dict | None:
        table = connections(rogers)
        ok = all(table.get(m, {}).get("status") == "HEALTHY" for m in ("grace", "fiedler"))
        return table if ok else None

    table = wait_for(both_healthy, timeout=20, what="grace and fiedler HEALTHY")
    assert set(table["grace"]) >= {"mad_id", "status", "last_heartbeat"}

    grace.kill()  # SIGKILL: no goodbye on the bus
    # A generous deadline: the 3-missed-beats rule itself is tested with a fake clock
    # (tests/rogers/test_tables.py); here the outcome is what counts.
    wait_for(
        lambda: connections(rogers)["grace"]["status"] == "STALE",
        timeout=60,
        what="grace STALE",
    )
    assert connections(rogers)["fiedler"]["status"] == "HEALTHY"

    grace.start()
    wait_for(
        lambda: connections(rogers)["grace"]["status"] == "HEALTHY",
        timeout=20,
        what="grace HEALTHY after restart",
    )
    assert "INFO:rogers:MAD grace is now STALE (was HEALTHY)" in rogers.log_text()

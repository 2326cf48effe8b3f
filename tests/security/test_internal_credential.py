"""No way around the front door, on the local runner: Sequential Thinking, Rogers and
Fiedler answer MCP only to requests bearing the group's internal credential (401 for any
other local process), while probes, ``mad-status``, ``mad-cli`` and the guide's checks
(``madgroup smoke``) work as written, and Grace serves outside clients as before."""

from __future__ import annotations

import httpx
from madgroup import topology
from madgroup.local import envfile
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from tests.support.local_group import Group
from tests.support.local_group import group as group  # the fixture

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": LATEST_HANDSHAKE_VERSION,
}
BEHIND_GRACE = ("sequential_thinking", "rogers", "fiedler")


def test_internal_mads_refuse_callers_without_the_groups_credential(group: Group) -> None:
    grace_token = "grace-token-" + envfile.new_password()
    said = group.mg("init").stdout
    assert "MAD_INTERNAL_TOKEN" in said
    group.write_env(f"GRACE_API_TOKENS={grace_token}\n")
    internal = envfile.load(group.root / ".env")["MAD_INTERNAL_TOKEN"]
    group.up()
    assert {c.name for c in topology.COMPONENTS if topology.needs_internal_token(c)} == set(
        BEHIND_GRACE
    )
    with httpx.Client(timeout=10) as http:
        for name in BEHIND_GRACE:
            base = f"http://127.0.0.1:{group.port(name)}"
            for headers in ({}, {"Authorization": "Bearer not-the-credential-0123456789"}):
                refused = http.post(f"{base}/mcp", json=LIST_TOOLS, headers={**HEADERS, **headers})
                assert refused.status_code == 401, (name, refused.text)
                assert "internal credential" in refused.json()["error"]
                assert internal not in refused.text
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "fiedler_list_tasks", "arguments": {}},
            }
            assert http.post(f"{base}/mcp", json=call, headers=HEADERS).status_code == 401
            allowed = http.post(
                f"{base}/mcp",
                json=LIST_TOOLS,
                headers={**HEADERS, "Authorization": f"Bearer {internal}"},
            )
            assert allowed.status_code == 200, (name, allowed.text)
            assert http.get(f"{base}/readyz").status_code == 200
            assert http.get(f"{base}/status").status_code == 200  # loopback: mad-status
        grace = http.post(
            f"http://127.0.0.1:{group.port('grace')}/mcp",
            json=LIST_TOOLS,
            headers={**HEADERS, "Authorization": f"Bearer {grace_token}"},
        )
        assert grace.status_code == 200 and "fiedler_converse" in grace.text
        metrics = http.get(f"http://127.0.0.1:{group.port('fiedler')}/metrics").text
    assert "mad_internal_refusals_total 3.0" in metrics
    smoke = group.mg("smoke", timeout=180)
    assert "FAIL" not in smoke.stdout, smoke.stdout
    status = group.mg("exec", "fiedler", "mad-status")
    assert "FiedlerV1" in status.stdout
    log = group.log("fiedler")
    assert log.count("without the group's internal credential") == 1
    assert internal not in log

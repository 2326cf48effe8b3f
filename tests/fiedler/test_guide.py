"""The guide's steps 6, 8 and 9 for Fiedler, word for word, through the real CLIs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from tests.support.fiedler import Fiedler
from tests.support.group import ProcessGroup
from tests.support.waiting import wait_for

STATUS_BLOCK = """[FiedlerV1 Status]
- MAD Name: fiedler
- Status: HEALTHY
- Conversation Bus Connected: True
- Sequential Thinking Connected: True
- Database Status: OK"""

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_step_6_logs_and_status_block(
    start_fiedler: Callable[..., Fiedler], group: ProcessGroup
) -> None:
    fiedler = start_fiedler()
    for line in (
        "Successfully connected to Rogers Conversation Bus (Redis)",
        "Successfully connected to Sequential Thinking MCP server",
        f"Initialized SQLite state database at {fiedler.db_path}...",
    ):
        assert line in fiedler.process.log_text()
    status = fiedler.process.cli("mad-status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == STATUS_BLOCK
    assert fiedler.db_path.exists()
    assert group.redis.password not in fiedler.process.log_text() + status.stdout


def test_step_8_smoke_test_and_step_9_log_lines(start_fiedler: Callable[..., Fiedler]) -> None:
    fiedler = start_fiedler()
    created = fiedler.process.cli(
        "mad-cli",
        "fiedler_converse",
        '{"prompt": "System check, please respond with OK.", "requester_id": "ops-team"}',
    )
    assert created.returncode == 0, created.stderr
    reply = json.loads(created.stdout)
    assert list(reply) == ["status", "task_id", "stream_topic"]
    assert reply["status"] == "pending"
    task_id = reply["task_id"]
    assert re.fullmatch(UUID, task_id)
    assert reply["stream_topic"] == f"mad.stream.{task_id}"

    def terminal() -> dict[str, object] | None:
        result = fiedler.process.cli(
            "mad-cli", "fiedler_get_task_status", json.dumps({"task_id": task_id})
        )
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        return status if status["status"] in ("COMPLETED", "FAILED") else None

    status = wait_for(terminal, timeout=30, interval=0.2, what="the smoke-test task to finish")
    assert {k: status[k] for k in ("task_id", "status", "prompt", "result_payload")} == {
        "task_id": task_id,
        "status": "COMPLETED",
        "prompt": "System check, please respond with OK.",
        "result_payload": "OK",
    }
    assert status["error_details"] is None
    assert status["created_at"] <= status["updated_at"]

    log = fiedler.process.log_text().splitlines()
    expected = [
        f"INFO:fiedler:Received new task {task_id}",
        f"INFO:fiedler:Task {task_id} status changed to RUNNING",
        f"INFO:fiedler:Task {task_id} status changed to COMPLETED",
    ]
    positions = [log.index(line) for line in expected]
    assert positions == sorted(positions)
    assert fiedler.rows() == 1

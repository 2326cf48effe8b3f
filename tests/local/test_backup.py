"""``madgroup backup`` / ``restore`` on the local runner, as the issue asks: a backup taken
while 200 tasks are being written, ``down --volumes``, restore, ``up`` — every task that was
COMPLETED before the backup began is back with its result, and so is Redis's data; a
truncated or foreign archive, or a restore while the group runs, is refused with one line
and changes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import tarfile
import threading
from pathlib import Path

import redis
from madgroup.local import envfile

from mads.core.mcp_client import session
from tests.support.local_group import Group
from tests.support.waiting import wait_for

TASKS = 200
SMOKE_PROMPT = "System check, please respond with OK."  # what the built-in responder answers


def completed(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT task_id, result_payload FROM tasks WHERE status = 'COMPLETED'"
        ).fetchall()
    finally:
        conn.close()
    return {str(task_id): str(result) for task_id, result in rows}


class Writer(threading.Thread):
    """200 fiedler_converse calls straight to Fiedler, 10 at a time: the first half, then
    (once ``go_on`` is set, as the backup starts) the second half."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.accepted = 0
        self.errors: list[str] = []
        self.half_done = threading.Event()
        self.go_on = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._write())
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))

    async def _write(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with session(self.url, headers=headers, timeout=120) as s:
            limit = asyncio.Semaphore(10)

            async def one(n: int) -> None:
                arguments = {"prompt": SMOKE_PROMPT, "requester_id": f"backup-{n}"}
                async with limit:
                    reply = await s.call_tool("fiedler_converse", arguments)
                if reply.is_error:
                    self.errors.append(str(reply.content))
                else:
                    self.accepted += 1

            await asyncio.gather(*(one(n) for n in range(TASKS // 2)))
            self.half_done.set()
            await asyncio.to_thread(self.go_on.wait, 60)
            await asyncio.gather(*(one(n) for n in range(TASKS // 2, TASKS)))


def test_backup_restore_round_trip(group: Group, tmp_path: Path) -> None:
    group.mg("init")
    group.up()
    dotenv = envfile.load(group.root / ".env")
    bus = redis.Redis(port=group.port("redis"), password=group.password())
    bus.set("madgroup-backup-marker", "kept")
    db = group.state_dir / "data" / "fiedler" / "fiedler_state.db"

    writer = Writer(f"http://127.0.0.1:{group.port('fiedler')}/mcp", dotenv["MAD_INTERNAL_TOKEN"])
    writer.start()
    assert writer.half_done.wait(60) and writer.errors == []
    wait_for(lambda: len(completed(db)) >= 20, timeout=60, what="tasks completing")
    before = completed(db)  # COMPLETED before the backup began
    writer.go_on.set()  # the second half is written while the backup runs
    archive = tmp_path / "group.tar.gz"
    taken = group.mg("backup", "-o", str(archive))
    assert f"wrote {archive}" in taken.stdout and "fiedler/fiedler_state.db" in taken.stdout
    writer.join(timeout=120)
    assert not writer.is_alive() and writer.errors == [] and writer.accepted == TASKS
    assert len(before) < TASKS

    running = group.mg("restore", str(archive), check=False)
    assert running.returncode != 0 and "stop it first" in running.stderr

    group.mg("down", "--volumes", "--yes")
    assert not db.exists()

    # Refused archives: nothing is changed.
    data = archive.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        tar.add(group.root / ".env.example", arcname="something/else.txt")
    for bad, said in ((truncated, "cannot be read to its end"), (foreign, "not a madgroup backup")):
        refused = group.mg("restore", str(bad), check=False)
        assert refused.returncode == 2, refused
        assert said in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert "Traceback" not in refused.stderr
        assert not db.exists()

    restored = group.mg("restore", str(archive))
    assert "madgroup up" in restored.stdout
    group.up()
    after = completed(db)
    missing = {task_id for task_id in before if after.get(task_id) != before[task_id]}
    assert not missing, f"{len(missing)} of {len(before)} completed tasks lost"
    bus = redis.Redis(port=group.port("redis"), password=group.password())
    assert bus.get("madgroup-backup-marker") == b"kept"
    assert "FAIL" not in group.mg("smoke", timeout=180).stdout

"""``madgroup up -f`` with Fiedler's tasks in a real PostgreSQL and ``fiedler.replicas: 2``:
two Fiedler processes, each on a port and with a log of its own, both Ready and counted as
the component's replicas; the guide's checks pass (a converse completes, the task is in
PostgreSQL); one process killed is restarted on its own while the other serves; backup and
report copy none of the database and say so; the URI's password is in no file the runner
writes."""

from __future__ import annotations

import json
import os
import signal
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from madgroup.local import ports, readiness

from tests.support.local_group import Group
from tests.support.postgres import PostgresServer, require
from tests.support.sample import sample_with
from tests.support.waiting import wait_for

URI_KEY = "FIEDLER_TASKS_URI"
"""The ``.env`` variable the declaration reads the store's URI from (``uriSecretRef.key``)."""


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    require()
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_two_fiedler_processes_share_postgresql_and_the_group_passes_the_guides_checks(
    group: Group, postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.create_database()
    store = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app", "key": URI_KEY}}
    path = sample_with(tmp_path, {"fiedler": {"replicas": 2, "store": store}})
    group.mg("init")
    group.write_env(f"{URI_KEY}={postgres.uri(database)}\n")
    group.up("-f", str(path), timeout=240)

    components = group.state()["components"]
    first, second = components["fiedler"], components["fiedler-2"]
    assert first["phase"] == second["phase"] == "ready"
    assert second["component"] == "fiedler"
    assert second["port"] == first["port"] + ports.REPLICA_STEP
    assert first["pid"] != second["pid"]
    for process in (first, second):
        assert readiness.http_ready(process["port"])
    location = f"127.0.0.1/{database}"
    for log in ("fiedler", "fiedler-2"):
        wait_for(
            lambda log=log: f"Initialized PostgreSQL task store at {location}" in group.log(log),
            timeout=30,
            what=f"{log}'s store line",
        )
        assert "SQLite" not in group.log(log)
    assert not (group.state_dir / "data" / "fiedler" / "fiedler_state.db").exists()

    status = group.mg("status").stdout
    assert "FiedlerReady" in status and "2/2 replicas ready" in status
    assert [line.split()[0] for line in status.splitlines() if line.startswith("fiedler")] == [
        "fiedler",
        "fiedler-2",
    ]

    smoke = group.mg("smoke", timeout=240)
    assert "FAIL" not in smoke.stdout, smoke.stdout
    with postgres.connect(database) as conn:
        done = conn.execute("SELECT count(*) FROM tasks WHERE status = 'COMPLETED'").fetchone()
    assert done is not None and done[0] >= 1

    # One process dies: the supervisor restarts it on its own port; the other keeps serving.
    os.kill(second["pid"], signal.SIGKILL)
    restarted = wait_for(
        lambda: (
            (c := group.state()["components"]["fiedler-2"])["phase"] == "ready"
            and c["pid"] != second["pid"]
            and c
        ),
        timeout=60,
        interval=0.2,
        what="fiedler-2 restarted and ready",
    )
    assert restarted["port"] == second["port"] and restarted["restarts"] == 1
    assert group.state()["components"]["fiedler"]["pid"] == first["pid"]

    # Backup and report: none of the database, and they say where it is.
    archive = tmp_path / "backup.tar.gz"
    taken = group.mg("backup", "-o", str(archive)).stdout.splitlines()
    assert taken[0].startswith(f"wrote {archive}: redis/dump.rdb")
    assert taken[-1].startswith("not included: fiedler's data is in PostgreSQL")
    with tarfile.open(archive) as tar:
        names = [m.name.split("/", 1)[1] for m in tar if m.isfile()]
    assert sorted(names) == ["manifest.json", "redis/dump.rdb"]
    bundle = tmp_path / "report.tar.gz"
    reported = group.mg("report", "-o", str(bundle)).stdout
    assert "  not included: fiedler's data is in PostgreSQL" in reported
    with tarfile.open(bundle) as tar:
        parts = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
    manifest = json.loads(parts["manifest.json"])
    assert set(manifest["not_included"]) == {"fiedler"}
    assert {"fiedler/log.txt", "fiedler-2/log.txt", "fiedler-2/status.json"} <= set(parts)

    # The password is in .env only: not in a report, nor anything the runner wrote.
    written = {str(p): p.read_bytes() for p in group.state_dir.rglob("*") if p.is_file()} | {
        "the report": b"".join(parts.values()),
        "status": status.encode(),
    }
    for where, data in written.items():
        assert postgres.password.encode() not in data, f"the store's password is in {where}"

    group.mg("down")
    assert not readiness.http_ready(first["port"]) and not readiness.http_ready(second["port"])

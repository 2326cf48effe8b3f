"""``spec.backup``: the CronJob the operator renders, and its two commands run for real here
against a running Redis and a live SQLite store (what the pod's containers run), then the
documented restore (``python -m madgroup.backup restore``) into empty data directories:
the tasks and Redis's data come back."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from madgroup import topology
from madgroup.kube import backups, crd, naming, objects
from madgroup.resolved import resolve

from tests.support.redis_server import RedisServer

OWNER = objects.Owner("demo", "team-a", "0000-1111")
BACKUP = {"schedule": "15 2 * * *", "retention": 2, "claimName": "madgroup-backups"}
DEFAULT = crd.parse({})
DEFAULT_GROUP = resolve(DEFAULT)


def cron_job(raw: dict | None = None) -> dict:
    spec = crd.parse({"backup": BACKUP, **(raw or {})})
    keeper = backups.keeper()
    assert keeper is not None and keeper.name == "fiedler"
    (job,) = [
        m
        for m in objects.component_objects(OWNER, spec, resolve(spec).of(keeper.name))
        if m["kind"] == "CronJob"
    ]
    return job


def test_no_backup_without_spec_backup() -> None:
    for name in topology.COMPONENT_NAMES:
        kinds = {
            m["kind"] for m in objects.component_objects(OWNER, DEFAULT, DEFAULT_GROUP.of(name))
        }
        assert "CronJob" not in kinds


def test_the_cron_job() -> None:
    job = cron_job()
    assert job["metadata"]["name"] == "demo-backup"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
    assert job["spec"]["schedule"] == "15 2 * * *"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]
    # The group's NetworkPolicy admits only the group's pods: this one is one of them.
    policy = objects.network_policy(OWNER)
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= pod["metadata"]["labels"].items()
    # Beside Fiedler (its volume is ReadWriteOnce), mounting Fiedler's claim and the target.
    (term,) = pod["spec"]["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["labelSelector"]["matchLabels"] == naming.selector_labels("demo", "fiedler")
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"data-demo-fiedler-0", "madgroup-backups"}
    (init,) = pod["spec"]["initContainers"]
    (main,) = pod["spec"]["containers"]
    assert (
        init["image"]
        == objects.workload(OWNER, DEFAULT, DEFAULT_GROUP.of("redis"))["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]
    )
    assert init["env"] == [
        {
            "name": "REDISCLI_AUTH",
            "valueFrom": {"secretKeyRef": {"name": "demo-redis-password", "key": "password"}},
        }
    ]
    assert "demo-redis" in init["command"] and "--rdb" in init["command"]
    assert main["command"][:4] == ["python", "-m", "madgroup.backup", "archive"]
    assert main["command"][-2:] == ["--keep", "2"]
    for container in (init, main):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_with_tls_the_snapshot_is_taken_over_tls() -> None:
    pod = cron_job({"tls": {"enabled": True}})["spec"]["jobTemplate"]["spec"]["template"]
    (init,) = pod["spec"]["initContainers"]
    assert "--tls" in init["command"] and "--cacert" in init["command"]
    ca = init["command"][init["command"].index("--cacert") + 1]
    assert any(ca.startswith(m["mountPath"]) for m in init["volumeMounts"])


def python_module(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m madgroup.backup ...`` as the image runs it, with this tree importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def _local(command: list[str], paths: dict[str, str], host: str, port: int) -> list[str]:
    """The container's command with this machine's paths, host and port."""
    out = []
    for word in command:
        for inside, here in paths.items():
            word = word.replace(inside, here)
        out.append(word)
    if "-h" in out:
        out[out.index("-h") + 1] = host
        out[out.index("-p") + 1] = str(port)
    return out


def _run_job(
    pod: dict, paths: dict[str, str], redis_server: RedisServer
) -> subprocess.CompletedProcess[str]:
    """The backup Job's two containers run here, one after the other: the snapshot (its
    init container, against ``redis_server``), then the archive. Returns the archive's run;
    a failed step fails the test."""
    (init,) = pod["spec"]["initContainers"]
    (main,) = pod["spec"]["containers"]
    env = {**os.environ, "REDISCLI_AUTH": redis_server.password}
    snap = subprocess.run(
        _local(init["command"], paths, "127.0.0.1", redis_server.port),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert snap.returncode == 0, snap.stderr
    archive_cmd = _local(main["command"], paths, "", 0)
    archive_cmd[0] = sys.executable
    done = python_module(archive_cmd)
    assert done.returncode == 0, done.stderr
    return done


def test_the_jobs_commands_back_up_and_the_documented_restore_restores(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is not installed (Debian: apt-get install redis-tools)")
    pod = cron_job()["spec"]["jobTemplate"]["spec"]["template"]
    work, data, archives = tmp_path / "work", tmp_path / "data", tmp_path / "backups"
    for d in (work, data, archives):
        d.mkdir()
    paths = {backups.WORK: str(work), backups.DATA: str(data), backups.ARCHIVES: str(archives)}
    db = data / "fiedler_state.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY, status TEXT, result_payload TEXT)")
    conn.executemany(
        "INSERT INTO tasks VALUES (?, 'COMPLETED', 'OK')", [(f"t{i}",) for i in range(50)]
    )
    conn.commit()  # and left open: Fiedler writes on while the backup runs
    redis_server.client().set("kept-by-the-backup", "yes")

    for _ in range(3):  # three runs: retention 2 keeps the newest two
        _run_job(pod, paths, redis_server)
        conn.execute("INSERT INTO tasks VALUES (?, 'COMPLETED', 'later')", (f"late{_}",))
        conn.commit()
        (archives / "stamp").write_text(str(_))  # not an archive: never pruned
    conn.close()
    kept = sorted(archives.glob("madgroup-backup-*.tar.gz"))
    assert len(kept) == 2, kept

    # The documented restore, into empty data directories.
    fiedler_dir, redis_dir = tmp_path / "restored-fiedler", tmp_path / "restored-redis"
    restore = [
        sys.executable,
        "-m",
        "madgroup.backup",
        "restore",
        str(kept[-1]),
        "--into",
        f"fiedler={fiedler_dir}",
        "--into",
        f"redis={redis_dir}",
    ]
    done = python_module(restore)
    assert done.returncode == 0, done.stderr
    rows = (
        sqlite3.connect(fiedler_dir / "fiedler_state.db")
        .execute("SELECT count(*) FROM tasks")
        .fetchone()[0]
    )
    assert rows >= 50
    restored = RedisServer(redis_dir).start()  # its data directory: the restored one
    try:
        assert restored.client().get("kept-by-the-backup") == b"yes"
    finally:
        restored.stop()


def test_with_fiedler_on_postgresql_the_job_archives_redis_and_says_where_the_tasks_are(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The job's commands, run for real: Redis's snapshot is archived; Fiedler's tasks, in
    PostgreSQL, are not copied, and the archive's manifest and the job's output say where
    they are and what backs them up."""
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is not installed (Debian: apt-get install redis-tools)")
    store = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app"}}
    pod = cron_job({"fiedler": {"replicas": 2, "store": store}})["spec"]["jobTemplate"]["spec"][
        "template"
    ]
    work, archives = tmp_path / "work", tmp_path / "backups"
    work.mkdir()
    paths = {backups.WORK: str(work), backups.ARCHIVES: str(archives)}
    done = _run_job(pod, paths, redis_server)
    said = done.stdout.splitlines()
    assert said[-1].startswith("not included: fiedler's data is in PostgreSQL"), said
    (written,) = archives.glob("madgroup-backup-*.tar.gz")
    with tarfile.open(written) as archive:
        (member,) = [m for m in archive.getmembers() if m.name.endswith("/manifest.json")]
        handle = archive.extractfile(member)
        assert handle is not None
        manifest = json.loads(handle.read())
    assert list(manifest["files"]) == ["redis/dump.rdb"]
    assert manifest["not_included"]["fiedler"] == said[-1].removeprefix("not included: ")

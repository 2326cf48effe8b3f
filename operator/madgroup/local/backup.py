"""``madgroup backup`` and ``madgroup restore`` on the local runner (:mod:`madgroup.backup`).

A backup is taken while the group runs: each MAD's data file (Fiedler's task store) copied
with SQLite's online backup API, consistent while the MAD writes, and Redis's data as an RDB
snapshot (``BGSAVE``, then the file Redis wrote). Data the declaration keeps in a database
outside the group (Fiedler on PostgreSQL) is not copied: the manifest says so, and that
database's own backups (``pg_dump``) are the way. A restore needs the group stopped; it
checks the whole archive first, then puts each file in place with one rename (Redis's as
the base of a fresh append-only file, which is how an AOF-enabled Redis loads it).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from madgroup import backup, topology
from madgroup.errors import CommandError
from madgroup.local import certificates, processes, redis_admin
from madgroup.local.context import Context

BGSAVE_WAIT_S = 120.0


def take(ctx: Context, output: Path) -> dict[str, Any]:
    state = ctx.running_state()
    dotenv = ctx.dotenv()
    elsewhere = ctx.state.declared().not_backed_up
    archive = backup.Archive("local")
    backup.not_included(archive, elsewhere)
    with tempfile.TemporaryDirectory(prefix="madgroup-backup-") as tmp:
        work = Path(tmp)
        for comp, data in topology.data_keepers():
            if comp.name in elsewhere:
                continue
            copy = work / data.filename
            backup.sqlite_snapshot(ctx.state.data_dir(comp.name) / data.filename, copy)
            archive.files[f"{comp.name}/{data.filename}"] = copy
        bus = next(c for c in topology.COMPONENTS if not c.is_mad)
        rdb, settings = _redis_snapshot(
            state.ports.get(bus.name, bus.port),
            ctx.admin_password(dotenv),
            certificates.ca_file(ctx.state),
            work,
        )
        archive.files[f"{bus.name}/dump.rdb"] = rdb
        archive.details["redis"] = settings
        return archive.write(output)


def _redis_snapshot(
    port: int, password: str, ca_file: str | None, work: Path
) -> tuple[Path, dict[str, str]]:
    with redis_admin.administrator(port, password, timeout=30, ca_file=ca_file) as client:
        return _snapshot(client, work)


def _snapshot(client: redis_admin.Redis, work: Path) -> tuple[Path, dict[str, str]]:
    try:
        before = int(client.lastsave().timestamp())
        try:
            client.bgsave()
        except redis_admin.ResponseError as exc:  # one is running already: wait for it, then ours
            if "in progress" not in str(exc):
                raise
        deadline = time.monotonic() + BGSAVE_WAIT_S
        while True:
            info = client.info("persistence")
            done = not info.get("rdb_bgsave_in_progress") and info.get("rdb_last_save_time", 0)
            if done and int(info["rdb_last_save_time"]) > before:
                break
            if done and info.get("rdb_last_bgsave_status") != "ok":
                raise backup.BackupError("Redis could not write its snapshot (BGSAVE failed)")
            if time.monotonic() > deadline:
                raise backup.BackupError(f"Redis's snapshot took over {BGSAVE_WAIT_S:g} s")
            time.sleep(0.2)
        config: dict[str, str] = {}
        for key in ("dir", "dbfilename", "appendfilename", "appenddirname"):
            config.update({str(k): str(v) for k, v in client.config_get(key).items()})
    except redis_admin.RedisError as exc:
        raise backup.BackupError(f"cannot snapshot Redis: {exc}") from None
    target = work / "dump.rdb"
    backup.place(Path(config["dir"]) / config["dbfilename"], target)
    settings = {k: config[k] for k in ("appendfilename", "appenddirname")}
    return target, settings


def restore(ctx: Context, path: Path) -> dict[str, Any]:
    state = ctx.state.load()
    if any(processes.alive(c.pid, c.ticks) for c in state.components.values()):
        raise CommandError("the MAD group is running here; stop it first: madgroup down")
    with tempfile.TemporaryDirectory(prefix="madgroup-restore-") as tmp:
        known = [c.name for c in topology.COMPONENTS]
        try:
            opened = backup.open_checked(path, Path(tmp), known)
        except backup.BackupError as exc:
            raise CommandError(str(exc), code=2) from None
        targets = {name: ctx.state.data_dir(name) for name in known}
        try:
            backup.restore_files(opened, targets, opened.manifest.get("redis") or {})
        except backup.BackupError as exc:
            raise CommandError(str(exc), code=2) from None
        return opened.manifest

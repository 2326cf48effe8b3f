"""``madgroup report|backup|restore --compose``: the same bundle and archive as the local
runner's, taken from a group docker compose runs, through compose itself (``exec -T`` into
the running services, ``run --rm`` for a restore), from the project directory holding
``docker-compose.yml`` and ``.env``. Compose is the guide's ``docker-compose`` (v1, or v2
installed standalone) when it is installed, else the Docker CLI's plugin, ``docker
compose`` (v2): the commands used mean the same in both.

Backup: Fiedler's store copied inside its container with SQLite's online backup API
(``python -m madgroup.backup snapshot``), Redis's snapshot by ``redis-cli --rdb`` inside
Redis's container (the administrator's password read there from its file), both streamed
out. Data the compose file says is kept in a database outside the group (Fiedler on
PostgreSQL: its ``x-madgroup`` section) is not copied, and the backup and report say so.
Restore: the whole archive checked here first, then each file streamed into its
service's volume by a one-off container (Redis's as the base of a fresh append-only file).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from madgroup import backup, bundle, topology
from madgroup.errors import CommandError

TIMEOUT_S = 300.0
SNAPSHOT = "/data/.madgroup-backup"
METRICS = (
    "import os, sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
    "'http://127.0.0.1:' + os.environ['MAD_PORT'] + '/metrics', timeout=10).read().decode())"
)
REDIS_SNAPSHOT = (
    'REDISCLI_AUTH="$(cat /run/madgroup/admin_password)" '
    f"redis-cli -p {topology.bus().port} --rdb {SNAPSHOT}.rdb >/dev/null "
    f"&& cat {SNAPSHOT}.rdb; status=$?; rm -f {SNAPSHOT}.rdb; exit $status"
)


def compose_program() -> list[str]:
    """How compose is run here: ``docker-compose`` if installed, else ``docker compose``
    when the Docker CLI has the plugin."""
    standalone = shutil.which("docker-compose")
    if standalone is not None:
        return [standalone]
    docker = shutil.which("docker")
    if docker is not None:
        try:
            plugin = subprocess.run(
                [docker, "compose", "version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            plugin = None
        if plugin is not None and plugin.returncode == 0:
            return [docker, "compose"]
    raise CommandError(
        "neither docker-compose nor the docker compose plugin is installed "
        "(Docker: the docker-compose-plugin package; Debian: apt-get install docker-compose)"
    )


class Compose:
    def __init__(self, project: Path, program: Sequence[str] | None = None) -> None:
        self.project = project
        if not (project / "docker-compose.yml").exists():
            raise CommandError(f"no docker-compose.yml in {project} (use --project-dir)", code=2)
        self.program = list(program or compose_program())

    @property
    def spelling(self) -> str:
        """How a user types this compose: ``docker-compose`` or ``docker compose``."""
        return " ".join([Path(self.program[0]).name, *self.program[1:]])

    def run(
        self, args: Sequence[str], stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [*self.program, *args],
            cwd=self.project,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        if check and done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise CommandError(f"{self.spelling} {' '.join(args[:3])}: {(said or ['failed'])[-1]}")
        return done

    def exec(self, service: str, argv: Sequence[str]) -> bytes:
        return self.run(["exec", "-T", service, *argv]).stdout

    def running(self) -> list[str]:
        out = self.run(["ps", "--services", "--filter", "status=running"], check=False)
        return out.stdout.decode().split()

    def not_backed_up(self) -> dict[str, str]:
        """Component -> where its data is, for each the compose file (rendered from the
        declaration) says keeps it outside the group."""
        import yaml

        from madgroup.compose.render import COMPOSE_FILE, EXTENSION, NOT_BACKED_UP

        try:
            document = yaml.safe_load((self.project / COMPOSE_FILE).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"cannot read {COMPOSE_FILE}: {exc}") from None
        found = (document.get(EXTENSION) or {}).get(NOT_BACKED_UP) or {}
        return {str(k): str(v) for k, v in found.items()}

    def dotenv(self) -> dict[str, str]:
        path = self.project / ".env"
        values: dict[str, str] = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
        return values


def report(compose: Compose) -> bundle.Bundle:
    dotenv = compose.dotenv()
    collected = bundle.Bundle("compose", bundle.secret_values(dotenv))
    collected.not_included.update(compose.not_backed_up())
    collected.add(
        "versions.json", {**bundle.versions(), "docker-compose": _text(compose, ["version"])}
    )
    collected.add("env.json", bundle.redact_env(dotenv))
    collected.add("ps.txt", _text(compose, ["ps"]))
    collected.add("rendered/docker-compose.config.yml", _text(compose, ["config"]))
    for comp in topology.COMPONENTS:
        service = comp.name
        logs = compose.run(
            ["logs", "--no-color", "--tail", str(bundle.LOG_LINES), service], check=False
        )
        collected.add(f"{service}/log.txt", logs.stdout.decode(errors="replace"))
        if not comp.is_mad:
            continue
        commands: dict[str, list[str]] = {
            "status.json": ["mad-status", "--json"],
            "metrics.txt": ["python", "-c", METRICS],
        }
        for tool in comp.contract.report_tools if comp.contract is not None else ():
            commands[f"{tool}.json"] = ["mad-cli", tool, "{}"]
        for part, argv in commands.items():
            try:
                collected.add(
                    f"{service}/{part}", compose.exec(service, argv).decode(errors="replace")
                )
            except CommandError as exc:
                collected.could_not(f"{service}/{part}", str(exc))
    return collected


def _text(compose: Compose, args: list[str]) -> str:
    return compose.run(args, check=False).stdout.decode(errors="replace")


def take(compose: Compose, output: Path) -> dict[str, Any]:
    if not compose.running():
        raise CommandError(
            f"the group is not running under docker compose here ({compose.spelling} up -d)"
        )
    archive = backup.Archive("compose")
    elsewhere = compose.not_backed_up()
    backup.not_included(archive, elsewhere)
    with tempfile.TemporaryDirectory(prefix="madgroup-backup-") as tmp:
        work = Path(tmp)
        for comp, data in topology.data_keepers():
            if comp.name in elsewhere:
                continue
            inside = f"/data/{data.filename}"
            compose.exec(
                comp.name, ["python", "-m", "madgroup.backup", "snapshot", inside, f"{SNAPSHOT}.db"]
            )
            copy = work / data.filename
            copy.write_bytes(
                compose.exec(comp.name, ["sh", "-c", f"cat {SNAPSHOT}.db; rm -f {SNAPSHOT}.db"])
            )
            problem = backup.sqlite_problem(copy)
            if problem:
                raise CommandError(f"{comp.name}'s snapshot is not sound: {problem}")
            archive.files[f"{comp.name}/{data.filename}"] = copy
        bus = topology.bus()
        rdb = work / "dump.rdb"
        rdb.write_bytes(compose.exec(bus.name, ["sh", "-c", REDIS_SNAPSHOT]))
        if not rdb.read_bytes().startswith(b"REDIS"):
            raise CommandError("Redis's snapshot is not an RDB file")
        archive.files[f"{bus.name}/dump.rdb"] = rdb
        archive.details["redis"] = {
            "appendfilename": "appendonly.aof",
            "appenddirname": "appendonlydir",
        }
        return archive.write(output)


def restore(compose: Compose, path: Path) -> dict[str, Any]:
    running = compose.running()
    if running:
        raise CommandError(
            f"the group is running ({', '.join(running)}); stop it first: {compose.spelling} down"
        )
    with tempfile.TemporaryDirectory(prefix="madgroup-restore-") as tmp:
        try:
            opened = backup.open_checked(path, Path(tmp), [c.name for c in topology.COMPONENTS])
        except backup.BackupError as exc:
            raise CommandError(str(exc), code=2) from None
        for name, source in sorted(opened.files.items()):
            service, filename = name.split("/", 1)
            script = _redis_restore() if filename == "dump.rdb" else _file_restore(filename)
            compose.run(
                ["run", "--rm", "-T", "--no-deps", "--entrypoint", "sh", service, "-c", script],
                stdin=source.read_bytes(),
            )
        return opened.manifest


def _file_restore(filename: str) -> str:
    target = shlex.quote(f"/data/{filename}")
    return (
        f"rm -f {target}-wal {target}-shm && cat > {target}.restoring "
        f"&& mv {target}.restoring {target}"
    )


def _redis_restore() -> str:
    base = "appendonly.aof.1.base.rdb"
    return (
        "rm -rf /data/appendonlydir /data/dump.rdb && mkdir /data/appendonlydir "
        f"&& cat > /data/appendonlydir/{base} "
        f"&& printf 'file {base} seq 1 type b\\n' > /data/appendonlydir/appendonly.aof.manifest"
    )


def project_dir(explicit: str | None) -> Path:
    chosen = explicit or os.environ.get("MADGROUP_PROJECT_DIR") or "."
    return Path(chosen).resolve()

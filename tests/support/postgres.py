"""A real PostgreSQL server (Debian's ``postgresql``) on a free loopback port, for tests.

``initdb`` and ``postgres`` refuse to run as root; as root (CI) they run as ``nobody``, in a
directory of their own outside pytest's (whose parents are private to the user running
the tests). The cluster requires a password (SCRAM), as a real one does, and listens on
TCP only. ``stop()`` is a fast shutdown (clients are disconnected, as in a restart or a
failover), ``start()`` brings it back on the same port with its data.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.ports import free_port
from tests.support.waiting import wait_for

NOBODY = 65534


def binaries() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory (Debian's layout), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def require() -> Path:
    """The binaries, or skip the test saying what is missing and how to get it."""
    found = binaries()
    if found is None:
        pytest.skip(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); "
            "apt-get install postgresql (.ci/run does)"
        )
    return found


class PostgresServer:
    def __init__(self, *, fsync: bool = False) -> None:
        """``fsync=False`` for tests: a commit survives the server's crash, not the
        machine's; a benchmark keeps PostgreSQL's default durability."""
        self.bin = require()
        self.root = Path(tempfile.mkdtemp(prefix="fiedler-postgres-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.user = "madgroup"
        self.password = secrets.token_urlsafe(18)
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self._initdb()

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.getuid() != 0:
            return argv
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]

    def _initdb(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password)
        if os.getuid() == 0:
            os.chown(self.root, NOBODY, NOBODY)
            os.chown(password_file, NOBODY, NOBODY)
        password_file.chmod(0o600)
        subprocess.run(
            self._as_owner(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            cwd=self.root,
            timeout=120,
        )
        password_file.unlink()

    def start(self) -> PostgresServer:
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            # A commit is acknowledged only once its WAL is written (to the OS: it survives
            # the server's crash, which is what the tests inflict); fsync only with ``fsync``.
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on",
            "full_page_writes": "on" if self.fsync else "off",
            "shared_buffers": "32MB",
            "max_connections": "200",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self._as_owner([str(self.bin / "postgres"), "-D", str(self.data), *options]),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        finally:
            log.close()
        wait_for(self._answers, timeout=60, interval=0.1, what=f"PostgreSQL on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {self.process.returncode}:\n{self.log_text()[-2000:]}"
            )
        try:
            with self.connect("postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, *, immediate: bool = False) -> None:
        """Fast shutdown (clients disconnected, everything committed kept); ``immediate``:
        as a crash (recovery from the WAL at the next start)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait(timeout=30)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str, **options: object) -> psycopg.Connection:
        return psycopg.connect(self.uri(database), autocommit=True, **options)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its name."""
        name = name or f"fiedler_{secrets.token_hex(4)}"
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def postgres_server(fsync: bool = False) -> Iterator[PostgresServer]:
    """A fixture's body: a started server, stopped and removed at the end."""
    server = PostgresServer(fsync=fsync)
    try:
        yield server.start()
    finally:
        server.cleanup()

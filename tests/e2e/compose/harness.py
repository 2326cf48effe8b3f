"""Running the deployment guide's shell commands against a real Docker engine.

Commands are the guide's own strings, run by bash in a copy of the repository named
``mad-group-v1`` as the guide's clone is, with the pass's ``docker-compose`` first on
``PATH`` (:mod:`tests.e2e.compose.flavours`). Commands the guide runs at a terminal
(``docker-compose exec`` without ``-T``) run under a pseudo-terminal here, so compose
allocates a TTY exactly as it does for an operator. Output is returned with colours
stripped, line ends normalised and every secret the harness knows replaced by ``***``.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.e2e.compose.flavours import Compose

T = TypeVar("T")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PROJECT_DIR_NAME = "mad-group-v1"


class CommandFailed(AssertionError):
    pass


def clean(text: str, secrets: Iterable[str] = ()) -> str:
    text = ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _run_in_pty(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise CommandFailed(f"timed out after {timeout:g} s: {argv[-1]}")
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal has exited
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks)


@dataclass
class Result:
    command: str
    code: int
    output: str

    def __str__(self) -> str:
        return f"$ {self.command}\n(exit {self.code})\n{self.output}"


@dataclass
class GuideHost:
    """The operator's shell on a host with Docker, in the repository's directory."""

    workdir: Path
    project: str
    events: EventLog | None = None
    compose: Compose | None = None
    """The pass's Docker Compose (its ``docker-compose`` first on ``PATH``); None: as found."""
    secrets: list[str] = field(default_factory=list)
    task_id: str = ""
    """The task the guide's step 8 created; later steps look it up again."""

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.compose is not None:
            env["PATH"] = f"{self.compose.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        # A name of our own, so the run never touches a group the machine already runs.
        env["COMPOSE_PROJECT_NAME"] = self.project
        env.pop("DOCKER_BUILDKIT", None)
        env["DOCKER_BUILDKIT"] = "0"  # the classic builder: nothing to pull but base images
        env["COMPOSE_DOCKER_CLI_BUILD"] = "0"
        return env

    def sh(
        self, command: str, *, tty: bool = False, timeout: float = 180, check: bool = True
    ) -> Result:
        """Run ``command`` with bash, as typed at the operator's prompt."""
        argv = ["bash", "-c", command]
        if tty:
            code, raw = _run_in_pty(argv, self.workdir, self.env, timeout)
        else:
            done = subprocess.run(
                argv,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            code, raw = done.returncode, done.stdout
        result = Result(command, code, clean(raw.decode(errors="replace"), self.secrets))
        if check and code != 0:
            raise CommandFailed(str(result))
        return result

    def json(self, command: str, *, tty: bool = True, timeout: float = 60) -> Any:
        result = self.sh(command, tty=tty, timeout=timeout)
        try:
            return json.loads(result.output)
        except ValueError:
            raise CommandFailed(f"no JSON in the output of\n{result}") from None

    def until(self, attempt: Callable[[], T | None], *, timeout: float = 120, what: str) -> T:
        """Retry ``attempt`` (a falsy value or CommandFailed means "not yet") until it gives
        a value or the deadline passes; the last failure is in the error."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            try:
                value = attempt()
                if value:
                    return value
                last = repr(value)
            except CommandFailed as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}: {last}")
            time.sleep(1)


def copy_repository(source: Path, parent: Path) -> Path:
    """A copy of the committed tree (what a clone holds) in ``parent/mad-group-v1``."""
    target = parent / PROJECT_DIR_NAME
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, listed):
        name = rel.decode()
        src = source / name
        if not src.is_file():
            continue
        dst = target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return target


def trust_host_cas(workdir: Path) -> list[str]:
    """Give the image builds this host's extra CA certificates (a TLS-intercepting proxy
    re-signs PyPI here, as on many corporate networks): docker/ca-certificates/*.crt."""
    target = workdir / "docker" / "ca-certificates"
    copied = []
    for cert in sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []:
        shutil.copy2(cert, target / cert.name)
        copied.append(cert.name)
    return copied


class EventLog:
    """``docker events`` for one compose project, recorded from before the first command."""

    def __init__(self, project: str, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--format",
                "{{json .}}",
                "--filter",
                "type=container",
                "--filter",
                f"label=com.docker.compose.project={project}",
            ],
            stdout=self._file,
            stderr=subprocess.DEVNULL,
        )

    def events(self) -> list[dict[str, Any]]:
        self._file.flush()
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._file.close()


def order_violations(
    events: list[dict[str, Any]], depends_on: dict[str, list[str]]
) -> tuple[list[str], int]:
    """Every container start that came before one of its service's dependencies had
    reported healthy (or, for a one-shot, exited 0); and how many starts were checked.

    Starts, not creations: compose v1 creates and starts a container once what it depends
    on is ready, compose v2 creates every container first and starts each once what it
    depends on is ready. A ``docker-compose run`` container (a restore's, a renewal's)
    starts no service: not checked."""
    latest: dict[str, str] = {}  # service -> id of its newest container
    healthy_ids: set[str] = set()
    completed_ids: set[str] = set()
    problems: list[str] = []
    checked = 0
    for event in sorted(events, key=lambda e: e.get("timeNano", 0)):
        attributes = event.get("Actor", {}).get("Attributes", {})
        service = attributes.get("com.docker.compose.service")
        action = event.get("Action") or event.get("status", "")
        cid = event.get("Actor", {}).get("ID") or event.get("id", "")
        if not service or attributes.get("com.docker.compose.oneoff") == "True":
            continue
        if action == "create":
            latest[service] = cid
        elif action == "start":
            checked += 1
            for dep in depends_on.get(service, []):
                if latest.get(dep) not in healthy_ids | completed_ids:
                    problems.append(f"{service} was started before {dep} reported healthy")
        elif action == "health_status: healthy":
            healthy_ids.add(cid)
        elif action in ("die", "health_status: unhealthy"):
            healthy_ids.discard(cid)
            if action == "die" and attributes.get("exitCode") == "0":
                completed_ids.add(cid)
    return problems, checked


PROJECT_PREFIX = "madgroup-e2e-"


def project_name(token: str) -> str:
    """A compose project name that records which process owns it."""
    return f"{PROJECT_PREFIX}{os.getpid()}-{token}"


def _owner_alive(project: str) -> bool:
    owner = project.removeprefix(PROJECT_PREFIX).split("-", 1)[0]
    if not owner.isdigit():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _labelled(kind: str) -> dict[str, list[str]]:
    """Objects of ``kind`` (container, network, volume) by their compose project."""
    listing = {
        "container": ["docker", "ps", "-a", "--format", "{{.ID}}"],
        "network": ["docker", "network", "ls", "--format", "{{.ID}}"],
        "volume": ["docker", "volume", "ls", "--format", "{{.Name}}"],
    }[kind]
    ids = subprocess.run(
        [*listing, "--filter", "label=com.docker.compose.project"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    found: dict[str, list[str]] = {}
    for ident in ids:
        project = subprocess.run(
            [
                "docker",
                kind,
                "inspect",
                "--format",
                '{{index .Labels "com.docker.compose.project"}}'
                if kind != "container"
                else '{{index .Config.Labels "com.docker.compose.project"}}',
                ident,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        found.setdefault(project, []).append(ident)
    return found


def remove_abandoned_projects() -> list[str]:
    """Remove what earlier runs of this test left on the engine when they were killed.

    A run that dies before its teardown leaves containers with ``restart:
    unless-stopped``, and an engine started later brings them back, holding the guide's
    ports. Only projects whose owning process is gone are removed; returns their names.
    """
    removed: set[str] = set()
    for kind, remove in (
        ("container", ["docker", "rm", "-f", "-v"]),
        ("network", ["docker", "network", "rm"]),
        ("volume", ["docker", "volume", "rm", "-f"]),
    ):
        for project, ids in _labelled(kind).items():
            if project.startswith(PROJECT_PREFIX) and not _owner_alive(project):
                subprocess.run([*remove, *ids], capture_output=True, timeout=120)
                removed.add(project)
    return sorted(removed)


def port_holder(port: int, address: str = "127.0.0.1") -> str | None:
    """Who holds ``address:port`` when it cannot be bound, else None."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            pass
        else:
            return None
    users = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return users or "another process"


def remove_project_images(compose_file: Path) -> list[str]:
    """Remove the images the compose file builds (the MADs'), so the guide runs as on a
    host that never built them: the first command that needs one builds it. The build
    cache stays, so this costs little. Base images are left alone."""
    import yaml

    services = yaml.safe_load(compose_file.read_text())["services"]
    built = sorted({svc["image"] for svc in services.values() if "build" in svc})
    present = [
        image
        for image in built
        if subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, timeout=60
        ).returncode
        == 0
    ]
    if present:
        subprocess.run(["docker", "image", "rm", "-f", *present], capture_output=True, timeout=300)
    return present

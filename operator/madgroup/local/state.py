"""The state directory (``.madgroup/`` by default): what the running group is, on disk.

Everything a later ``madgroup`` command (or a new supervisor after a crash) needs lives
here: the chosen ports, each component's pid and its start-time fingerprint, restart
counts, logs, Redis's data (AOF) and Fiedler's database. ``state.json`` is replaced
atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from madgroup.local import watch

if TYPE_CHECKING:
    from madgroup.local.declaration import Declared
    from madgroup.spec import Document

STATE_ENV = "MADGROUP_STATE_DIR"
DEFAULT_STATE_DIR = ".madgroup"


class Phase(StrEnum):
    """Where a component stands, as ``up`` and ``status`` show it."""

    WAITING = "waiting"
    """Wanted, not started: waiting for its gates (or for its restart backoff)."""
    STARTING = "starting"
    READY = "ready"
    NOT_READY = "not ready"
    """Running, and was ready, but its readiness check fails now (e.g. a gate went away);
    it is not restarted for that, and counts as ready again once the check passes."""
    FAILED = "failed"
    EXITED = "exited"
    STOPPED = "stopped"


class SupervisorStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


WAITING, STARTING, READY = Phase.WAITING, Phase.STARTING, Phase.READY
FAILED, EXITED, STOPPED = Phase.FAILED, Phase.EXITED, Phase.STOPPED
NOT_READY = Phase.NOT_READY


@dataclass
class ComponentState:
    """One process of a component (a component declared with replicas runs several, each
    with a state of its own: ``fiedler``, ``fiedler-2``...)."""

    name: str
    port: int
    pid: int | None = None
    ticks: int | None = None
    """The process start time (``/proc/<pid>/stat`` field 22): a pid is ours only while it
    matches, so a reused pid is never mistaken for a component."""
    phase: Phase = WAITING
    started_at: float | None = None
    ready_at: float | None = None
    restarts: int = 0
    message: str = ""
    component: str | None = None
    """The component it runs, when it is not the first of several (that one is named after
    its component)."""

    @property
    def of(self) -> str:
        """The component this process runs."""
        return self.component or self.name


@dataclass
class GroupState:
    ports: dict[str, int] = field(default_factory=dict)
    wanted: list[str] = field(default_factory=list)
    components: dict[str, ComponentState] = field(default_factory=dict)
    supervisor_pid: int | None = None
    supervisor_status: SupervisorStatus | None = None
    """What the supervisor is doing (None before one ever ran here)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupState:
        comps = {
            name: ComponentState(**{**value, "phase": Phase(value.get("phase", WAITING))})
            for name, value in data.get("components", {}).items()
        }
        return cls(
            ports={k: int(v) for k, v in data.get("ports", {}).items()},
            wanted=list(data.get("wanted", [])),
            components=comps,
            supervisor_pid=data.get("supervisor_pid"),
            supervisor_status=SupervisorStatus(data["supervisor_status"])
            if data.get("supervisor_status")
            else None,
        )


class StateDir:
    """Paths and files of one state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @classmethod
    def resolve(cls, explicit: str | None, project_dir: Path) -> StateDir:
        chosen = explicit or os.environ.get(STATE_ENV) or str(project_dir / DEFAULT_STATE_DIR)
        return cls(Path(chosen))

    # -- layout ----------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    @property
    def watchers(self) -> Path:
        """One FIFO per command following the state (see :mod:`madgroup.local.watch`)."""
        return self.root / "watchers"

    @property
    def events_log(self) -> Path:
        return self.root / "events.log"

    @property
    def declaration_file(self) -> Path:
        """The MadGroup document this group runs (``madgroup up -f``), as JSON, with its
        resolved form (order, each component's environment) for the supervisor."""
        return self.root / "declaration.json"

    def save_declaration(self, document: Document, resolved: dict[str, Any]) -> None:
        self.ensure()
        data: dict[str, Any] = {
            "name": document.name,
            "spec": dict(document.raw_spec),
            "resolved": resolved,
        }
        if document.path is not None:
            data["path"] = str(document.path)
        tmp = self.declaration_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.declaration_file)

    def _declaration_data(self) -> dict[str, Any]:
        try:
            data = json.loads(self.declaration_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def document(self) -> Document:
        """The declaration the group runs: the last ``up -f``'s, else the built-in one."""
        from madgroup.spec import Document, default_document

        data = self._declaration_data()
        if not data:
            return default_document()
        path = data.get("path")
        return Document(
            name=str(data.get("name") or "madgroup"),
            raw_spec=dict(data.get("spec") or {}),
            path=Path(path) if path else None,
        )

    def declared(self) -> Declared:
        """The resolved declaration the group runs with; resolved again from the kept
        spec when none was saved (or one of an older form)."""
        from madgroup.local.declaration import Declared
        from madgroup.resolved import resolve
        from madgroup.spec import parse_spec

        resolved = self._declaration_data().get("resolved")
        if isinstance(resolved, dict) and "environments" in resolved:
            return Declared.from_json(resolved)
        return Declared.of(resolve(parse_spec(self.document().raw_spec)))

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def supervisor_lock(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def redis_conf(self) -> Path:
        return self.root / "redis.conf"

    @property
    def redis_acl(self) -> Path:
        """Redis's users, passwords hashed (mode 0600)."""
        return self.root / "users.acl"

    def files_dir(self, name: str) -> Path:
        """Files the declaration gives component ``name`` (Grace's tokens file...)."""
        return self.root / "files" / name

    @property
    def tls_dir(self) -> Path:
        """The group's private CA and server certificates (``madgroup init --tls``)."""
        return self.root / "tls"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        return self.data / name

    def ensure(self) -> None:
        for path in (self.root, self.logs, self.data, self.requests):
            path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            self.root.chmod(0o700)

    # -- state.json ------------------------------------------------------------------------

    def load(self) -> GroupState:
        try:
            return GroupState.from_json(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return GroupState()
        except (ValueError, TypeError):
            return GroupState()

    def save(self, state: GroupState) -> None:
        """Write ``state.json`` (atomically) and wake every command following it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".state-", suffix=".json")
        with os.fdopen(fd, "w") as out:
            json.dump(state.to_json(), out, indent=2)
        os.replace(tmp, self.state_file)
        watch.notify(self.watchers)

    def follow(self) -> contextlib.AbstractContextManager[watch.Follower]:
        """Sleep until the state changes: ``with sd.follow() as f: ... f.wait()``."""
        return watch.follow(self.watchers)

    # -- events (timestamped, for people and for tests) -------------------------------------

    def event(self, component: str, what: str, detail: str = "") -> None:
        now = time.time()
        millis = int(now % 1 * 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"
        line = f"{stamp} t={now:.3f} {component} {what}{(' ' + detail) if detail else ''}\n"
        with self.events_log.open("a") as out:
            out.write(line)

    # -- requests from the CLI to a running supervisor --------------------------------------

    def request(self, action: str, name: str) -> None:
        """Leave a request for the supervisor and wake it (SIGUSR1) to take it now."""
        self.requests.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.time_ns()}"
        (self.requests / f"{stamp}-{action}-{name}").touch()
        pid = self.load().supervisor_pid
        if pid and self.supervisor_running():  # never signal a pid that is not ours
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)

    def take_requests(self) -> list[tuple[str, str]]:
        taken: list[tuple[str, str]] = []
        try:
            entries = sorted(self.requests.iterdir())
        except FileNotFoundError:
            return taken
        for entry in entries:
            parts = entry.name.split("-", 2)
            with contextlib.suppress(OSError):
                entry.unlink()
            if len(parts) == 3:
                taken.append((parts[1], parts[2]))
        return taken

    # -- the supervisor's lock: held for its whole life -------------------------------------

    def supervisor_running(self) -> bool:
        """True while a supervisor holds the lock (a crashed one releases it)."""
        try:
            fd = os.open(self.supervisor_lock, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @contextlib.contextmanager
    def hold_supervisor_lock(self) -> Iterator[bool]:
        fd = os.open(self.supervisor_lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # A CLI probing ``supervisor_running`` holds the lock for an instant: retry briefly.
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.01)
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def command_lock(self) -> Iterator[None]:
        """Serialises ``up``/``down`` run at the same time against one state directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "command.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

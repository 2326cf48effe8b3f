"""Where a command works: the project directory (``.env``, ``.env.example``) and the state
directory, plus loading ``.env`` as a one-line error when it is broken."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from madgroup.errors import CommandError
from madgroup.local import envfile, processes
from madgroup.local.state import GroupState, StateDir

if TYPE_CHECKING:
    from madgroup.local.declaration import Declared

PROJECT_ENV = "MADGROUP_PROJECT_DIR"


def find_project(explicit: str | None) -> Path:
    """``--project-dir``, else ``$MADGROUP_PROJECT_DIR``, else the nearest directory from
    here upwards holding ``.env`` or ``.env.example``, else here."""
    chosen = explicit or os.environ.get(PROJECT_ENV)
    if chosen:
        path = Path(chosen).resolve()
        if not path.is_dir():
            raise CommandError(f"project directory {chosen} does not exist", code=2)
        return path
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".env").exists() or (candidate / ".env.example").exists():
            return candidate
    return here


@dataclass
class Context:
    project: Path
    state: StateDir

    @classmethod
    def from_args(cls, args: object) -> Context:
        project = find_project(getattr(args, "project_dir", None))
        return cls(project, StateDir.resolve(getattr(args, "state_dir", None), project))

    @property
    def env_file(self) -> Path:
        return self.project / ".env"

    @property
    def example_file(self) -> Path:
        return self.project / ".env.example"

    def dotenv(self, declared: Declared | None = None) -> dict[str, str]:
        """``.env`` with a usable administrator's password where the declaration (the one
        given, else the group's) keeps it, or a one-line error (exit 2)."""
        key = (declared or self.state.declared()).admin.dotenv_key
        try:
            values = envfile.load(self.env_file)
            envfile.require_password(values, source=str(self.env_file), key=key)
        except envfile.EnvFileError as exc:
            raise CommandError(str(exc), code=2) from None
        return values

    def admin_password(self, dotenv: dict[str, str] | None = None) -> str:
        """The administrator's Redis password, from ``.env`` (or ``dotenv``)."""
        values = self.dotenv() if dotenv is None else dotenv
        return values[self.state.declared().admin.dotenv_key]

    def running_state(self) -> GroupState:
        """The state of a group that is up, or an error saying it is not."""
        state = self.state.load()
        if not state.ports or not any(
            processes.alive(c.pid, c.ticks) for c in state.components.values()
        ):
            raise CommandError("the MAD group is not running here; start it with: madgroup up")
        return state

"""The MadGroup declaration, as the local runner takes it (``madgroup up -f FILE``) and keeps
it for the supervisor and later commands.

The same file as on the other substrates, validated by the same model; what the local
runner cannot honour is refused or reported, one line each. What the runner keeps of it
(:class:`Declared`, in the state directory's ``declaration.json``) is the resolved group as
typed data: the order, TLS, and each component's environment entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madgroup import environment, spec, topology
from madgroup.environment import Credential, Entry
from madgroup.resolved import ResolvedGroup, resolve
from madgroup.spec import substrates


def instances(name: str, replicas: int) -> list[str]:
    """The processes that run component ``name``: the first is named after it (its log,
    port and state are the guide's), the others ``<name>-2``, ``<name>-3``... each with a
    port and a log of its own."""
    return [name, *(f"{name}-{i}" for i in range(2, replicas + 1))]


def load(path: Path | None) -> tuple[spec.Document, spec.MadGroupSpec, list[str]]:
    """The declaration, validated and checked; the notes are what it ignores."""
    document, declared = spec.load(path)
    notes = substrates.check(declared, substrates.LOCAL)
    return document, declared, notes


@dataclass(frozen=True)
class Declared:
    """What the supervisor and the launcher need of the declaration."""

    order: str
    tls: bool
    environments: Mapping[str, tuple[Entry, ...]]
    """Each component's environment (:mod:`madgroup.environment`)."""
    secret_keys: frozenset[str]
    """The one list of ``.env`` variables holding secrets."""
    passes_through: Mapping[str, frozenset[str]]
    """Per component, the ``.env`` secrets it takes as they are."""
    replicas: Mapping[str, int]
    """Per component, how many processes run it (one unless declared)."""
    not_backed_up: Mapping[str, str]
    """Component -> where its data is, when the declaration keeps it outside the group
    (:meth:`madgroup.resolved.ResolvedGroup.not_backed_up`)."""
    options: Mapping[str, tuple[str, ...]]
    """Per component, what the declaration puts on its command line (Redis's memory)."""

    @classmethod
    def of(cls, group: ResolvedGroup) -> Declared:
        return cls(
            order=group.spec.order,
            tls=group.spec.tls.enabled,
            environments={part.name: part.environment for part in group},
            secret_keys=group.secret_keys,
            passes_through={part.name: part.passes_through for part in group},
            replicas={part.name: part.settings.replicas for part in group},
            not_backed_up=group.not_backed_up(),
            options={part.name: part.options for part in group if part.options},
        )

    @classmethod
    def default(cls) -> Declared:
        """The built-in group's."""
        return cls.of(resolve(spec.parse_spec({})))

    def environment(self, name: str) -> tuple[Entry, ...]:
        return self.environments.get(name, ())

    def instances(self, name: str) -> list[str]:
        """The processes that run component ``name`` (:func:`instances`)."""
        return instances(name, self.replicas.get(name, 1))

    def units(self, names: Iterable[str]) -> list[str]:
        """The processes that run the components ``names``, in their order."""
        return [unit for name in names for unit in self.instances(name)]

    def command(
        self,
        comp: topology.Component,
        users_file: str | None = None,
        tls: topology.TlsFiles | None = None,
    ) -> list[str]:
        """Its command line with its declared options
        (:meth:`madgroup.resolved.ResolvedComponent.command`)."""
        return comp.command(users_file, tls, options=self.options.get(comp.name, ()))

    @property
    def admin(self) -> Credential:
        """The administrator's password (where ``.env`` holds it: :attr:`admin.dotenv_key`)."""
        found = environment.admin_credential(self.environment(topology.bus().name))
        assert found is not None, "the bus's environment holds the administrator's password"
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "tls": self.tls,
            "environments": {k: environment.to_json(v) for k, v in self.environments.items()},
            "secret_keys": sorted(self.secret_keys),
            "passes_through": {k: sorted(v) for k, v in self.passes_through.items()},
            "replicas": dict(self.replicas),
            "not_backed_up": dict(self.not_backed_up),
            "options": {k: list(v) for k, v in self.options.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Declared:
        return cls(
            order=str(data.get("order", "guide")),
            tls=bool(data.get("tls", False)),
            environments={
                str(k): environment.from_json(v) for k, v in data["environments"].items()
            },
            secret_keys=frozenset(data["secret_keys"]),
            passes_through={str(k): frozenset(v) for k, v in data["passes_through"].items()},
            replicas={str(k): int(v) for k, v in (data.get("replicas") or {}).items()},
            not_backed_up={str(k): str(v) for k, v in (data.get("not_backed_up") or {}).items()},
            # a state directory kept before options existed: the built-in group's
            options={
                str(k): tuple(v)
                for k, v in data.get("options", cls.default().to_json()["options"]).items()
            },
        )

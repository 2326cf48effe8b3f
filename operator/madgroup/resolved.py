"""The declared group, resolved once: per component, what the topology says of it, what the
declaration sets for it and its environment (:mod:`madgroup.environment`), so substrate code
is handed one object per component instead of a name it looks up again and again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from madgroup import environment, topology
from madgroup.environment import Credential, Entry
from madgroup.spec.model import ComponentSpec, MadGroupSpec
from mads.core.contract import DataFile


@dataclass(frozen=True)
class ResolvedComponent:
    """One component of the declared group."""

    component: topology.Component
    settings: ComponentSpec
    """What the declaration sets for it (a substrate's extension of the model, when the
    declaration was parsed with one)."""
    environment: tuple[Entry, ...]
    options: tuple[str, ...]
    """What the declaration puts on its program's command line (Redis's memory limit)."""
    image: str
    gates: tuple[str, ...]
    """What must be ready before it starts, in the declaration's order."""

    @property
    def name(self) -> str:
        return self.component.name

    def command(
        self, users_file: str | None = None, tls: topology.TlsFiles | None = None
    ) -> list[str]:
        """Its command line, the same on every substrate (:meth:`topology.Component.command`),
        with its declared options."""
        return self.component.command(users_file, tls, options=self.options)

    @property
    def data_elsewhere(self) -> str | None:
        """The database outside the group that keeps its data, when the declaration puts
        it there (:meth:`~madgroup.spec.ComponentSpec.data_elsewhere`)."""
        return self.settings.data_elsewhere()

    @property
    def data_file(self) -> DataFile | None:
        """The data file it keeps here (none when its data is elsewhere)."""
        return self.component.data_file if self.data_elsewhere is None else None

    @property
    def keeps_volume(self) -> bool:
        """Whether it keeps data on a volume of its own (the bus's, a data file's)."""
        return self.component.stateful and self.data_elsewhere is None

    @property
    def max_replicas(self) -> int | None:
        """How many instances it may run: one with a data file of its own (one writer),
        else what its contract says (None: no limit of its own)."""
        return 1 if self.data_file is not None else self.component.max_replicas

    @property
    def files(self) -> dict[str, str]:
        """The files its declaration gives it: variable -> content."""
        return {e.variable: e.content for e in self.environment if isinstance(e, environment.File)}

    @property
    def passes_through(self) -> frozenset[str]:
        """The ``.env`` secrets it takes as they are (:func:`environment.passes_through`)."""
        return environment.passes_through(self.component, self.environment)


@dataclass(frozen=True)
class ResolvedGroup:
    """Every component of the declared group, in start order."""

    spec: MadGroupSpec
    components: tuple[ResolvedComponent, ...]

    def __iter__(self) -> Iterator[ResolvedComponent]:
        return iter(self.components)

    def of(self, name: str) -> ResolvedComponent:
        topology.component(name)  # UnknownComponentError for a name that is none
        return next(c for c in self.components if c.name == name)

    @cached_property
    def secret_keys(self) -> frozenset[str]:
        """The one list of ``.env`` variables that hold secrets."""
        return environment.secret_keys(c.environment for c in self.components)

    def not_backed_up(self) -> dict[str, str]:
        """Component -> one line saying where its data is, for each whose declaration keeps
        it in a database outside the group: no backup or report of the group holds any of
        it (that database's own backups are the way)."""
        return {p.name: elsewhere_line(p.name, where) for p in self if (where := p.data_elsewhere)}

    @property
    def admin(self) -> Credential:
        """The administrator's password (the bus's entry)."""
        found = environment.admin_credential(self.of(topology.bus().name).environment)
        assert found is not None
        return found


def elsewhere_line(component: str, where: str) -> str:
    """``component``'s data is ``where`` (:attr:`ResolvedComponent.data_elsewhere`)."""
    return f"{component}'s data is {where}"


def resolve(spec: MadGroupSpec) -> ResolvedGroup:
    """The declaration, per component; a declared secret that would hand a MAD the
    administrator's password is refused (:class:`~madgroup.spec.InvalidSpecError`)."""
    own = {
        comp.name: environment.environment(comp, spec.component(comp.name), spec)
        for comp in topology.COMPONENTS
    }
    owned = environment.owned_variables(
        (comp, spec.component(comp.name), own[comp.name]) for comp in topology.COMPONENTS
    )
    parts = []
    for comp in topology.COMPONENTS:
        settings = spec.component(comp.name)
        environment.check_extra_env(comp, settings, owned)
        parts.append(
            ResolvedComponent(
                component=comp,
                settings=settings,
                environment=own[comp.name] + environment.extra_env(settings),
                options=environment.options(settings),
                image=spec.image_of(comp.name),
                gates=topology.gates(comp, spec.order),
            )
        )
    group = ResolvedGroup(spec=spec, components=tuple(parts))
    for part in group:
        if part.component.is_mad:
            environment.check_no_admin(part.environment, group.admin)
    return group

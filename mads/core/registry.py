"""The MADs installed with this distribution, found through their contracts.

Each MAD registers its :class:`~mads.core.contract.MadContract` under the entry-point group
``mads.services`` (``pyproject.toml``); nothing here names one. ``mad-run``, ``mad-status``,
``mad-cli`` and the deployment topology all read contracts from here.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from mads.core.contract import BUS_CONNECTED_LOG, DEFAULT_BUS_NAME, ENTRY_POINT_GROUP, MadContract
from mads.core.errors import MadUsageError


class UnknownMadError(MadUsageError, LookupError):
    def __init__(self, name: str) -> None:
        known = ", ".join(contracts()) or "none installed"
        super().__init__(f"unknown MAD {name!r}; known MADs: {known}")
        self.name = name


@functools.cache
def contracts() -> dict[str, MadContract]:
    """Every installed MAD's contract by name, in order of their default ports: the
    group's start order (the deployment guide's for its MADs, 8000 upwards), which the
    topology keeps, placing a MAD after the peers it calls."""
    found: dict[str, MadContract] = {}
    points = {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}
    for point in points.values():
        contract = point.load()
        if not isinstance(contract, MadContract) or contract.name != point.name:
            raise TypeError(f"entry point {point.name} ({point.value}) is not its MadContract")
        found[contract.name] = contract
    return dict(sorted(found.items(), key=lambda item: item[1].port))


def contract(name: str) -> MadContract:
    try:
        return contracts()[name]
    except KeyError:
        raise UnknownMadError(name) from None


def bus_name() -> str:
    """What the group calls its bus: the name an installed MAD gives it, else the generic."""
    return next((c.bus_name for c in contracts().values() if c.bus_name), DEFAULT_BUS_NAME)


def bus_connected_log() -> str:
    """The line every MAD logs when it reaches the bus (the guide looks for it)."""
    return BUS_CONNECTED_LOG.format(bus=bus_name())

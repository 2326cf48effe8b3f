"""The MADs this distribution ships: name, default port and status banner.

``mad-run``, ``mad-status`` and the deployment topology all read these, so a MAD's port and
banner are written down once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MadInfo:
    name: str
    port: int
    banner: str


MADS: dict[str, MadInfo] = {
    info.name: info
    for info in (
        MadInfo("sequential_thinking", 8000, "SequentialThinkingV1"),
        MadInfo("grace", 8001, "GraceV0"),
        MadInfo("rogers", 8002, "RogersV1"),
        MadInfo("fiedler", 8003, "FiedlerV1"),
    )
}


class UnknownMadError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown MAD {name!r}; known MADs: {', '.join(MADS)}")
        self.name = name


def mad_info(name: str) -> MadInfo:
    try:
        return MADS[name]
    except KeyError:
        raise UnknownMadError(name) from None

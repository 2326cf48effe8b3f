"""A sixth MAD for tests, installed as a package of its own would be: a contract registered
under the ``mads.services`` entry points (:func:`installed` writes the distribution's
metadata into a directory for ``PYTHONPATH``) and a service ``mad-run toy`` builds. Nothing
in the control plane names it; the group takes it from the registry of contracts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mads.core.contract import ENTRY_POINT_GROUP, MadContract

if TYPE_CHECKING:
    from mads.core.service import MadService

REPO = Path(__file__).resolve().parents[2]

NAME = "toy"
TOOL = "toy_echo"
CONTRACT = MadContract(
    name=NAME,
    port=8009,
    banner="ToyV1",
    service="tests.support.toy_mad:build",
    description="A toy MAD that echoes what it is sent.",
    tools=(TOOL,),
)


def build() -> MadService:
    # Like a MAD's contract, this module is imported with the registry: the service's
    # modules only when it is built.
    from mads.core.service import MadService
    from mads.core.settings import BusSettings, load_settings

    settings = load_settings(BusSettings, mad_name=NAME)
    service = MadService(NAME, settings, instructions="Echoes what it is sent.")
    service.use_bus(settings)

    @service.tool(TOOL, description="Answer with the text it is sent.")
    def toy_echo(text: str) -> dict[str, str]:
        return {"text": text}

    return service


def installed(site: Path) -> dict[str, str]:
    """Install the toy into ``site`` (its distribution's metadata, with the entry point)
    and return the environment under which Python finds it there, beside this
    repository's packages."""
    info = site / "madgroup_toy_mad-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: madgroup-toy-mad\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{NAME} = {__name__}:CONTRACT\n")
    path = os.pathsep.join(p for p in (str(site), str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}

"""The status block every MAD reports: ``/status`` serves it as JSON, ``mad-status`` prints it
in the guide's shape::

    [<Banner> Status]
    - MAD Name: <name>
    - Status: HEALTHY
    - Conversation Bus Connected: True
    - <the MAD's own lines, e.g. a database's status>
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

HEALTHY = "HEALTHY"
DEGRADED = "DEGRADED"


class StatusLine(BaseModel):
    label: str
    value: str
    ok: bool
    detail: str | None = None


class StatusReport(BaseModel):
    banner: str
    mad_name: str
    status: Literal["HEALTHY", "DEGRADED"]
    lines: list[StatusLine]

    @classmethod
    def build(cls, banner: str, mad_name: str, lines: list[StatusLine]) -> StatusReport:
        status = HEALTHY if all(line.ok for line in lines) else DEGRADED
        return cls(banner=banner, mad_name=mad_name, status=status, lines=lines)

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY

    def render_text(self) -> str:
        out = [
            f"[{self.banner} Status]",
            f"- MAD Name: {self.mad_name}",
            f"- Status: {self.status}",
        ]
        for line in self.lines:
            out.append(f"- {line.label}: {line.value}")
        return "\n".join(out)


def connected_line(label: str, connected: bool, detail: str | None = None) -> StatusLine:
    """``- <label> Connected: True|False``."""
    return StatusLine(
        label=f"{label} Connected", value=str(bool(connected)), ok=connected, detail=detail
    )

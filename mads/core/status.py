"""The status block every MAD reports: ``/status`` serves it as JSON, ``mad-status`` prints it
in the guide's shape::

    [<Banner> Status]
    - MAD Name: <name>
    - Status: HEALTHY
    - Conversation Bus Connected: True
    - <the MAD's own lines, e.g. a database's status>
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class Health(StrEnum):
    """The ``Status:`` line: HEALTHY when every line of the block is fine."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"


HEALTHY, DEGRADED = Health.HEALTHY, Health.DEGRADED


class StatusLine(BaseModel):
    label: str
    value: str
    ok: bool
    detail: str | None = None


class StatusReport(BaseModel):
    banner: str
    mad_name: str
    status: Health
    lines: list[StatusLine]

    @classmethod
    def build(cls, banner: str, mad_name: str, lines: list[StatusLine]) -> StatusReport:
        status = HEALTHY if all(line.ok for line in lines) else DEGRADED
        return cls(banner=banner, mad_name=mad_name, status=status, lines=lines)

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY

    def render_text(self) -> str:
        out = header_lines(self.banner, self.mad_name, self.status)
        for line in self.lines:
            out.append(render_line(line.label, line.value))
        return "\n".join(out)


def header_lines(banner: str, mad_name: str, status: str) -> list[str]:
    """The first three lines of ``mad-status``."""
    return [f"[{banner} Status]", f"- MAD Name: {mad_name}", f"- Status: {status}"]


def render_line(label: str, value: str) -> str:
    return f"- {label}: {value}"


CONNECTED_SUFFIX = " Connected"


def healthy_value(label: str) -> str:
    """What a line shows when it is fine: ``True`` for a connection, ``OK`` otherwise."""
    return "True" if label.endswith(CONNECTED_SUFFIX) else "OK"


def connected_line(label: str, connected: bool, detail: str | None = None) -> StatusLine:
    """``- <label> Connected: True|False``."""
    return StatusLine(
        label=f"{label}{CONNECTED_SUFFIX}", value=str(bool(connected)), ok=connected, detail=detail
    )

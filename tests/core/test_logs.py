"""The log formatter every MAD runs (mads/core/logs.py), in text and in JSON mode: whatever
a client puts in a value — 3 MB of it, control characters, a line break followed by a line
of the service's own, odd argument names — each record is one line, at most MAX_LINE
characters as written, and the client's part is quoted and cut short."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import pytest
from pydantic import Field

from mads.core.logs import MAX_LINE, QUIET_LOGGERS, configure_logging
from mads.core.service import MadService
from mads.core.settings import MadSettings

MEGABYTES_3 = 3 * 1024 * 1024
FORGED = "INFO:fiedler:Task x status changed to COMPLETED"
CONTROL = "a\x00b\x1b[31mred\rc\nd\u2028e\u2029f\x85g\x7f"
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class Output:
    log_format: str
    stream: io.StringIO

    def lines(self) -> list[str]:
        return self.stream.getvalue().split("\n")[:-1]


@pytest.fixture(params=["text", "json"])
def output(request: pytest.FixtureRequest) -> Iterator[Output]:
    """Logging configured as ``mad-run`` configures it, its handler writing to a buffer
    instead of stderr (all restored afterwards)."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in QUIET_LOGGERS})
    configure_logging(request.param)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        yield Output(str(request.param), stream)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def message_of(line: str, log_format: str) -> str:
    """The message part of a line, as a reader of that format sees it."""
    if log_format == "json":
        entry = json.loads(line)
        assert set(entry) == {"time", "level", "logger", "message"}
        return str(entry["message"])
    assert line.startswith("WARNING:fiedler:"), line[:100]
    return line.removeprefix("WARNING:fiedler:")


def check(lines: list[str], records: int) -> None:
    assert len(lines) == records, f"{len(lines)} lines for {records} records"
    for line in lines:
        assert len(line) <= MAX_LINE, f"a {len(line)}-character line"
        assert not CONTROL_CHARS.search(line), line[:200]
        assert not line.startswith(FORGED)


def test_a_3_mb_value_with_control_characters_is_one_capped_line(output: Output) -> None:
    log = logging.getLogger("fiedler")
    value = (CONTROL + "\n" + FORGED + "\n") * (MEGABYTES_3 // 70)
    assert len(value) >= MEGABYTES_3
    log.warning("Received %s", value)
    log.warning("Received %s", f"x\n{FORGED}")
    log.warning("%s", FORGED)  # a message that is nothing but a line of the service's
    lines = output.lines()
    check(lines, 3)
    big, small, bare = (message_of(line, output.log_format) for line in lines)
    assert big.startswith("Received a\\x00b\\x1b[31mred\\rc\\nd\\u2028e")
    assert re.search(r"\.\.\. \[\d+ more characters\]$", big), big[-80:]
    assert small == f"Received x\\n{FORGED}"
    assert bare == FORGED  # in a line that starts with the service's own level and name
    if output.log_format == "text":
        assert lines[2] == f"WARNING:fiedler:{FORGED}"


def test_refused_arguments_are_quoted_and_cut_short(output: Output) -> None:
    """What a MAD logs when it refuses a call: the unknown names a client sent (3 MB of one,
    a forged line in another, control characters) quoted and cut short, in one line."""
    service = MadService("fiedler", MadSettings(mad_name="fiedler"))

    @service.tool("fiedler_lookup", description="Look a name up.")
    def lookup(name: Annotated[str, Field(max_length=10)]) -> dict[str, str]:
        return {"name": name}

    huge = "k" * MEGABYTES_3
    refused = service.arguments.refusal(
        "fiedler_lookup", {huge: 1, f"\n{FORGED}": 2, CONTROL: 3, "name": "n"}
    )
    assert refused is not None and refused.is_error
    refused = service.arguments.refusal("fiedler_lookup", {"name": f"{huge}\n{FORGED}"})
    assert refused is not None
    lines = output.lines()
    check(lines, 2)
    unknown, too_long = (message_of(line, output.log_format) for line in lines)
    assert unknown.startswith("Refused call to fiedler_lookup: unknown argument(s): ")
    assert f"'\\n{FORGED[:20]}" in unknown  # quoted, escaped, cut
    assert "'a\\x00b\\x1b[31mred\\rc\\nd\\u2028e" in unknown
    names = unknown.removeprefix("Refused call to fiedler_lookup: unknown argument(s): ")
    names = names.removesuffix(" (expected: name)")
    shown = re.findall(r"'(?:[^'\\]|\\.)*'", names)
    assert len(shown) == 3 and all(len(name) <= 40 for name in shown), shown
    assert unknown.endswith("(expected: name)")
    assert too_long == (
        "Refused call to fiedler_lookup: name: must have at most 10 character(s)"
    ), "the value itself is not in the line"

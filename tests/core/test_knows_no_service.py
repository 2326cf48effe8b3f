"""The core knows no service: no MAD's name appears as a string in ``mads/core`` (the MADs
are found through their contracts' entry points), and every installed MAD is found."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

from mads.core.registry import contracts

CORE = Path(__file__).resolve().parents[2] / "mads" / "core"


def string_literals(path: Path) -> list[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(t.start[0], t.string) for t in tokens if t.type == tokenize.STRING]


def test_no_mad_name_is_written_in_the_core() -> None:
    names = list(contracts())
    found = [
        f"{path.relative_to(CORE.parent.parent)}:{line}: {text[:80]}"
        for path in sorted(CORE.rglob("*.py"))
        for line, text in string_literals(path)
        for name in names
        if name in text
    ]
    assert found == []


def test_every_mad_is_found_through_its_contract() -> None:
    found = contracts()
    assert list(found) == ["sequential_thinking", "grace", "rogers", "fiedler"]
    for name, contract in found.items():
        assert contract.service == f"mads.{name}.service:build"
        assert contract.build.__self__ is contract  # type: ignore[attr-defined]

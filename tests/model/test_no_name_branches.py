"""Substrate code treats every component alike: what differs between them is data in the
topology and the contracts, never a branch on a component's name. This finds any
comparison (``==``, ``!=``, ``in``, ``match``) against a component's name, written as a
string or as one of topology's name constants, in the substrate folders."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from madgroup import topology

PACKAGE = Path(topology.__file__).parent
SUBSTRATES = ("local", "compose", "kube")
NAMES = set(topology.COMPONENT_NAMES)
CONSTANTS = {
    attr
    for attr in dir(topology)
    if isinstance(getattr(topology, attr), str) and getattr(topology, attr) in NAMES
} | {"NAME", *(name.upper() for name in NAMES)}
"""Names a component's name goes by in code: topology's constants (REDIS), a contract's
``NAME`` and what it is imported as (``from mads.grace.contract import NAME as GRACE``)."""


def names_a_component(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in CONSTANTS
    if isinstance(node, ast.Name):
        return node.id in CONSTANTS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(names_a_component(element) for element in node.elts)
    return False


def sides(node: ast.AST) -> list[ast.AST]:
    """What a comparison compares: both sides of ``a == b``, the value of ``case b``."""
    if isinstance(node, ast.Compare):
        return [node.left, *node.comparators]
    if isinstance(node, ast.MatchValue):
        return [node.value]
    return []


def branches(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if any(names_a_component(side) for side in sides(node)):
            yield node


def substrate_files() -> list[Path]:
    return sorted(p for folder in SUBSTRATES for p in (PACKAGE / folder).rglob("*.py"))


def test_the_check_sees_every_substrate_and_finds_a_planted_branch() -> None:
    assert {p.parent.name for p in substrate_files()} == set(SUBSTRATES)
    assert {"REDIS", "GRACE", "FIEDLER"} <= CONSTANTS
    planted = ast.parse(
        "if name == 'fiedler': pass\n"
        "if comp.name in (GRACE, 'x'): pass\n"
        "match name:\n    case rogers_contract.NAME: pass\n"
        "if comp.probe.kind == topology.ProbeKind.REDIS_PING: pass\n"
    )
    assert len(list(branches(planted))) == 3


@pytest.mark.parametrize(
    "path", substrate_files(), ids=lambda p: str(p.relative_to(PACKAGE)).removesuffix(".py")
)
def test_no_component_name_comparison(path: Path) -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}"
        for node in branches(ast.parse(path.read_text()))
    ]
    assert not found, "a branch on a component's name:\n" + "\n".join(found)

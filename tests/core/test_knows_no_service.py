"""The core knows no service: no MAD's name appears in a string of ``mads/core``'s code
(the MADs are found through their contracts' entry points), and every installed MAD is
found. Docstrings and comments may name MADs as examples; code may not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mads.core.registry import contracts

CORE = Path(__file__).resolve().parents[2] / "mads" / "core"


def _names() -> re.Pattern[str]:
    spellings = set()
    for name in contracts():
        spellings |= {name, name.replace("_", " "), name.replace("_", "-")}
    return re.compile(r"\b(" + "|".join(map(re.escape, sorted(spellings))) + r")\b", re.I)


def code_strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant in the module's code (f-string parts included), but not the
    docstrings of modules, classes and functions."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
        if isinstance(node, ast.ClassDef | ast.Module):
            # attribute docstrings: a bare string right after an assignment
            for before, after in zip(node.body, node.body[1:], strict=False):
                if isinstance(before, ast.Assign | ast.AnnAssign) and isinstance(after, ast.Expr):
                    docstrings.add(id(after.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_mad_name_is_written_in_the_core() -> None:
    names = _names()
    found = [
        f"{path.relative_to(CORE.parent.parent)}:{line}: {text[:80]}"
        for path in sorted(CORE.rglob("*.py"))
        for line, text in code_strings(path)
        if names.search(text)
    ]
    assert found == []


def test_the_check_sees_code_strings_of_any_spelling(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Grace, in a docstring."""\n'
        'x = f"call it through Grace {1}"\n'
        'y = "Sequential Thinking"\n'
    )
    hits = sorted(text for _line, text in code_strings(probe) if _names().search(text))
    assert hits == ["Sequential Thinking", "call it through Grace "]


def test_every_mad_is_found_through_its_contract() -> None:
    found = contracts()
    assert list(found) == ["sequential_thinking", "grace", "rogers", "fiedler"]
    for name, contract in found.items():
        assert contract.service == f"mads.{name}.service:build"

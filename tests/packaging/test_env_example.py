"""``.env.example`` lists every setting a MAD or the control plane reads, with its default
and meaning, and nothing else: each MAD's settings classes (found through the installed
MADs' contracts), every variable the code reads from the environment itself, what the
compose file interpolates and what the local runner keeps in ``.env``. A field added to a
settings class alone fails here, and so does a documented variable nothing reads."""

from __future__ import annotations

import ast
import gc
import importlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from madgroup.compose import render
from madgroup.resolved import resolve
from madgroup.spec import parse_spec
from pydantic import SecretStr, TypeAdapter

from mads.core.registry import contracts
from mads.core.settings import MadSettings
from tests.support.mad_process import REPO

DOCUMENTED_LINE = re.compile(r"^# ([A-Z][A-Z0-9_]*)=(.*)$")
UNDOCUMENTED = {
    "REDIS_PASSWORD": "the guide reads it back with grep: the example never spells it",
    "REDIS_PASSWORD_FILE": "its name holds the guide's, which the example never spells",
    "MAD_NAME": "mad-run sets it: it is which MAD the process is",
    "POD_NAME": "Kubernetes sets it in the operator's pod (the downward API): its Lease name",
    "POD_NAMESPACE": "Kubernetes sets it in the operator's pod: where its Lease lives",
    "PATH": "the operating system's",
}
"""Read, and deliberately not in ``.env.example`` (why)."""
CODE = [REPO / "mads", REPO / "operator" / "madgroup"]


def documented(text: str | None = None) -> dict[str, str]:
    """``# NAME=DEFAULT`` lines, each under a comment saying what it is: name -> default."""
    lines = (text if text is not None else (REPO / ".env.example").read_text()).splitlines()
    found = {}
    for i, line in enumerate(lines):
        match = DOCUMENTED_LINE.match(line)
        if match is None:
            continue
        above = next(
            (lines[j] for j in range(i - 1, -1, -1) if not DOCUMENTED_LINE.match(lines[j])), ""
        )
        assert above.startswith("# ") and len(above) > 4, f"{match[1]} has no meaning above it"
        found[match[1]] = match[2]
    return found


def settings_classes() -> list[type[MadSettings]]:
    """Every settings class of the installed MADs (their services import them)."""
    for contract in contracts().values():
        importlib.import_module(contract.service.partition(":")[0])

    def below(cls: type[MadSettings]) -> Iterator[type[MadSettings]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    return [MadSettings, *below(MadSettings)]


def settings_fields() -> dict[str, Any]:
    """Every settings field, as its variable: name -> the field."""
    return {
        name.upper(): field
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
    }


def _env_reads(tree: ast.AST) -> Iterator[ast.expr]:
    """The names the code reads from an environment: ``os.environ[X]``,
    ``os.environ.get(X)``, ``os.getenv(X)``, ``env.get(X)`` for an environment ``env``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            if isinstance(node.ctx, ast.Load):
                yield node.slice
        elif isinstance(node, ast.Call) and node.args:
            called = ast.unparse(node.func)
            if called in ("os.getenv", "getenv") or (
                called.endswith(".get") and called.removesuffix(".get") in ("os.environ", "env")
            ):
                yield node.args[0]


def direct_reads() -> dict[str, str]:
    """What the code reads from the environment itself, by name (a module-level constant or
    a literal; a ``{}`` template, ``MADGROUP_DELAY_{}_S``, as a pattern): name -> module."""
    found: dict[str, str] = {}
    for root in CODE:
        for path in root.rglob("*.py"):
            module_name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
            module_name = module_name.removesuffix(".__init__")
            tree = ast.parse(path.read_text())
            reads = list(_env_reads(tree))
            if not reads:
                continue
            module = importlib.import_module(module_name)
            for expr in reads:
                if isinstance(expr, ast.Call) and ast.unparse(expr.func).endswith(".format"):
                    expr = expr.func.value  # type: ignore[attr-defined]
                try:
                    value = eval(ast.unparse(expr), dict(vars(module)))
                except NameError:  # a local variable: a name that is read elsewhere
                    continue
                if isinstance(value, str) and value:
                    found[value] = module_name
    return found


def read_variables() -> dict[str, str]:
    """Every variable something reads: name (or ``{}`` pattern) -> who reads it."""
    found = {name: "a MAD's settings" for name in settings_fields()}
    found.update(direct_reads())
    compose = (REPO / render.COMPOSE_FILE).read_text().replace("$$", "")
    found.update(dict.fromkeys(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose), "compose"))
    found.update(dict.fromkeys(render.BUILD_ARGS, "compose's image builds"))
    found["COMPOSE_FILE"] = "docker compose itself"
    found.update(dict.fromkeys(resolve(parse_spec({})).secret_keys, "the local runner's .env"))
    return found


def _covers(pattern: str, name: str) -> bool:
    return bool(re.fullmatch(re.escape(pattern).replace(r"\{\}", "[A-Z_]+"), name))


def undocumented(listed: dict[str, str]) -> list[str]:
    return sorted(
        f"{name} (read by {who})"
        for name, who in read_variables().items()
        if name not in UNDOCUMENTED and not any(_covers(name, d) for d in listed)
    )


def test_every_setting_read_is_in_env_example() -> None:
    assert undocumented(documented()) == []


def test_env_example_lists_nothing_that_is_not_read() -> None:
    read = read_variables()
    unread = [name for name in documented() if not any(_covers(r, name) for r in read)]
    assert unread == []


def test_each_default_in_env_example_is_the_settings_default() -> None:
    listed = documented()
    wrong = []
    for name, field in settings_fields().items():
        if name in UNDOCUMENTED or field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        text = listed[name]
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if text == "" and default in (None, ""):
            continue
        if TypeAdapter(field.annotation).validate_python(text) != default:
            wrong.append(f"{name}={text} (default {default!r})")
    assert wrong == []


def test_a_field_added_to_a_settings_class_alone_fails_the_check() -> None:
    from mads.core.settings import BusSettings

    class Extended(BusSettings):
        redis_brand_new_knob: int = 7

    try:
        assert undocumented(documented()) == ["REDIS_BRAND_NEW_KNOB (read by a MAD's settings)"]
        with_it = (REPO / ".env.example").read_text() + "# A new knob.\n# REDIS_BRAND_NEW_KNOB=7\n"
        assert undocumented(documented(with_it)) == []
    finally:
        del Extended
        gc.collect()
    assert undocumented(documented()) == []


@pytest.mark.parametrize("text", ["# REDIS_PORT=6379\n", "# MAD_HOST=0.0.0.0\n"])
def test_a_variable_without_its_meaning_is_not_documented(text: str) -> None:
    with pytest.raises(AssertionError, match="has no meaning above it"):
        documented(text)

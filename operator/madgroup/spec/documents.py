"""Reading a MadGroup: a file's one document (or the built-in group), validated into the
model with one line naming every offending field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from madgroup.spec.model import API_VERSION, KIND, FieldRuleError, InvalidSpecError, MadGroupSpec
from madgroup.spec.substrates import KUBERNETES_ONLY

ModelT = type[MadGroupSpec]


@dataclass(frozen=True)
class Document:
    """A MadGroup document as read from a file."""

    name: str
    raw_spec: Mapping[str, Any]
    path: Path | None = None


# The API server's words for what its schema checks, so that a MadGroup refused by
# `kubectl apply` and by `madgroup up -f` reads the same (the CEL rules carry our own).
_SERVER_WORDS = {
    "less_than_equal": "should be less than or equal to {le}",
    "greater_than_equal": "should be greater than or equal to {ge}",
}


def describe(exc: ValidationError, root: str = "spec", *, neutral: bool = True) -> str:
    """One line naming every offending field. ``neutral``: the declaration was read for a
    substrate that takes the neutral model, so a field only Kubernetes has is named as such;
    read for Kubernetes, a field its model lacks where it stands is unknown."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        rule = (err.get("ctx") or {}).get("error")
        if isinstance(rule, FieldRuleError):  # a rule across fields, named at its field
            loc.append(rule.field)
        where = ".".join(loc)
        path = f"{root}.{where}" if where else root
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            if neutral and str(err["loc"][-1]) in KUBERNETES_ONLY:
                msg = (
                    "only Kubernetes honours it; remove it for docker compose and the local runner"
                )
            else:
                problems.append(f'unknown field "{path}"')
                continue
        elif err["type"] in _SERVER_WORDS:
            msg = _SERVER_WORDS[err["type"]].format(**(err.get("ctx") or {}))
        problems.append(f"{path}: {msg}")
    return "; ".join(problems)


def parse_spec(raw: Any, model: ModelT = MadGroupSpec) -> MadGroupSpec:
    """Validate a raw ``spec`` into ``model`` (a substrate's extension of it, or this one),
    or raise :class:`InvalidSpecError` naming every offending field."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidSpecError(describe(exc, neutral=model is MadGroupSpec)) from None


def read_document(path: Path) -> Document:
    """A MadGroup file: one YAML document with ``apiVersion: madgroup.io/v1alpha1``,
    ``kind: MadGroup``, ``metadata.name`` and ``spec``. Raises :class:`InvalidSpecError`
    (one line) for anything else."""
    import yaml  # only a file needs it: ``madgroup up`` without -f starts without it

    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSpecError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidSpecError(f"{path}: not valid YAML{where}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InvalidSpecError(f"{path}: expected one MadGroup document")
    doc = docs[0]
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise InvalidSpecError(
            f"{path}: not a MadGroup (apiVersion: {API_VERSION}, kind: {KIND} expected)"
        )
    metadata = doc.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidSpecError(f"{path}: metadata.name is required")
    raw = doc.get("spec") or {}
    if not isinstance(raw, dict):
        raise InvalidSpecError(f"{path}: spec must be a mapping")
    return Document(name=name, raw_spec=raw, path=path)


def default_document() -> Document:
    """The built-in group: what ``madgroup up`` runs with no file."""
    return Document(name="madgroup", raw_spec={})


def load(path: Path | None, model: ModelT = MadGroupSpec) -> tuple[Document, MadGroupSpec]:
    """A MadGroup file (or, with no path, the built-in group), validated."""
    document = read_document(path) if path is not None else default_document()
    return document, parse_spec(document.raw_spec, model)

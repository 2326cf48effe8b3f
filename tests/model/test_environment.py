"""The one computation of each component's environment (madgroup.environment): every field
of the declaration reaches an environment or is one a substrate acts on itself; only what
the declaration sets is rendered; no MAD gets the administrator's password, even by a
declared secret naming it; the typed entries survive the local runner's JSON."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from madgroup import environment, topology
from madgroup.environment import Credential, CredentialKind, Secret, Value
from madgroup.resolved import resolve
from madgroup.spec import InvalidSpecError, MadGroupSpec, RedisSpec, parse_spec
from pydantic import BaseModel


def field_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf field of a settings class, as a path (``llm.baseUrl``)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from field_paths(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_declared_field_reaches_an_environment_or_its_substrate() -> None:
    spec = parse_spec({})
    for comp in topology.COMPONENTS:
        settings = spec.component(comp.name)
        rows = {row.field for row in environment.declared_rows(settings)}
        rows |= {row.field for row in environment.option_rows(settings)}
        own = {"passwordSecretRef"} if isinstance(settings, RedisSpec) else set()
        for path in field_paths(type(settings)):
            top = path.split(".", 1)[0]
            assert path in rows or top in environment.NOT_ENVIRONMENT | own, (comp.name, path)


def test_the_declaration_renders_what_it_sets_and_no_default() -> None:
    def fiedler(raw: dict[str, object]) -> dict[str, str]:
        entries = resolve(parse_spec({"fiedler": raw})).of("fiedler").environment
        return {e.variable: e.value for e in entries if isinstance(e, Value)}

    assert "FIEDLER_LLM_PROVIDER" not in fiedler({})
    assert "FIEDLER_LLM_PROVIDER" not in fiedler({"llm": {}})
    assert fiedler({"llm": {"provider": "builtin"}})["FIEDLER_LLM_PROVIDER"] == "builtin"
    chosen = fiedler({"llm": {"provider": "openai", "baseUrl": "http://x:1/v1", "model": "m"}})
    assert chosen["FIEDLER_LLM_BASE_URL"] == "http://x:1/v1" and chosen["FIEDLER_LLM_MODEL"] == "m"


def test_no_mad_gets_the_administrators_password() -> None:
    group = resolve(parse_spec({"redis": {"passwordSecretRef": {"name": "a", "key": "ADMIN"}}}))
    assert group.admin.dotenv_key == "ADMIN"
    for part in group:
        kinds = {e.kind for e in part.environment if isinstance(e, Credential)}
        assert (CredentialKind.ADMIN_PASSWORD in kinds) == (not part.component.is_mad)
    for named in ({"name": "x", "key": "ADMIN"}, {"name": "a", "key": "ADMIN"}):
        raw = {
            "redis": {"passwordSecretRef": {"name": "a", "key": "ADMIN"}},
            "grace": {"tokenSecretRef": named},
        }
        with pytest.raises(InvalidSpecError, match=r"spec\.grace\.tokenSecretRef: names the admin"):
            resolve(parse_spec(raw))
    with pytest.raises(InvalidSpecError, match="names the administrator's Redis password"):
        resolve(parse_spec({"grace": {"tokenSecretRef": {"name": "x", "key": "REDIS_PASSWORD"}}}))


def test_the_one_list_of_env_secrets() -> None:
    group = resolve(
        parse_spec(
            {
                "redis": {"passwordSecretRef": {"name": "a", "key": "ADMIN"}},
                "grace": {"tokenSecretRef": {"name": "t", "key": "FRONT"}},
            }
        )
    )
    keys = group.secret_keys
    assert {"REDIS_PASSWORD", "ADMIN", "FRONT", "GRACE_API_TOKENS", "FIEDLER_LLM_API_KEY"} <= keys
    assert {topology.bus_password_variable(u) for u in topology.bus_users()} <= keys
    assert {topology.INTERNAL_TOKEN_VARIABLE, topology.METRICS_TOKEN_VARIABLE} <= keys
    # Grace's tokens are the declaration's now; what it leaves alone each still takes.
    assert group.of("grace").passes_through == {"GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET"}
    assert group.of("fiedler").passes_through == {"FIEDLER_LLM_API_KEY", "FIEDLER_STORE_URI"}


def test_entries_survive_the_local_runners_json() -> None:
    spec = parse_spec(
        {
            "tls": {"enabled": True},
            "redis": {"passwordSecretRef": {"name": "a", "key": "ADMIN"}},
            "grace": {
                "tokenSecretRef": {"name": "t", "key": "FRONT"},
                "tokens": [{"name": "n", "sha256": "0" * 64}],
            },
        }
    )
    for part in resolve(spec):
        assert environment.from_json(environment.to_json(part.environment)) == part.environment
    kinds = {type(e) for part in resolve(spec) for e in part.environment}
    assert kinds == set(environment.KINDS.values())


def test_a_secret_entry_keeps_where_the_declaration_names_it() -> None:
    spec = parse_spec({"grace": {"tokenSecretRef": {"name": "t", "key": "FRONT"}}})
    (secret,) = [e for e in resolve(spec).of("grace").environment if isinstance(e, Secret)]
    assert (secret.variable, secret.ref.key) == ("GRACE_API_TOKENS", "FRONT")
    assert secret.ref.source == "spec.grace.tokenSecretRef"
    assert isinstance(spec, MadGroupSpec)

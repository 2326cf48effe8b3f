"""Fiedler's task store and replicas, and Grace's OAuth, in the declaration: what is refused
(one line, at the field it is about), what each substrate honours, and what reaches each
environment — the secrets by reference only, never a value in a rendered file."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from madgroup import topology
from madgroup.compose import render
from madgroup.environment import DataPath, File, Secret, Value
from madgroup.resolved import resolve
from madgroup.spec import InvalidSpecError, parse_spec, substrates
from madgroup.spec.documents import Document

from mads.grace.scope_file import ScopeMapFile

STORE = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app", "key": "TASKS_URI"}}
SCOPES = {
    "scopes": {
        "mad.fiedler": {"tools": ["fiedler_converse", "fiedler_get_task_status"]},
        "mad.bus": {"tools": ["grace_*"], "topics": ["mad.topic.*", "mad.stream.*"]},
    },
    "limits": {"requests_per_second": 20, "concurrent_calls": 4},
    "subjects": {"batch-client": {"limits": {"requests_per_second": 100}}},
}
OAUTH = {
    "issuer": "https://id.example.com",
    "resource": "https://grace.example.com/mcp",
    "scopes": SCOPES,
}

REFUSED = [
    (
        {"fiedler": {"replicas": 2}},
        "spec.fiedler.replicas: more than one replica needs store.type postgresql (the SQLite "
        "store has one writer, so Fiedler runs one replica on it)",
    ),
    (
        {"fiedler": {"replicas": 2, "store": {"type": "sqlite"}}},
        "spec.fiedler.replicas: more than one replica needs store.type postgresql",
    ),
    ({"fiedler": {"store": {"type": "postgresql"}}}, "spec.fiedler.store: type postgresql needs"),
    (
        {"fiedler": {"store": {"uriSecretRef": {"name": "x"}}}},
        "spec.fiedler.store: uriSecretRef applies only to type postgresql",
    ),
    (
        {"fiedler": {"store": {"type": "mysql"}}},
        "spec.fiedler.store.type: Input should be 'sqlite' or 'postgresql'",
    ),
    ({"fiedler": {"replicas": 21, "store": STORE}}, "spec.fiedler.replicas: should be less"),
    ({"rogers": {"replicas": 2}}, "spec.rogers.replicas: should be less than or equal to 1"),
    (
        {"grace": {"oauth": {"issuer": "https://id.example.com"}}},
        "spec.grace.oauth: issuer needs resource and scopes",
    ),
    (
        {"grace": {"oauth": {"resource": "https://grace.example.com/mcp"}}},
        "spec.grace.oauth: resource, audience, scopes and introspection apply only with an issuer",
    ),
    (
        {"grace": {"oauth": {"staticTokens": False}}},
        "spec.grace.oauth: staticTokens: false needs an issuer (or nobody gets in)",
    ),
    (
        {
            "grace": {
                "tokenSecretRef": {"name": "t", "key": "FRONT"},
                "oauth": {**OAUTH, "staticTokens": False},
            }
        },
        "spec.grace: oauth.staticTokens is false: remove tokenSecretRef and tokens",
    ),
    (
        {"grace": {"oauth": {**OAUTH, "introspection": {"url": "https://id.example.com/i"}}}},
        "spec.grace.oauth.introspection: url needs clientId and clientSecretRef",
    ),
    (
        {"grace": {"oauth": {**OAUTH, "introspection": {"clientId": "grace"}}}},
        "spec.grace.oauth.introspection: clientId and clientSecretRef apply only with a url",
    ),
    (
        {"grace": {"oauth": {**OAUTH, "issuer": "id.example.com"}}},
        "spec.grace.oauth.issuer: String should match pattern",
    ),
    (
        {"grace": {"oauth": {**OAUTH, "scopes": {"scopes": {"two words": {}}}}}},
        "spec.grace.oauth.scopes.scopes.two words.[key]: String should match pattern",
    ),
    (
        {"grace": {"oauth": {**OAUTH, "scopes": {"scopes": {}, "colour": 1}}}},
        'unknown field "spec.grace.oauth.scopes.colour"',
    ),
]


@pytest.mark.parametrize(("raw", "message"), REFUSED)
def test_what_the_declaration_refuses_is_one_line_at_its_field(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec(raw)
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)


def _entries(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return {e.variable: e for e in resolve(parse_spec(raw)).of(name).environment}


def test_the_store_reaches_fiedlers_environment_the_uri_by_reference() -> None:
    default = _entries({}, "fiedler")
    assert isinstance(default["FIEDLER_DB_PATH"], DataPath)
    assert "FIEDLER_STORE" not in default and "FIEDLER_STORE_URI" not in default

    shared = _entries({"fiedler": {"replicas": 3, "store": STORE}}, "fiedler")
    assert shared["FIEDLER_STORE"] == Value("FIEDLER_STORE", "postgresql")
    uri = shared["FIEDLER_STORE_URI"]
    assert isinstance(uri, Secret)
    assert (uri.ref.name, uri.ref.key) == ("tasks-app", "TASKS_URI")
    assert uri.ref.source == "spec.fiedler.store.uriSecretRef"
    assert "FIEDLER_DB_PATH" not in shared  # no data file: PostgreSQL holds the tasks
    assert "FIEDLER_REPLICAS" not in shared  # scaling never changes the pods' template

    # A CloudNativePG cluster's <cluster>-app Secret keeps its URI under "uri".
    cnpg_store = {"type": "postgresql", "uriSecretRef": {"name": "tasks-app"}}
    cnpg = _entries({"fiedler": {"store": cnpg_store}}, "fiedler")
    assert cnpg["FIEDLER_STORE_URI"].ref.key == "uri"


def test_a_shared_store_takes_fiedlers_volume_away_and_says_where_its_data_is() -> None:
    default = resolve(parse_spec({})).of("fiedler")
    assert default.keeps_volume and default.max_replicas == 1
    assert default.data_file is not None and default.data_elsewhere is None
    group = resolve(parse_spec({"fiedler": {"replicas": 3, "store": STORE}}))
    shared = group.of("fiedler")
    assert not shared.keeps_volume and shared.data_file is None
    assert shared.max_replicas is None
    (line,) = group.not_backed_up().values()
    assert line.startswith("fiedler's data is in PostgreSQL")
    assert "pg_dump" in line and "CloudNativePG" in line
    assert resolve(parse_spec({})).not_backed_up() == {}
    assert group.of("redis").keeps_volume  # the bus keeps its data, whatever the store


def test_compose_and_the_local_runner_run_fiedlers_replicas_and_one_of_the_rest() -> None:
    many = parse_spec({"fiedler": {"replicas": 3, "store": STORE}})
    for honoured in (substrates.COMPOSE, substrates.LOCAL):
        substrates.check(many, honoured)  # Fiedler is reached through the bus alone
        for name in ("grace", "sequential_thinking"):
            field = "sequentialThinking" if name == "sequential_thinking" else name
            with pytest.raises(InvalidSpecError) as refused:
                substrates.check(parse_spec({field: {"replicas": 2}}), honoured)
            assert str(refused.value).startswith(f"spec.{field}.replicas: others reach it")
            assert "more replicas need Kubernetes" in str(refused.value)
    reached = {c.name for c in topology.COMPONENTS if topology.reached_at_address(c)}
    assert reached == {"redis", "sequential_thinking", "grace"}


def _compose(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    files = render.render_files(Document(name="demo", raw_spec=raw))
    return yaml.safe_load(files[render.COMPOSE_FILE]), files


def test_compose_scales_fiedler_on_postgresql_without_a_volume() -> None:
    document, _ = _compose({"fiedler": {"replicas": 3, "store": STORE}})
    fiedler = document["services"]["fiedler"]
    assert fiedler["deploy"] == {"replicas": 3}
    assert "container_name" not in fiedler and "ports" not in fiedler
    assert not [v for v in fiedler["volumes"] if v.endswith(":/data")]
    assert "fiedler_data" not in document["volumes"] and "redis_data" in document["volumes"]
    env = fiedler["environment"]
    assert env["FIEDLER_STORE"] == "postgresql"
    assert env["FIEDLER_STORE_URI"] == "${TASKS_URI:?TASKS_URI must be set in .env}"
    assert "FIEDLER_DB_PATH" not in env
    # The URI's .env key is blanked for every other service, as every secret is.
    for name, service in document["services"].items():
        if name not in ("fiedler", render.CREDENTIALS_SERVICE):
            assert service["environment"]["TASKS_URI"] == "", name
    # The default group: the guide's one Fiedler on its volume, no deploy section.
    default, _ = _compose({})
    assert "deploy" not in default["services"]["fiedler"]
    assert "fiedler_data:/data" in default["services"]["fiedler"]["volumes"]


def test_graces_oauth_reaches_its_environment_the_scope_map_as_a_file() -> None:
    raw = {
        "grace": {
            "oauth": {
                **OAUTH,
                "audience": ["https://grace.example.com/mcp", "grace"],
                "staticTokens": False,
                "introspection": {
                    "url": "https://id.example.com/oauth2/introspect",
                    "clientId": "grace",
                    "clientSecretRef": {"name": "grace-oauth", "key": "GRACE_CLIENT_SECRET"},
                },
            }
        }
    }
    env = _entries(raw, "grace")
    values = {k: v.value for k, v in env.items() if isinstance(v, Value)}
    assert values["GRACE_OAUTH_ISSUER"] == "https://id.example.com"
    assert values["GRACE_OAUTH_RESOURCE"] == "https://grace.example.com/mcp"
    assert values["GRACE_OAUTH_AUDIENCE"] == "https://grace.example.com/mcp,grace"
    assert values["GRACE_STATIC_TOKENS"] == "off"
    assert values["GRACE_OAUTH_INTROSPECTION_CLIENT_ID"] == "grace"
    secret = env["GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET"]
    assert isinstance(secret, Secret) and secret.ref.key == "GRACE_CLIENT_SECRET"
    scopes = env["GRACE_OAUTH_SCOPES_FILE"]
    assert isinstance(scopes, File)
    assert ScopeMapFile.model_validate_json(scopes.content) == ScopeMapFile.model_validate(SCOPES)
    # Static tokens on (the default) is Grace's own default: nothing rendered for it.
    assert "GRACE_STATIC_TOKENS" not in _entries({"grace": {"oauth": OAUTH}}, "grace")
    assert not [v for v in _entries({}, "grace") if "OAUTH" in v or "STATIC" in v]

    # compose: the scope map written beside docker-compose.yml, the client secret from .env.
    document, files = _compose(raw)
    grace = document["services"]["grace"]
    assert grace["environment"]["GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET"] == (
        "${GRACE_CLIENT_SECRET:?GRACE_CLIENT_SECRET must be set in .env}"
    )
    written = files[render.declared_file(topology.component("grace"), "GRACE_OAUTH_SCOPES_FILE")]
    assert ScopeMapFile.model_validate(json.loads(written)) == ScopeMapFile.model_validate(SCOPES)
    mount = f"{render.FILES_MOUNT}/GRACE_OAUTH_SCOPES_FILE"
    assert grace["environment"]["GRACE_OAUTH_SCOPES_FILE"] == mount
    assert any(v.endswith(f":{mount}:ro") for v in grace["volumes"])

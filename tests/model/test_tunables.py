"""The declaration's tunables: typed fields refused in one line when wrong; each rendered as
a variable its component reads (or, for Redis, on its command line, always with the group's
default); an extra ``env`` that names a variable the group owns refused with the field to
use instead; and, on Kubernetes, a setting changes the pod templates of the components it
reaches and no other (so only those roll). That every substrate gives a component the same
environment is tests/model/test_one_environment.py's."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from madgroup import environment, topology
from madgroup.environment import Value
from madgroup.kube import crd, objects
from madgroup.resolved import resolve
from madgroup.spec import InvalidSpecError, parse_spec
from madgroup.spec.model import field_name

from mads.core.registry import contracts
from mads.core.settings import MadSettings

OWNER = objects.Owner("demo", "team-a", "uid-1")


def values(raw: dict[str, Any], component: str) -> dict[str, str]:
    entries = resolve(parse_spec(raw)).of(component).environment
    return {e.variable: e.value for e in entries if isinstance(e, Value)}


def settings_variables(component: str) -> set[str]:
    """Every variable a MAD's settings read (the settings classes its service module uses)."""
    module = importlib.import_module(contracts()[component].service.partition(":")[0])
    classes = [
        v for v in vars(module).values() if isinstance(v, type) and issubclass(v, MadSettings)
    ]
    return {name.upper() for cls in classes for name in cls.model_fields}


def test_every_declared_variable_is_one_its_component_reads() -> None:
    spec = parse_spec({})
    for comp in topology.COMPONENTS:
        rows = environment.declared_rows(spec.component(comp.name))
        group_rows = [row for row, reaches in environment.GROUP_DECLARED if reaches(comp)]
        if not comp.is_mad:
            assert not rows and not group_rows, comp.name
            continue
        reads = settings_variables(comp.name)
        for row in (*rows, *group_rows):
            assert row.variable in reads, (comp.name, row.field, row.variable)


def test_the_tunables_reach_the_variables_their_components_read() -> None:
    raw = {
        "heartbeatSeconds": 2,
        "relayBacklogLimit": 1000,
        "fiedler": {
            "concurrency": 64,
            "llm": {"timeoutSeconds": 45.5},
            "retention": {"maxAge": "7d", "maxTasks": 100000},
        },
        "grace": {"maxInFlight": 512, "limits": {"requestsPerSecond": 20, "concurrentCalls": 8}},
    }
    fiedler = values(raw, "fiedler")
    assert fiedler["FIEDLER_MAX_CONCURRENCY"] == "64"
    assert fiedler["FIEDLER_LLM_TIMEOUT_S"] == "45.5"
    assert fiedler["FIEDLER_RETENTION_MAX_AGE_S"] == str(7 * 86_400)
    assert fiedler["FIEDLER_RETENTION_MAX_TASKS"] == "100000"
    grace = values(raw, "grace")
    assert grace["GRACE_MAX_INFLIGHT"] == "512"
    assert grace["GRACE_DEFAULT_REQUESTS_PER_SECOND"] == "20"
    assert grace["GRACE_DEFAULT_CONCURRENT_CALLS"] == "8"
    assert "GRACE_MAX_INFLIGHT" not in fiedler  # Grace's own, not every MAD's
    # The heartbeat reaches the MADs on the bus, the ones that beat or listen for beats.
    for comp in topology.COMPONENTS:
        beat = values(raw, comp.name).get("MAD_HEARTBEAT_S")
        assert beat == ("2" if comp.bus_user is not None else None), comp.name
        limit = values(raw, comp.name).get("MAD_RELAY_BACKLOG_LIMIT")
        assert limit == ("1000" if comp.bus_user is not None else None), comp.name
    # Nothing declared: nothing rendered (each MAD's default, or .env's, holds).
    for comp in topology.COMPONENTS:
        rendered = set(values({}, comp.name))
        declared = {
            row.variable for row in environment.declared_rows(parse_spec({}).component(comp.name))
        }
        assert not rendered & (declared | {"MAD_HEARTBEAT_S"}), comp.name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"fiedler": {"concurrency": 0}},
            "spec.fiedler.concurrency: should be greater than or equal to 1",
        ),
        (
            {"fiedler": {"concurrency": 5000}},
            "spec.fiedler.concurrency: should be less than or equal to 1024",
        ),
        ({"fiedler": {"concurrency": "many"}}, "spec.fiedler.concurrency: "),
        ({"fiedler": {"llm": {"timeoutSeconds": 0}}}, "spec.fiedler.llm.timeoutSeconds: "),
        ({"fiedler": {"retention": {"maxAge": "7 days"}}}, "spec.fiedler.retention.maxAge: "),
        ({"fiedler": {"retention": {"maxTasks": 0}}}, "spec.fiedler.retention.maxTasks: "),
        ({"heartbeatSeconds": 0}, "spec.heartbeatSeconds: should be greater than or equal to 0.1"),
        ({"grace": {"maxInFlight": 0}}, "spec.grace.maxInFlight: "),
        ({"grace": {"limits": {"requestsPerSecond": -1}}}, "spec.grace.limits.requestsPerSecond: "),
        ({"grace": {"limits": {"concurrentCalls": 0}}}, "spec.grace.limits.concurrentCalls: "),
        (
            {"redis": {"maxmemory": "10Mi"}},
            "spec.redis.maxmemory: 10Mi is too little for Redis (at least 16Mi)",
        ),
        ({"redis": {"maxmemory": "lots"}}, "spec.redis.maxmemory: "),
        (
            {"redis": {"maxmemoryPolicy": "evict-all"}},
            "spec.redis.maxmemoryPolicy: Input should be 'noeviction'",
        ),
        ({"fiedler": {"env": {"1BAD": "x"}}}, "spec.fiedler.env: '1BAD' is not a variable name"),
    ],
)
def test_a_wrong_tunable_is_refused_in_one_line(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec(raw)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("component", "variable", "instead"),
    [
        ("fiedler", "FIEDLER_MAX_CONCURRENCY", "declare spec.fiedler.concurrency instead"),
        ("grace", "MAD_HEARTBEAT_S", "declare spec.heartbeatSeconds instead"),
        ("grace", "GRACE_MAX_INFLIGHT", "declare spec.grace.maxInFlight instead"),
        ("fiedler", "GRACE_MAX_INFLIGHT", "it cannot be set through env"),  # Grace's field
        ("fiedler", "FIEDLER_SOMETHING_NEW", "it cannot be set through env"),  # its prefix
        ("rogers", "REDIS_PASSWORD", "it cannot be set through env"),
        ("grace", "GRACE_API_TOKENS_FILE", "declare spec.grace.tokenSecretRef instead"),
        ("redis", "MAD_METRICS_TOKEN", "it cannot be set through env"),
    ],
)
def test_an_extra_env_naming_the_groups_variable_is_refused(
    component: str, variable: str, instead: str
) -> None:
    raw = {field_name(component): {"env": {variable: "1"}}}
    with pytest.raises(InvalidSpecError) as refused:
        resolve(parse_spec(raw))
    assert str(refused.value) == (
        f"spec.{field_name(component)}.env.{variable}: MadGroup sets or reads this variable "
        f"itself; {instead}"
    )


def test_an_extra_env_of_its_own_comes_after_the_groups() -> None:
    raw = {"fiedler": {"env": {"OTEL_SERVICE_NAME": "fiedler-a", "HTTPS_PROXY": "http://p:3128"}}}
    entries = resolve(parse_spec(raw)).of("fiedler").environment
    assert [(e.variable, e.value) for e in entries[-2:] if isinstance(e, Value)] == [
        ("HTTPS_PROXY", "http://p:3128"),
        ("OTEL_SERVICE_NAME", "fiedler-a"),
    ]
    assert "OTEL_SERVICE_NAME" not in values({}, "fiedler")
    assert "OTEL_SERVICE_NAME" not in values(raw, "grace")


def redis_options(raw: dict[str, Any], kube: bool = False) -> list[str]:
    spec = crd.parse(raw) if kube else parse_spec(raw)
    command = resolve(spec).of("redis").command(users_file="/acl")
    at = command.index("--maxmemory")
    return command[at:]


def test_redis_always_runs_with_a_memory_limit_and_noeviction_by_default() -> None:
    assert redis_options({}) == ["--maxmemory", "1gb", "--maxmemory-policy", "noeviction"]
    declared = {"redis": {"maxmemory": "512Mi", "maxmemoryPolicy": "allkeys-lru"}}
    assert redis_options(declared) == ["--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"]
    assert redis_options({"redis": {"maxmemory": "100M"}})[1] == "100000000"
    # On Kubernetes under a memory limit and nothing declared: 3/4 of the limit.
    limited = {"redis": {"resources": {"limits": {"memory": "2Gi"}}}}
    assert redis_options(limited, kube=True)[:2] == ["--maxmemory", "1536mb"]
    too_much = {"redis": {"maxmemory": "2Gi", "resources": {"limits": {"memory": "2Gi"}}}}
    with pytest.raises(InvalidSpecError, match=r"maxmemory 2Gi must stay below resources\.limits"):
        crd.parse(too_much)
    with pytest.raises(ValueError, match="takes its settings from its environment"):
        topology.component("fiedler").command(options=("--maxmemory", "1gb"))


def templates(raw: dict[str, Any]) -> dict[str, Any]:
    """Each component's workload as the operator renders it (its pod template holds its
    environment and command)."""
    spec = crd.parse(raw)
    found = {}
    for part in resolve(spec):
        (workload,) = [
            m
            for m in objects.component_objects(OWNER, spec, part)
            if m["kind"] in ("Deployment", "StatefulSet")
        ]
        found[part.name] = workload
    return found


@pytest.mark.parametrize(
    ("raw", "reaches"),
    [
        ({"fiedler": {"concurrency": 64}}, {"fiedler"}),
        ({"fiedler": {"llm": {"timeoutSeconds": 30}}}, {"fiedler"}),
        ({"fiedler": {"retention": {"maxAge": "1d"}}}, {"fiedler"}),
        ({"grace": {"limits": {"requestsPerSecond": 5}}}, {"grace"}),
        ({"redis": {"maxmemory": "256Mi"}}, {"redis"}),
        ({"redis": {"maxmemoryPolicy": "allkeys-lfu"}}, {"redis"}),
        ({"heartbeatSeconds": 1}, {"grace", "rogers", "fiedler"}),
        ({"relayBacklogLimit": 1000}, {"grace", "rogers", "fiedler"}),
        ({"sequentialThinking": {"env": {"OTEL_SERVICE_NAME": "st"}}}, {"sequential_thinking"}),
    ],
)
def test_a_setting_changes_the_templates_of_the_components_it_reaches_only(
    raw: dict[str, Any], reaches: set[str]
) -> None:
    before, after = templates({}), templates(raw)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == reaches
    for name in changed:  # the pod template changed, so the workload's pods roll
        assert before[name]["spec"]["template"] != after[name]["spec"]["template"]

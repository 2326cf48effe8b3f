"""The monitoring the chart ships: the alert rules pass ``promtool check rules`` and their
unit tests (``promtool test rules``: each alert fires on what should fire it and stays
silent otherwise), and every metric a rule or a dashboard panel names is one the MADs
really export, read from a live ``/metrics`` of each MAD of a running group."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.group import ProcessGroup, process_group
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "charts" / "madgroup-operator" / "files"
RULES = FILES / "prometheus-rules.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"
RULE_TESTS = ROOT / "monitoring" / "prometheus-rules.test.yaml"
OURS = re.compile(r"\b((?:mad|rogers|fiedler|grace)_[a-z_]+)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a unit test.
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    covered = {t["alertname"] for case in cases for t in case["alert_rule_test"]}
    assert alerts == covered


def named_metrics() -> set[str]:
    """What the rules' and the dashboard's expressions read."""
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    variables = dashboard["templating"]["list"]
    exprs += [v["query"]["query"] for v in variables if isinstance(v.get("query"), dict)]
    return {name for expr in exprs for name in OURS.findall(expr)}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessGroup]:
    with process_group(tmp_path_factory.mktemp("group")) as group:
        # The volume sizes the operator gives Fiedler and Rogers on Kubernetes.
        env = {
            "FIEDLER_DB_PATH": str(group.workdir / "f.db"),
            "FIEDLER_VOLUME_BYTES": str(1 << 30),
            "ROGERS_BUS_VOLUME_BYTES": str(1 << 30),
            "ROGERS_BUS_STORAGE_INTERVAL_S": "0.5",
        }
        for name in ("sequential_thinking", "grace", "rogers", "fiedler"):
            group.start(name, env=env)
        yield group


def exported(group: ProcessGroup) -> set[str]:
    names: set[str] = set()
    for process in group.mads.values():
        text = httpx.get(f"{process.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_a_rule_or_panel_names_is_exported(running: ProcessGroup) -> None:
    wanted = named_metrics()
    assert {"mad_ready", "rogers_connection_status", "fiedler_queue_depth"} <= wanted
    assert {"fiedler_database_bytes", "rogers_bus_aof_bytes"} <= wanted

    # Rogers lists a MAD once it has heard its heartbeat.
    try:
        wait_for(lambda: wanted <= exported(running), timeout=30, interval=0.5)
    except AssertionError:
        pytest.fail(f"named but not exported: {sorted(wanted - exported(running))}")


def _gauge(group: ProcessGroup, mad: str, name: str) -> float | None:
    text = httpx.get(f"{group[mad].url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def test_the_volume_metrics_measure_the_task_store_and_the_bus_file(
    running: ProcessGroup,
) -> None:
    """``fiedler_database_bytes`` is what the SQLite store takes on disk, and
    ``rogers_bus_aof_bytes`` follows Redis's append-only file as it grows; each beside the
    volume size it was given."""
    database = running.workdir / "f.db"

    def on_disk() -> float:
        parts = (database, database.with_name("f.db-wal"), database.with_name("f.db-shm"))
        return float(sum(p.stat().st_size for p in parts if p.exists()))

    wait_for(
        lambda: _gauge(running, "fiedler", "fiedler_database_bytes") == on_disk(),
        timeout=30,
        interval=0.5,
        what="fiedler_database_bytes equal to the store's files",
    )
    assert on_disk() > 0
    assert _gauge(running, "fiedler", "fiedler_volume_bytes") == 1 << 30
    assert _gauge(running, "rogers", "rogers_bus_volume_bytes") == 1 << 30

    admin = running.redis.client()
    before = int(admin.info("persistence")["aof_current_size"])
    admin.set("volume-probe", "x" * 1_000_000)
    grown = wait_for(
        lambda: (_gauge(running, "rogers", "rogers_bus_aof_bytes") or 0) >= before + 1_000_000,
        timeout=30,
        interval=0.5,
        what="rogers_bus_aof_bytes to grow by the value written",
    )
    assert grown
    assert (_gauge(running, "rogers", "rogers_bus_aof_bytes") or 0) <= int(
        admin.info("persistence")["aof_current_size"]
    )

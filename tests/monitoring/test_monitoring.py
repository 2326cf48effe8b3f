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
    assert "SUCCESS: 8 rules found" in checked.stdout
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
        for name in ("sequential_thinking", "grace", "rogers", "fiedler"):
            group.start(name, env={"FIEDLER_DB_PATH": str(group.workdir / "f.db")})
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

    # Rogers lists a MAD once it has heard its heartbeat.
    try:
        wait_for(lambda: wanted <= exported(running), timeout=30, interval=0.5)
    except AssertionError:
        pytest.fail(f"named but not exported: {sorted(wanted - exported(running))}")

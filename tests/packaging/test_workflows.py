"""The GitHub Actions workflow is valid and builds every image the topology names (it runs
only on GitHub; this checks it without running it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from madgroup import topology

WORKFLOW = Path(".github") / "workflows" / "packaging.yml"


def test_workflow_validates(root: Path, dev_tool) -> None:
    result = subprocess.run(
        [
            dev_tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(root / WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_builds_every_image(root: Path) -> None:
    text = (root / WORKFLOW).read_text()
    loops = re.findall(r"for target in ([a-z\- ]+); do", text)
    expected = [c.dns_name for c in topology.COMPONENTS if c.is_mad] + ["operator"]
    assert loops and all(loop.split() == expected for loop in loops), loops
    assert f"IMAGE_REPOSITORY: {topology.DEFAULT_IMAGE_REPOSITORY}" in text
    assert f'IMAGE_TAG: "{topology.DEFAULT_IMAGE_TAG}"' in text
    assert f"docker pull {topology.REDIS_IMAGE}" in text


def test_compose_job_runs_the_compose_end_to_end_tests(root: Path) -> None:
    """The GitHub job runs what .ci/run runs, and that replays the guide's commands."""
    text = (root / WORKFLOW).read_text()
    assert "run: scripts/test tests/e2e/compose" in text
    folder = root / "tests" / "e2e" / "compose"
    e2e = (folder / "test_guide.py").read_text() + (folder / "steps.py").read_text()
    for command in (
        "docker-compose up -d redis",
        "docker-compose exec redis redis-cli ping",
        "docker-compose exec redis redis-cli --pass $(grep REDIS_PASSWORD .env | cut -d '=' -f2) ",
        "docker-compose up -d --build sequential_thinking",
        "docker-compose up -d --build grace",
        "docker-compose up -d --build rogers",
        "docker-compose up -d --build fiedler",
        "docker-compose exec {service} mad-status",
        "docker-compose exec rogers mad-cli rogers_get_connections",
        "docker-compose exec fiedler mad-cli fiedler_converse ",
        "docker-compose logs --tail=20 fiedler",
        "docker-compose logs --tail=20 rogers",
        "docker-compose restart fiedler",
        "docker-compose down --volumes",
    ):
        assert command in e2e, command

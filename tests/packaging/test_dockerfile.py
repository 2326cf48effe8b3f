"""docker/Dockerfile: lint-clean, one target per MAD running the topology's command, and
final images that run non-root without build tools."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from madgroup import topology
from madgroup.compose.render import readyz_probe

VENV_STAGES = {"mads-venv", "operator-venv"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|pip install|apt-get install)\b")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> dict[str, Stage]:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert m, line
            stage = Stage(name=m.group(2) or f"stage{len(stages)}", base=m.group(1))
            stages[stage.name] = stage
        elif stage is not None:
            stage.instructions.append((keyword, args.strip()))
    return stages


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def env_of(chain: list[Stage]) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in reversed(chain):
        for args in stage.all("ENV"):
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                env[key] = value.strip('"')
    return env


@pytest.fixture(scope="module")
def dockerfile(root: Path) -> Path:
    return root / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def stages(dockerfile: Path) -> dict[str, Stage]:
    return parse_dockerfile(dockerfile.read_text())


def _hadolint(tool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_clean(dockerfile: Path, dev_tool) -> None:
    result = _hadolint(dev_tool("hadolint"), dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(dev_tool, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = _hadolint(dev_tool("hadolint"), bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_one_target_per_mad_running_the_topology_command(stages: dict[str, Stage]) -> None:
    for comp in topology.COMPONENTS:
        if not comp.is_mad:
            continue
        chain = lineage(stages, comp.dns_name)
        assert "runtime" in [s.name for s in chain], comp.name
        stage = chain[0]
        assert json.loads(stage.last("CMD") or "null") == comp.command(), comp.name
        env = env_of(chain)
        assert env["MAD_NAME"] == comp.name
        assert env["MAD_PORT"] == str(comp.port)
        assert stage.all("EXPOSE") == [str(comp.port)], comp.name
        assert stage.all("ENTRYPOINT") == [], "compose and Kubernetes replace the command"


def test_operator_target(stages: dict[str, Stage]) -> None:
    chain = lineage(stages, "operator")
    assert json.loads(chain[0].last("CMD") or "null") == ["madgroup", "operator"]
    assert "GET /healthz" in (chain[0].last("HEALTHCHECK") or "")
    assert list(stages)[-1] == "operator", "the default target is the operator"


def test_commands_are_installed_console_scripts(root: Path, stages: dict[str, Stage]) -> None:
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    for name, stage in stages.items():
        cmd = stage.last("CMD")
        if cmd:
            assert json.loads(cmd)[0] in scripts, name


def test_final_images_are_non_root_without_build_tools(stages: dict[str, Stage]) -> None:
    finals = [n for n in stages if "runtime" in [s.name for s in lineage(stages, n)]]
    assert set(finals) >= {"runtime", "operator", *(c.dns_name for c in topology.COMPONENTS[1:])}
    for name in finals:
        chain = lineage(stages, name)
        user = next((s.last("USER") for s in chain if s.last("USER")), None)
        assert user is not None and user.split(":")[0].isdigit(), f"{name}: numeric USER"
        assert user.split(":")[0] != "0", name
        for stage in chain:
            for args in stage.all("RUN"):
                assert not BUILD_TOOLS.search(args), f"{name}: build step in final image: {args}"
            for args in stage.all("COPY"):
                if "--from=" in args:
                    source = args.split()[0].removeprefix("--from=")
                    assert source in VENV_STAGES and "/opt/venv" in args, args
                else:
                    pytest.fail(f"{name}: copies sources into the final image: {args}")


def test_builder_uses_a_slim_python_base(dockerfile: Path, stages: dict[str, Stage]) -> None:
    text = dockerfile.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base.group(1))
    assert stages["build-base"].base == stages["runtime"].base == "${PYTHON_IMAGE}"


def test_runtime_healthcheck_and_data_dir(stages: dict[str, Stage]) -> None:
    runtime = stages["runtime"]
    assert "/readyz" in (runtime.last("HEALTHCHECK") or "")
    assert "MAD_PORT" in (runtime.last("HEALTHCHECK") or "")
    run = " ".join(runtime.all("RUN"))
    assert re.search(r'install -d -o "\$\{UID\}" -g "\$\{UID\}" .*/data', run)
    assert runtime.last("USER") == "10001:10001"
    assert runtime.all("ARG") == ["UID=10001"]


def test_dockerignore_keeps_secrets_and_local_state_out(root: Path) -> None:
    patterns = [p for p in (root / ".dockerignore").read_text().splitlines() if p and p[0] != "#"]
    assert patterns[0] == "*", "start from nothing and list what the build needs"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert included == {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "mads",
        "operator",
        "requirements",
        "docker/ca-certificates",
    }


def test_image_user_is_the_uid_the_operator_runs_pods_as(stages: dict[str, Stage]) -> None:
    meta = pytest.importorskip(
        "madgroup.kube.meta", reason="the Kubernetes substrate is not in this tree"
    )
    uid = meta.POD_UID
    assert stages["runtime"].last("USER") == f"{uid}:{uid}"
    assert stages["runtime"].all("ARG") == [f"UID={uid}"]


def test_healthchecks_are_the_cheap_probe_compose_uses(stages: dict[str, Stage]) -> None:
    mad = json.loads((stages["runtime"].last("HEALTHCHECK") or "").split("CMD ", 1)[1])
    assert mad == [
        "python",
        "-I",
        "-S",
        "-c",
        readyz_probe("int(os.environ['MAD_PORT'])", "/readyz"),
    ]
    operator = json.loads((stages["operator"].last("HEALTHCHECK") or "").split("CMD ", 1)[1])
    assert operator == ["python", "-I", "-S", "-c", readyz_probe("8080", "/healthz")]


def test_nothing_is_pulled_but_the_base_image(dockerfile: Path, stages: dict[str, Stage]) -> None:
    """No ``# syntax=`` frontend (BuildKit would pull it) and every FROM is the python base
    or a stage of this file."""
    assert not re.search(r"^#\s*syntax\s*=", dockerfile.read_text(), re.M | re.I)
    for stage in stages.values():
        assert stage.base == "${PYTHON_IMAGE}" or stage.base in stages, stage.name


def test_every_dependency_is_installed_from_a_lock_with_hashes(stages: dict[str, Stage]) -> None:
    installs = [
        (name, command)
        for name, stage in stages.items()
        for args in stage.all("RUN")
        for command in args.split("&&")
        if "pip" in command and " install " in command
    ]
    assert installs, "no pip install found"
    for name, command in installs:
        if "/wheels/" in command:  # the project's own wheel, built in this file
            assert "--no-deps" in command, (name, command)
        else:
            assert "--require-hashes" in command, (name, command)
            assert re.search(r"-r requirements/\w+\.txt", command), (name, command)
    copied = " ".join(a for s in stages.values() for a in s.all("COPY"))
    for lock in ("build", "mads", "operator"):
        assert f"requirements/{lock}.txt" in copied


def test_mad_images_get_the_mads_lock_and_the_operator_its_own(stages: dict[str, Stage]) -> None:
    assert "requirements/mads.txt" in " ".join(stages["mads-venv"].all("RUN"))
    assert "requirements/operator.txt" in " ".join(stages["operator-venv"].all("RUN"))
    for comp in topology.COMPONENTS[1:]:
        copies = [a for s in lineage(stages, comp.dns_name) for a in s.all("COPY")]
        assert copies == ["--from=mads-venv /opt/venv /opt/venv"], comp.name
    assert stages["operator"].all("COPY") == ["--from=operator-venv /opt/venv /opt/venv"]


def test_proxy_and_private_index_build_args(stages: dict[str, Stage]) -> None:
    args = {a.split("=", 1)[0] for a in stages["build-base"].all("ARG")}
    assert {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"} <= args
    copied = stages["build-base"].all("COPY")
    assert "docker/ca-certificates/ /usr/local/share/ca-certificates/madgroup/" in copied


CA_DIR = "/usr/local/share/ca-certificates/madgroup"


def extra_ca_step(stages: dict[str, Stage]) -> str:
    """The build-base RUN that writes ``EXTRA_CA_CERTS`` out and trusts it."""
    steps = [a for a in stages["build-base"].all("RUN") if "EXTRA_CA_CERTS" in a]
    assert len(steps) == 1, "one step of build-base reads the EXTRA_CA_CERTS build argument"
    return steps[0]


def test_extra_ca_certificates_build_arg(stages: dict[str, Stage]) -> None:
    """A proxy's CA certificates as PEM text (``--build-arg EXTRA_CA_CERTS="$(cat ...)"``),
    empty by default, trusted in the build stages before the first download, and declared
    in no stage a final image is built from."""
    base = stages["build-base"]
    assert "EXTRA_CA_CERTS=" in base.all("ARG"), "ARG EXTRA_CA_CERTS= (empty default)"
    step = extra_ca_step(stages)
    assert CA_DIR in step and step.rstrip().endswith("update-ca-certificates >/dev/null")
    order = [kw + " " + args for kw, args in base.instructions]
    arg_at = order.index("ARG EXTRA_CA_CERTS=")
    step_at = order.index("RUN " + step)
    first_pip = next(i for i, line in enumerate(order) if "pip install" in line)
    assert arg_at < step_at < first_pip, "trusted before pip downloads anything"
    assert base.all("ENV") and "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in base.all("ENV")[0]
    finals = [n for n in stages if "runtime" in [s.name for s in lineage(stages, n)]]
    for name in finals:
        for stage in lineage(stages, name):
            assert not any("EXTRA_CA_CERTS" in a for a in stage.all("ARG")), name


FAKE_PEM = "-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"


def _run_extra_ca_step(
    stages: dict[str, Stage], tmp_path: Path, value: str | None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The step as the build runs it (``/bin/sh``), into a scratch folder."""
    target = tmp_path / "ca"
    target.mkdir()
    script = (
        extra_ca_step(stages)
        .replace(CA_DIR, str(target))
        .replace("/tmp/extra-ca.pem", str(tmp_path / "extra-ca.pem"))
        .replace("update-ca-certificates >/dev/null", "true")
    )
    env = {"PATH": "/usr/bin:/bin"}
    if value is not None:
        env["EXTRA_CA_CERTS"] = value
    else:
        script = "EXTRA_CA_CERTS=; " + script  # the ARG's empty default
    done = subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    return done, {p.name: p.read_text() for p in sorted(target.iterdir())}


def test_extra_ca_certificates_are_written_one_a_file(
    stages: dict[str, Stage], tmp_path: Path
) -> None:
    one, two = FAKE_PEM.format(body="AAAA"), FAKE_PEM.format(body="BBBB")
    # As `"$(cat bundle.crt)"` gives it, here with Windows line ends and text between.
    value = ("subject=CN=one\n" + one + "\n\n" + two).replace("\n", "\r\n")
    done, written = _run_extra_ca_step(stages, tmp_path, value)
    assert done.returncode == 0, done.stderr
    assert written == {"build-arg-1.crt": one + "\n", "build-arg-2.crt": two + "\n"}


def test_no_extra_ca_certificates_by_default(stages: dict[str, Stage], tmp_path: Path) -> None:
    done, written = _run_extra_ca_step(stages, tmp_path, None)
    assert done.returncode == 0, done.stderr
    assert written == {}


def test_extra_ca_certificates_that_are_not_pem_stop_the_build(
    stages: dict[str, Stage], tmp_path: Path
) -> None:
    done, written = _run_extra_ca_step(stages, tmp_path, "/etc/corporate-ca.crt")
    assert done.returncode != 0
    assert "EXTRA_CA_CERTS holds no PEM certificate" in done.stderr
    assert written == {}

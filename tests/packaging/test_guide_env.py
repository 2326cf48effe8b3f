"""The deployment guide's Part 2 commands around .env, run verbatim against this
repository's .env.example, and every variable docker-compose.yml reads documented there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

PASSWORD = "aBcDeFgHiJkLmNoPqRsTuVwXyZ123456"


def _guide_env(root: Path, tmp_path: Path) -> Path:
    shutil.copy(root / ".env.example", tmp_path / ".env.example")
    # Step 1, verbatim (with the password fixed instead of `openssl rand -base64 24`).
    subprocess.run(
        [
            "bash",
            "-c",
            "cp .env.example .env\n"
            f"REDIS_PASS={PASSWORD}\n"
            'echo "REDIS_PASSWORD=${REDIS_PASS}" >> .env\n',
        ],
        cwd=tmp_path,
        check=True,
        timeout=10,
    )
    return tmp_path / ".env"


def test_step2_password_lookup_finds_exactly_the_password(root: Path, tmp_path: Path) -> None:
    """Step 2 runs `redis-cli --pass $(grep REDIS_PASSWORD .env | cut -d '=' -f2) ping`:
    every line of .env.example that mentions REDIS_PASSWORD ends up in that argument list."""
    _guide_env(root, tmp_path)
    words = subprocess.run(
        ["bash", "-c", "printf '%s\\n' $(grep REDIS_PASSWORD .env | cut -d '=' -f2)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.split("\n")[:-1]
    assert words == [PASSWORD], (
        ".env.example must not mention REDIS_PASSWORD on any line (not even a comment): "
        f"the guide's step 2 would pass {words!r} to redis-cli --pass"
    )


def test_env_file_defines_the_password_once(root: Path, tmp_path: Path) -> None:
    env = _guide_env(root, tmp_path)
    assignments = [
        line.split("=", 1)[1]
        for line in env.read_text().splitlines()
        if line.startswith("REDIS_PASSWORD=")
    ]
    assert assignments == [PASSWORD]


def test_every_compose_variable_is_documented_in_env_example(root: Path) -> None:
    compose = (root / "docker-compose.yml").read_text().replace("$$", "")
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose))
    # The administrator's password never passes through compose's configuration (where
    # docker inspect would show it): the credentials one-shot reads .env mounted read-only.
    assert "REDIS_PASSWORD" not in used
    assert "./.env:/run/madgroup-env/.env:ro" in compose
    documented = (root / ".env.example").read_text()
    missing = sorted(v for v in used if v != "REDIS_PASSWORD" and v not in documented)
    assert not missing, f".env.example does not document {missing}"

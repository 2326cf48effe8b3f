"""The packaging tests' fixtures (the repository root, the validators, the committed
docker-compose.yml read as compose reads it) come from tests/support/packaging.py."""

from tests.support.packaging import (  # noqa: F401 (fixtures)
    compose,
    compose_text,
    dev_tool,
    helm,
    interpolated,
    root,
)

"""The compose substrate's tests share the packaging tests' fixtures (the repository root,
the validators, the committed docker-compose.yml read as compose reads it), from
tests/support/packaging.py."""

from tests.support.packaging import (  # noqa: F401 (fixtures)
    compose,
    compose_text,
    dev_tool,
    interpolated,
    root,
)

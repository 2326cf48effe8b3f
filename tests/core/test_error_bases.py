"""Every error a package raises on purpose has that package's one base, which carries the
exit code its command-line tools end with."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import madgroup
import pytest
from madgroup.errors import MadGroupError, UsageError

import mads
from mads.core.errors import MadError, MadUsageError
from mads.core.registry import UnknownMadError
from mads.core.settings import ConfigurationError

PRIVATE_ADAPTERS = {
    # Raised and caught inside one module, as a third-party library's own error type.
    "mads.core.bus._PoolExhaustedError",
    "mads.fiedler.providers.openai._Retryable",
}


def _modules(package: ModuleType) -> list[ModuleType]:
    found = []
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        found.append(importlib.import_module(info.name))
    return found


def _errors_defined_in(package: ModuleType) -> list[type[BaseException]]:
    errors = []
    for module in _modules(package):
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ == module.__name__ and issubclass(value, BaseException):
                errors.append(value)
    return errors


@pytest.mark.parametrize(
    ("package", "base"), [(mads, MadError), (madgroup, MadGroupError)], ids=["mads", "madgroup"]
)
def test_every_error_has_its_package_base(package: ModuleType, base: type[Exception]) -> None:
    errors = _errors_defined_in(package)
    assert len(errors) > 5, "the walk found the packages' errors"
    strays = [
        f"{error.__module__}.{error.__qualname__}"
        for error in errors
        if not issubclass(error, base)
        and f"{error.__module__}.{error.__qualname__}" not in PRIVATE_ADAPTERS
    ]
    assert strays == [], f"errors outside {base.__name__}: {strays}"


def test_exit_codes_travel_with_the_errors() -> None:
    assert MadError("x").exit_code == 1
    assert MadUsageError("x").exit_code == 2
    assert ConfigurationError("x").exit_code == 2
    assert UnknownMadError("nope").exit_code == 2
    assert MadGroupError("x").exit_code == 1
    assert UsageError("x").exit_code == 2

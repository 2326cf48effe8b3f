import pytest

from mads.core.settings import (
    BusSettings,
    ConfigurationError,
    load_settings,
)
from mads.sequential_thinking.client import ThinkingClientSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REDIS_PASSWORD",
        "REDIS_PORT",
        "REDIS_HOST",
        "MAD_HEARTBEAT_S",
        "MAD_PORT",
        "SEQUENTIAL_THINKING_URL",
        "MAD_ALLOWED_HOSTS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    settings = load_settings(ThinkingClientSettings, mad_name="rogers")
    assert (settings.redis_host, settings.redis_port) == ("redis", 6379)
    assert settings.mad_heartbeat_s == 5
    assert settings.sequential_thinking_url == "http://sequential_thinking:8000/mcp"
    assert settings.redis_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_missing_password_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(BusSettings, mad_name="grace")
    assert str(info.value) == "REDIS_PASSWORD is required but not set"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("REDIS_PORT", "abc", "REDIS_PORT is invalid"),
        ("REDIS_PORT", "70000", "REDIS_PORT is invalid"),
        ("MAD_HEARTBEAT_S", "0", "MAD_HEARTBEAT_S is invalid"),
        ("REDIS_PASSWORD", "", "REDIS_PASSWORD is invalid: must not be empty"),
        ("SEQUENTIAL_THINKING_URL", "ftp://x", "SEQUENTIAL_THINKING_URL is invalid"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings(ThinkingClientSettings, mad_name="fiedler")
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_allowed_hosts_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    monkeypatch.setenv("MAD_ALLOWED_HOSTS", " grace, mg-grace ,")
    assert load_settings(BusSettings, mad_name="grace").allowed_hosts == ["grace", "mg-grace"]

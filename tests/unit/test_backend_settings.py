"""Settings from the environment: required names fail loudly, tables map by logical id."""

from __future__ import annotations

import pytest

from backend.errors import ConfigurationError
from backend.settings import Settings

ENV = {
    "TIDINGS_STAGE": "dev",
    "TIDINGS_TABLE_CHANGELOGTABLE": "log",
    "TIDINGS_TABLE_SEQUENCETABLE": "seq",
    "TIDINGS_ROUTES_FILE": "infra/routes.yaml",
    "TIDINGS_TABLE_TODOSTABLE": "Todos-123",
    "TIDINGS_TABLE_USERSTABLE": "users",
}


def test_from_env_reads_everything() -> None:
    settings = Settings.from_env({**ENV, "TIDINGS_RETENTION_S": "600"})
    assert settings.stage == "dev" and settings.retention_s == 600
    assert settings.table_name("TodosTable") == "Todos-123"
    assert settings.table_name("ChangeLogTable") is None  # backend tables are not sources
    assert settings.users_table == "users"
    assert settings.topic_prefix == "tidings/dev/"
    assert settings.inline_limit_bytes == 128 * 1024


@pytest.mark.parametrize(
    "name", ["TIDINGS_STAGE", "TIDINGS_TABLE_SEQUENCETABLE", "TIDINGS_ROUTES_FILE"]
)
def test_a_missing_required_variable_is_named(name: str) -> None:
    env = {k: v for k, v in ENV.items() if k != name}
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TIDINGS_RETENTION_S", "soon"),
        ("TIDINGS_INLINE_LIMIT_BYTES", "999999"),
        ("TIDINGS_STAGE", "a/b"),
    ],
)
def test_malformed_values_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**ENV, name: value})


def test_the_publisher_names_every_routed_table_the_environment_lacks() -> None:
    from pathlib import Path

    from backend.publisher import Publisher
    from backend.routes import load_routes

    routes = load_routes(Path(__file__).resolve().parents[2] / "infra" / "routes.yaml")
    settings = Settings.from_env(ENV)  # names only TIDINGS_TABLE_TODOSTABLE
    with pytest.raises(ConfigurationError) as error:
        Publisher(settings, routes, store=None, iot_data=None)  # type: ignore[arg-type]
    assert "TIDINGS_TABLE_BOARDSTABLE" in str(error.value)
    assert "TIDINGS_TABLE_SCORESTABLE" in str(error.value)
    assert "TODOSTABLE" not in str(error.value)


def test_the_device_role_is_optional_and_read_when_set() -> None:
    assert Settings.from_env(ENV).device_role_arn is None
    arn = "arn:aws:iam::123456789012:role/tidings-dev-DeviceRole-1A2B3C"
    assert Settings.from_env({**ENV, "TIDINGS_DEVICE_ROLE_ARN": arn}).device_role_arn == arn

"""Settings come from the environment in one place; mistakes fail loudly at start-up."""

from __future__ import annotations

import json

import pytest

from auth.errors import ConfigurationError
from auth.settings import ENV, AuthSettings

BASE = {
    "TIDINGS_TABLE_USERSTABLE": "users",
    "TIDINGS_IDENTITY_POOL_ID": "us-east-1:pool",
    "TIDINGS_ACCOUNT_ID": "123456789012",
    "TIDINGS_IOT_ENDPOINT": "abc-ats.iot.us-east-1.amazonaws.com",
    "AWS_REGION": "us-east-1",
}


def test_minimal_environment_gives_defaults():
    settings = AuthSettings.from_env(BASE)
    assert settings.users_table == "users"
    assert settings.token_duration_s == 900
    assert settings.topic_prefix == "tidings/dev/"
    assert settings.policy_prefix == "tidings-dev"
    assert settings.password_hash == "argon2id"
    assert settings.routes_file.name == "routes.yaml"


@pytest.mark.parametrize("missing", sorted(BASE))
def test_a_missing_required_variable_is_named(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigurationError, match=missing):
        AuthSettings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TIDINGS_TOKEN_DURATION_S", "abc"),
        ("TIDINGS_TOKEN_DURATION_S", "999999"),
        ("TIDINGS_IOT_PORT", "0"),
        ("TIDINGS_PASSWORD_HASH", "md5"),
        ("TIDINGS_OIDC_ISSUERS", "{not json"),
        ("TIDINGS_OIDC_ISSUERS", '{"issuer": "x"}'),
        ("TIDINGS_OIDC_ISSUERS", '[{"issuer": "https://i", "audiences": []}]'),
        (
            "TIDINGS_OIDC_ISSUERS",
            '[{"issuer": "https://i", "audiences": ["a"], "algorithms": ["HS256"]}]',
        ),
    ],
)
def test_malformed_values_are_refused_by_name(name, value):
    with pytest.raises(ConfigurationError, match=name if "OIDC" not in name else "TIDINGS_OIDC"):
        AuthSettings.from_env({**BASE, name: value})


def test_oidc_issuers_are_parsed_with_defaults():
    issuers = json.dumps(
        [
            {
                "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X",
                "audiences": ["client"],
            }
        ]
    )
    settings = AuthSettings.from_env({**BASE, "TIDINGS_OIDC_ISSUERS": issuers})
    (issuer,) = settings.oidc_issuers
    assert issuer.jwks_uri.endswith("/us-east-1_X/.well-known/jwks.json")
    assert issuer.algorithms == ("RS256",)
    assert issuer.token_use == ("id",)


def test_every_variable_name_lives_in_env():
    assert all(name.startswith(("TIDINGS_", "AWS_")) for name in ENV.values())


def test_sign_in_limits_come_from_the_environment():
    limits = AuthSettings.from_env(
        {
            **BASE,
            "TIDINGS_LOGIN_ACCOUNT_ADDRESS_MAX_FAILURES": "7",
            "TIDINGS_LOGIN_ACCOUNT_HOURLY_MAX_FAILURES": "40",
            "TIDINGS_LOGIN_ADDRESS_MAX_FAILURES": "90",
            "TIDINGS_LOGIN_FAILURE_WINDOW_S": "600",
            "TIDINGS_LOGIN_KNOWN_ADDRESS_DAYS": "10",
        }
    ).rate_limits
    assert (
        limits.account_address_max_failures,
        limits.account_hourly_max_failures,
        limits.address_max_failures,
        limits.window_s,
        limits.known_address_days,
    ) == (7, 40, 90, 600, 10)
    assert AuthSettings.from_env(BASE).rate_limits.account_address_max_failures == 5


@pytest.mark.parametrize("name", ["TIDINGS_LOGIN_USER_MAX_FAILURES", "TIDINGS_LOGIN_LOCKOUT_S"])
def test_a_retired_limit_variable_fails_loudly_with_its_replacement(name):
    with pytest.raises(ConfigurationError, match=f"{name} is no longer used; use TIDINGS_LOGIN_"):
        AuthSettings.from_env({**BASE, name: "5"})

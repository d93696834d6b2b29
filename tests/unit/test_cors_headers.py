"""The functions' CORS headers: every answer of the login and the channels API, errors
included, names the allowed origin from ``TIDINGS_ALLOWED_ORIGIN`` (the template's
``AllowedOrigins``) and exposes ``Retry-After``; with none set they send no CORS headers."""

from __future__ import annotations

from typing import Any

import pytest

from auth.errors import InvalidCredentials, TooManyAttempts
from auth.http import handle_login_event
from auth.settings import AuthSettings
from backend.channels_api import ChannelsApi
from backend.settings import Settings

ORIGIN = "https://app.example"


class Service:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def login(self, body: bytes | str | None, source_ip: str) -> dict[str, Any]:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return dict(self.outcome)


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ({"identityId": "us-east-1:a"}, 200),
        (InvalidCredentials(), 401),
        (TooManyAttempts(30), 429),
        (RuntimeError("boom"), 500),
    ],
)
def test_every_login_answer_names_the_allowed_origin(outcome: Any, status: int) -> None:
    answer = handle_login_event({"body": "{}"}, Service(outcome), allowed_origin=ORIGIN)
    assert answer["statusCode"] == status
    assert answer["headers"]["Access-Control-Allow-Origin"] == ORIGIN
    assert answer["headers"]["Access-Control-Expose-Headers"] == "Retry-After"
    if status == 429:
        assert answer["headers"]["Retry-After"] == "30"


def test_without_an_allowed_origin_the_login_sends_no_cors_headers() -> None:
    answer = handle_login_event({"body": "{}"}, Service({"identityId": "x"}))
    assert not any(name.startswith("Access-Control-") for name in answer["headers"])


def test_the_channels_api_names_the_allowed_origin_on_errors() -> None:
    api = ChannelsApi([], store=None, tenants=lambda _: frozenset(), allowed_origin=ORIGIN)  # type: ignore[arg-type]
    answer = api.handle({"httpMethod": "GET", "pathParameters": None})
    assert 400 <= answer["statusCode"] < 500
    assert answer["headers"]["Access-Control-Allow-Origin"] == ORIGIN
    bare = ChannelsApi([], store=None, tenants=lambda _: frozenset())  # type: ignore[arg-type]
    assert "Access-Control-Allow-Origin" not in bare.handle({"httpMethod": "GET"})["headers"]


def test_both_settings_read_the_allowed_origin_from_one_variable() -> None:
    env = {
        "TIDINGS_STAGE": "dev",
        "TIDINGS_TABLE_CHANGELOGTABLE": "log",
        "TIDINGS_TABLE_SEQUENCETABLE": "seq",
        "TIDINGS_ROUTES_FILE": "infra/routes.yaml",
        "TIDINGS_TABLE_USERSTABLE": "users",
        "TIDINGS_IDENTITY_POOL_ID": "us-east-1:pool",
        "TIDINGS_ACCOUNT_ID": "123456789012",
        "TIDINGS_IOT_ENDPOINT": "localhost",
        "AWS_REGION": "us-east-1",
        "TIDINGS_ALLOWED_ORIGIN": ORIGIN,
    }
    assert Settings.from_env(env).allowed_origin == ORIGIN
    assert AuthSettings.from_env(env).allowed_origin == ORIGIN
    del env["TIDINGS_ALLOWED_ORIGIN"]
    assert Settings.from_env(env).allowed_origin == AuthSettings.from_env(env).allowed_origin == ""

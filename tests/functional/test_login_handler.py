"""The Lambda entry point wired only by the environment, as ``tidings up`` and AWS run it.

No client is injected: settings come from ``TIDINGS_*`` variables and every endpoint from the
standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables (moto, the local identity service).
"""

from __future__ import annotations

import json

import pytest

from auth import handler
from tests.support.moto_server import (
    ACCOUNT,
    POOL_ID,
    PROVIDER,
    REGION,
    TABLE,
    developer_credential,
    login_event,
    signin_stack,
)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    with signin_stack() as stack:
        stack.add_user("lambda-user", "lambda-password-1", ("acme",))
        developer = developer_credential(stack.credentials)
        for name, value in {
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": developer.access_key_id,
            "AWS_SECRET_ACCESS_KEY": developer.secret_access_key,
            "AWS_SESSION_TOKEN": developer.session_token or "",
            "AWS_ENDPOINT_URL_DYNAMODB": stack.moto,
            "AWS_ENDPOINT_URL_IOT": stack.moto,
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY": stack.identity.endpoint,
            "TIDINGS_TABLE_USERSTABLE": TABLE,
            "TIDINGS_IDENTITY_POOL_ID": POOL_ID,
            "TIDINGS_DEVELOPER_PROVIDER": PROVIDER,
            "TIDINGS_ACCOUNT_ID": ACCOUNT,
            "TIDINGS_IOT_ENDPOINT": "localhost",
            "TIDINGS_IOT_PORT": "8443",
            "TIDINGS_STAGE": "dev",
        }.items():
            monkeypatch.setenv(name, value)
        handler.clear_caches()
        yield stack
        handler.clear_caches()


def test_lambda_handler_logs_in_with_only_the_environment(environment):
    event = login_event(
        {"method": "password", "username": "lambda-user", "password": "lambda-password-1"}
    )
    result = handler.lambda_handler(event, None)
    assert result["statusCode"] == 200, result["body"]
    answer = json.loads(result["body"])
    assert answer["iot"] == {"endpoint": "localhost", "port": 8443, "topicPrefix": "tidings/dev/"}
    assert "tenants/acme/board" in answer["channels"]
    assert environment.credentials_for(answer)["AccessKeyId"].startswith("ASIA")
    assert handler.login_service() is handler.login_service()  # built once per process


def test_a_missing_setting_is_a_500_that_names_nothing_secret(monkeypatch, environment):
    monkeypatch.delenv("TIDINGS_IDENTITY_POOL_ID")
    handler.clear_caches()
    with pytest.raises(Exception, match="TIDINGS_IDENTITY_POOL_ID"):
        handler.lambda_handler(login_event({"method": "password"}), None)

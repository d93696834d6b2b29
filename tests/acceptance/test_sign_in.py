"""Signing in with a password: the answer a client needs, the temporary credentials it leads
to, and one generic 401 for a wrong password or an unknown user."""

from __future__ import annotations

import re
import secrets

import pytest

from auth.errors import GENERIC_CREDENTIALS_MESSAGE
from client_sdk import Password, SignInFailed, Tidings
from tests.acceptance.admin import Users
from tests.acceptance.http_api import identity_credentials, login
from tests.acceptance.target import Target

pytestmark = pytest.mark.aws


def test_password_sign_in_answers_what_a_client_needs(target: Target, users: Users) -> None:
    user = users.add("signin", tenants={"acme"})
    answer = login(target, user.name, user.password)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    identity = body["identityId"]
    assert identity.startswith(f"{target.region}:")
    assert body["region"] == target.region
    assert body["api"]["url"].rstrip("/") == target.api_url
    assert body["iot"]["endpoint"] == target.iot_endpoint
    assert body["iot"]["topicPrefix"].startswith("tidings/")
    assert body["iot"]["topicPrefix"].endswith("/")
    assert f"users/{identity}/todos" in body["channels"]
    assert "tenants/acme/board" in body["channels"]
    assert "public/scores" in body["channels"]
    credentials = identity_credentials(target, body)
    assert credentials.access_key and credentials.secret_key and credentials.token
    with target.connect(user.name, user.password) as client:
        assert client.identity_id == identity  # the same identity at every sign-in
        assert client.state == "live"


def test_a_wrong_password_is_refused_with_the_documented_401(target: Target, users: Users) -> None:
    user = users.add("wrongpw")
    wrong = login(target, user.name, user.password + "-not")
    nobody = login(target, f"acceptance-nobody-{secrets.token_hex(4)}", user.password)
    for answer in (wrong, nobody):  # the same answer: it says nothing about the account
        assert answer.status_code == 401, answer.text
        assert answer.json() == {
            "error": "invalid_credentials",
            "message": GENERIC_CREDENTIALS_MESSAGE,
        }
    with pytest.raises(SignInFailed, match=re.escape(GENERIC_CREDENTIALS_MESSAGE)):
        Tidings.connect(
            target.api_url,
            Password(user.name, user.password + "-not"),
            options=target.client_options(),
        )

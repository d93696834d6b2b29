"""Malformed login requests: each gets a 400 whose code and message name the problem.

Runs the real login service behind the real HTTP edge; a malformed body is refused before
any AWS call, so no emulator is needed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from auth.errors import BadRequest, InvalidCredentials, TooManyAttempts, UpstreamError
from auth.http import handle_login_event
from auth.login import LoginService, parse_login_body
from auth.settings import AuthSettings
from auth.store import validate_username

EVENTS = Path(__file__).resolve().parents[1] / "events"
SETTINGS = AuthSettings(
    users_table="t",
    identity_pool_id="us-east-1:p",
    region="us-east-1",
    account_id="123456789012",
    iot_endpoint="localhost",
)


def event(body: Any, *, base64_body: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / "login_password.json").read_text())
    data["body"] = body
    data["isBase64Encoded"] = base64_body
    return data


def answer(raw_event: dict[str, Any], service: Any = None) -> tuple[int, dict[str, Any]]:
    result = handle_login_event(raw_event, service or LoginService(SETTINGS))
    assert result["headers"]["Content-Type"] == "application/json"
    body = json.loads(result["body"])
    assert set(body) == {"error", "message"} or result["statusCode"] == 200
    return result["statusCode"], body


LONG = "x" * 2000
MALFORMED = [
    (None, "missing_body", "no body"),
    ("", "missing_body", "no body"),
    ("{", "invalid_json", "not valid JSON"),
    ('"just a string"', "invalid_body", "JSON object"),
    ("[1, 2]", "invalid_body", "JSON object"),
    ("{}", "missing_method", "'method'"),
    ('{"method": "magic"}', "unknown_method", "password, id_token, device"),
    ('{"method": 7}', "unknown_method", "password"),
    ('{"method": "password", "password": "p"}', "missing_field", "'username'"),
    ('{"method": "password", "username": "alice"}', "missing_field", "'password'"),
    ('{"method": "password", "username": 5, "password": "p"}', "invalid_field", "'username'"),
    (
        '{"method": "password", "username": "alice", "password": ["p"]}',
        "invalid_field",
        "'password'",
    ),
    ('{"method": "password", "username": "", "password": "p"}', "empty_field", "'username'"),
    (
        '{"method": "password", "username": "al ice", "password": "p"}',
        "invalid_username",
        "'username'",
    ),
    (
        json.dumps({"method": "password", "username": "alice", "password": LONG}),
        "field_too_long",
        "'password'",
    ),
    (
        '{"method": "password", "username": "a", "password": "p", "admin": true}',
        "unknown_field",
        "admin",
    ),
    ('{"method": "id_token"}', "missing_field", "'id_token'"),
    ('{"method": "id_token", "id_token": null}', "missing_field", "'id_token'"),
    ('{"method": "device", "thing_name": "t1"}', "missing_field", "'secret'"),
    ("x" * 40000, "body_too_large", "32768"),
]


@pytest.mark.parametrize(("body", "code", "named"), MALFORMED)
def test_malformed_bodies_get_a_400_naming_the_problem(body, code, named):
    status, result = answer(event(body))
    assert (status, result["error"]) == (400, code)
    assert named in result["message"]


def test_base64_bodies_are_decoded_and_bad_base64_is_a_400():
    status, result = answer(event("%%%not base64", base64_body=True))
    assert (status, result["error"]) == (400, "invalid_body")
    raw = base64.b64encode(b'{"method": "nope"}').decode()
    assert answer(event(raw, base64_body=True))[1]["error"] == "unknown_method"


def test_the_http_api_event_shape_is_understood():
    raw = json.loads((EVENTS / "login_http_api_base64.json").read_text())
    seen: dict[str, Any] = {}

    class Recorder:
        def login(self, body: Any, source_ip: str) -> dict[str, Any]:
            seen["request"] = parse_login_body(body)
            seen["ip"] = source_ip
            return {"ok": True}

    assert answer(raw, Recorder()) == (200, {"ok": True})
    assert seen["ip"] == "203.0.113.9"
    assert seen["request"].username == "alice"


class Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def login(self, body: Any, source_ip: str) -> dict[str, Any]:
        raise self.exc


def test_every_credential_failure_reads_the_same():
    bodies = {
        answer(event("{}"), Raising(InvalidCredentials(reason)))[1]["message"]
        for reason in ("unknown user", "wrong password", "bad token")
    }
    assert len(bodies) == 1
    assert answer(event("{}"), Raising(InvalidCredentials("x")))[0] == 401


def test_too_many_attempts_is_429_with_retry_after():
    result = handle_login_event(event("{}"), Raising(TooManyAttempts(42)))
    assert result["statusCode"] == 429
    assert result["headers"]["Retry-After"] == "42"
    assert json.loads(result["body"])["error"] == "too_many_attempts"


def test_upstream_and_unexpected_failures_say_nothing_internal():
    assert answer(event("{}"), Raising(UpstreamError("IoT down")))[0] == 502
    status, body = answer(event("{}"), Raising(RuntimeError("secret detail")))
    assert status == 500 and "secret detail" not in body["message"]


@pytest.mark.parametrize(
    "nested",
    ["[" * 16_000 + "]" * 16_000, '{"a":' * 5_000 + "1" + "}" * 5_000],
    ids=["lists", "objects"],
)
def test_deeply_nested_json_is_a_400_not_a_crash(nested):
    assert len(nested) < 32 * 1024  # under the size limit: refused for its depth
    status, body = answer(event(nested))
    assert (status, body["error"]) == (400, "invalid_json")
    assert "deeply" in body["message"]


@pytest.mark.parametrize("username", ["alice\n", "alice\r\n", "\nalice", "al ice", "alice\x00"])
def test_a_username_with_a_line_break_or_control_character_is_refused(username):
    status, body = answer(
        event(json.dumps({"method": "password", "username": username, "password": "p"}))
    )
    assert (status, body["error"]) == (400, "invalid_username")


@pytest.mark.parametrize("username", ["alice\n", "alice\r\n", "al ice"])
def test_the_users_command_refuses_a_username_with_a_line_break(username):
    with pytest.raises(BadRequest, match="A username is 1-128 characters"):
        validate_username(username)
    assert validate_username("alice") == "alice"

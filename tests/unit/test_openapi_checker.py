"""tests/support/openapi.py refuses answers the document does not describe, so the tests
that check every answer with it would notice an API that drifts from infra/openapi.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.support.openapi import ResponseMismatch, api_document, checked

JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
HEAD = {"channel": "public/scores", "head": 3, "epoch": 1}


def answer(
    method: str, url: str, status: int, body: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    """A ``requests.Response`` as the API would have sent it (no network)."""
    response = requests.Response()
    response.status_code = status
    response.headers.update(JSON if headers is None else headers)
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.request = requests.Request(method, url).prepare()
    return response


def test_a_right_answer_passes() -> None:
    good = answer("GET", "https://localhost:1/dev/v1/channels/public/scores", 200, HEAD)
    assert checked(good) is good
    refused = {"error": "too_many_waits", "message": "later"}
    headers = {**JSON, "Retry-After": "2"}
    url = "https://localhost:1/dev/v1/channels/public/scores/changes?wait=5"
    checked(answer("GET", url, 429, refused, headers))
    checked(
        answer(
            "GET",
            "https://localhost:1/dev/v1/nothing",
            404,
            {"error": "not_found", "message": "no"},
        )
    )


WRONG = [
    ("an undeclared status", "GET", "/v1/channels/public/scores", 418, HEAD, None),
    (
        "a field missing",
        "GET",
        "/v1/channels/public/scores",
        200,
        {"channel": "c", "head": 1},
        None,
    ),
    ("a field too many", "GET", "/v1/channels/public/scores", 200, {**HEAD, "tail": 1}, None),
    ("a wrong type", "GET", "/v1/channels/public/scores", 200, {**HEAD, "head": "3"}, None),
    (
        "an undeclared error code",
        "GET",
        "/v1/channels/public/scores",
        400,
        {"error": "oops", "message": "m"},
        None,
    ),
    ("an error without message", "POST", "/v1/login", 401, {"error": "invalid_credentials"}, None),
    ("not JSON", "GET", "/v1/channels/public/scores", 200, b"<html>", None),
    (
        "another content type",
        "GET",
        "/v1/channels/public/scores",
        200,
        HEAD,
        {"Content-Type": "text/plain"},
    ),
    (
        "a malformed Retry-After",
        "POST",
        "/v1/login",
        429,
        {"error": "too_many_attempts", "message": "m"},
        {**JSON, "Retry-After": "soon"},
    ),
    ("a preflight without its headers", "OPTIONS", "/v1/login", 200, b"", {}),
    ("a 200 on a path the API does not have", "GET", "/v1/nothing", 200, HEAD, None),
    (
        "an envelope with an unknown op",
        "GET",
        "/v1/channels/public/scores/changes",
        200,
        {
            **HEAD,
            "changes": [
                {
                    "v": 1,
                    "channel": "public/scores",
                    "seq": 1,
                    "epoch": 1,
                    "id": "i",
                    "op": "upsert",
                    "keys": {},
                    "new": {},
                    "at": 0,
                }
            ],
            "next": 1,
            "more": False,
        },
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "status", "body", "headers"), WRONG, ids=[w[0] for w in WRONG]
)
def test_a_wrong_answer_is_refused(
    name: str, method: str, path: str, status: int, body: Any, headers: dict[str, str] | None
) -> None:
    with pytest.raises(ResponseMismatch):
        checked(answer(method, f"https://localhost:1/dev{path}", status, body, headers))


def test_the_stage_can_be_named() -> None:
    good = answer("GET", "https://localhost:1/v1/channels/public/scores", 200, HEAD)
    api_document().check_response(good, stage_prefix="")
    with pytest.raises(ResponseMismatch):
        api_document().check_response(good, stage_prefix="/v1")

"""Which requests get the local DynamoDB endpoint's CORS answers (pure functions)."""

from __future__ import annotations

from infra.local.motohost.dynamodb_cors import (
    ALLOWED_METHODS,
    MAX_AGE_S,
    preflight,
    response_headers,
)

ORIGIN = "http://localhost:5173"
REQUESTED = "authorization,content-type,x-amz-date,x-amz-security-token,x-amz-target"


def preflight_environ(**overrides: str) -> dict[str, str]:
    environ = {
        "REQUEST_METHOD": "OPTIONS",
        "PATH_INFO": "/",
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": REQUESTED,
    }
    environ.update(overrides)
    return {k: v for k, v in environ.items() if v}


def test_a_json_call_preflight_is_answered_with_the_requested_headers() -> None:
    answer = preflight(preflight_environ())
    assert answer is not None
    status, headers, body = answer
    named = dict(headers)
    assert (status, body) == (200, b"")
    assert named["Access-Control-Allow-Origin"] == "*"
    assert "POST" in named["Access-Control-Allow-Methods"] == ALLOWED_METHODS
    assert named["Access-Control-Allow-Headers"] == REQUESTED
    assert named["Access-Control-Max-Age"] == str(MAX_AGE_S)
    assert named["x-amzn-RequestId"]


def test_other_requests_are_no_preflight_of_a_json_call() -> None:
    assert preflight(preflight_environ(REQUEST_METHOD="POST")) is None
    assert preflight(preflight_environ(HTTP_ORIGIN="")) is None
    assert preflight(preflight_environ(HTTP_ACCESS_CONTROL_REQUEST_METHOD="")) is None
    assert preflight(preflight_environ(PATH_INFO="/bucket/key")) is None
    assert preflight(preflight_environ(HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type")) is None


def test_dynamodb_answers_to_a_page_name_the_origin_and_expose_the_request_id() -> None:
    call = {
        "REQUEST_METHOD": "POST",
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem",
    }
    named = dict(response_headers(call))
    assert named["Access-Control-Allow-Origin"] == "*"
    assert "x-amzn-RequestId" in named["Access-Control-Expose-Headers"]
    assert "x-amz-crc32" in named["Access-Control-Expose-Headers"]
    del call["HTTP_ORIGIN"]
    assert response_headers(call) == []  # no Origin: not a browser's cross-origin call
    sqs = {"HTTP_ORIGIN": ORIGIN, "HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessage"}
    assert response_headers(sqs) == []

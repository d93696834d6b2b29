"""CORS on the local stack as on AWS: API Gateway's preflights (the template's OPTIONS methods,
MOCK integrations), the functions' and the gateway's answers naming the allowed origin (the
template's ``AllowedOrigins``), and Cognito Identity allowing any origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, stack_config
from tests.support.openapi import checked

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
SIGNED_HEADERS = (
    "authorization",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(stack_config(parameters={"AllowedOrigins": ALLOWED})) as running:
        add_user(running, "cora", "correct horse", set())
        yield running


def browser_may_read(response: requests.Response, origin: str) -> bool:
    """What a browser decides for a page on ``origin`` (no credentials mode)."""
    allowed = response.headers.get("Access-Control-Allow-Origin")
    return allowed == "*" or allowed == origin


def preflight(url: str, method: str, ca_file: str) -> requests.Response:
    return checked(
        requests.options(
            url,
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": ", ".join(SIGNED_HEADERS),
            },
            verify=ca_file,
            timeout=30,
        )
    )


@pytest.mark.parametrize(
    ("path", "method"), [("/v1/login", "POST"), ("/v1/channels/public/scores", "GET")]
)
def test_preflights_are_answered_by_the_gateway_for_the_allowed_origin(
    stack: LocalStack, path: str, method: str
) -> None:
    answer = preflight(stack.api_url + path, method, stack.ca_file)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert method in answer.headers["Access-Control-Allow-Methods"].split(",")
    allowed_headers = {
        h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert set(SIGNED_HEADERS) <= allowed_headers
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    assert browser_may_read(answer, ALLOWED) and not browser_may_read(answer, OTHER)


def test_login_answers_and_errors_name_the_allowed_origin(stack: LocalStack) -> None:
    url = f"{stack.api_url}/v1/login"
    good = requests.post(
        url,
        json={"method": "password", "username": "cora", "password": "correct horse"},
        headers={"Origin": ALLOWED},
        verify=stack.ca_file,
        timeout=30,
    )
    assert checked(good).status_code == 200, good.text
    assert good.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert not browser_may_read(good, OTHER)
    wrong = {"method": "password", "username": "cora", "password": "wrong"}
    statuses = []
    for _ in range(8):
        answer = checked(requests.post(url, json=wrong, verify=stack.ca_file, timeout=30))
        statuses.append(answer.status_code)
        assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED, answer.status_code
        if answer.status_code == 429:
            break
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    # the page may read when to retry
    assert "Retry-After" in answer.headers
    assert "retry-after" in answer.headers["Access-Control-Expose-Headers"].lower()


def test_the_gateways_own_refusals_name_the_allowed_origin(stack: LocalStack) -> None:
    unsigned = requests.get(
        f"{stack.api_url}/v1/channels/public/scores",
        headers={"Origin": ALLOWED},
        verify=stack.ca_file,
        timeout=30,
    )
    assert checked(unsigned).status_code == 403, unsigned.text
    assert unsigned.headers["x-amzn-ErrorType"].endswith("Exception")
    assert unsigned.headers["Access-Control-Allow-Origin"] == ALLOWED
    nowhere = requests.options(f"{stack.api_url}/v1/nowhere", verify=stack.ca_file, timeout=30)
    assert checked(nowhere).status_code == 404
    assert nowhere.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_cognito_identity_allows_any_origin(stack: LocalStack) -> None:
    answer = requests.options(
        stack.identity_url,
        headers={
            "Origin": OTHER,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-amz-target, x-amz-user-agent",
        },
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]

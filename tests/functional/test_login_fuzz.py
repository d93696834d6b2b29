"""``POST /v1/login`` under random input: never a 5xx, every refusal a well-formed error.

The real login service (moto's DynamoDB and IoT, the local identity service) behind the real
HTTP edge, fed API Gateway proxy events whose body, headers, query string, path and base64
flag hypothesis chooses. Bodies are drawn from raw bytes, arbitrary text, arbitrary JSON and
near-valid login documents (which reach the password check and the throttle).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.http import handle_login_event
from tests.support.fuzz import examples
from tests.support.moto_server import SigninStack, login_event, signin_stack

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
login_documents = st.fixed_dictionaries(
    {"method": st.sampled_from(["password", "device", "id_token", "PASSWORD", ""])},
    optional={
        "username": st.one_of(st.text(max_size=140), st.sampled_from(["fuzz", "fuzz\n"])),
        "password": st.text(max_size=60),
        "thing_name": st.text(max_size=20),
        "secret": st.text(max_size=20),
        "id_token": st.one_of(st.text(max_size=60), st.just("a.b.c")),
        "extra": json_values,
    },
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=300),
    json_values.map(json.dumps),
    login_documents.map(json.dumps),
    st.integers(1, 40).map(lambda depth: "[" * depth * 100 + "]" * depth * 100),
)
header_maps = st.dictionaries(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    st.text(max_size=40),
    max_size=5,
)


@pytest.fixture(scope="module")
def stack():
    with signin_stack() as running:
        running.add_user("fuzz", "fuzz-password-1")
        yield running


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    encode=st.booleans(),
    headers=header_maps,
    query=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    path=st.text(max_size=30),
    source=st.ip_addresses(v=4).map(str),
)
def test_no_input_gives_a_server_error(
    stack: SigninStack,
    body: str | None,
    encode: bool,
    headers: dict[str, str],
    query: dict[str, str] | None,
    path: str,
    source: str,
) -> None:
    event: dict[str, Any] = login_event(body, source_ip=source)
    if encode and body is not None:
        event["body"] = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode()
        event["isBase64Encoded"] = True
    event["headers"] = headers
    event["queryStringParameters"] = query
    event["path"] = path
    result = handle_login_event(event, stack.service)
    status = result["statusCode"]
    answer = json.loads(result["body"])
    assert status in (200, 400, 401, 429), (status, answer)
    if status != 200:
        assert set(answer) == {"error", "message"}
        assert isinstance(answer["message"], str) and answer["message"]
    if status == 429:
        assert int(result["headers"]["Retry-After"]) >= 1

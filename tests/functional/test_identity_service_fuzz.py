"""Random requests at the local Cognito Identity + STS over a real socket: never a 5xx, a
dropped connection or a hang, and every 4xx in the shape of the protocol it answers in
(Cognito's JSON ``{"__type", "message"}``, STS's XML ``ErrorResponse``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.identity.service import IdentityPool, IdentityServiceConfig, IdentityServiceThread
from tests.support.fuzz import examples
from tests.support.http_strategies import TOKEN_CHARS, headers, url_chars
from tests.support.moto_server import ACCOUNT, POOL_ID, PROVIDER, REGION, developer_credential
from tests.support.raw_http import (
    Answer,
    assert_error_json,
    assert_sts_error_xml,
    exchange,
    request_bytes,
)

ROLE = f"arn:aws:iam::{ACCOUNT}:role/authenticated"
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
}
EXAMPLES = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
OPERATIONS = [
    "GetId",
    "GetCredentialsForIdentity",
    "GetOpenIdTokenForDeveloperIdentity",
    "LookupDeveloperIdentity",
    "DescribeIdentity",
]


class Target:
    """The running service, a developer credential and a real token of one identity."""

    def __init__(self, service: IdentityServiceThread, developer: StoredCredential) -> None:
        self.service = service
        self.developer = developer
        client_token = self._token()
        self.identity_id: str = client_token["IdentityId"]
        self.token: str = client_token["Token"]

    def _token(self) -> dict[str, Any]:
        body = json.dumps({"IdentityPoolId": POOL_ID, "Logins": {PROVIDER: "fuzz-user"}})
        headers = self.signed_headers("GetOpenIdTokenForDeveloperIdentity", body.encode())
        answer = exchange(self.service.port, request_bytes("POST", "/", headers, body.encode()))
        assert answer.status == 200, answer.body
        return dict(answer.json())

    def signed_headers(self, operation: str, body: bytes) -> list[tuple[str, str]]:
        """Headers of a SigV4-signed (cognito-identity) JSON call by the developer."""
        request = AWSRequest(
            method="POST",
            url=f"http://127.0.0.1:{self.service.port}/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"AWSCognitoIdentityService.{operation}",
            },
        )
        credentials = Credentials(
            self.developer.access_key_id,
            self.developer.secret_access_key,
            self.developer.session_token,
        )
        SigV4Auth(credentials, "cognito-identity", REGION).add_auth(request)
        return [("Host", f"127.0.0.1:{self.service.port}"), *request.headers.items()]


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    store = CredentialStore()
    config = IdentityServiceConfig(
        pools=(IdentityPool(POOL_ID, PROVIDER, ROLE),),
        roles={ROLE: [ROLE_POLICY]},
        request_timeout_s=1.0,
    )
    with IdentityServiceThread(config, store) as service:
        yield Target(service, developer_credential(store))


# --- strategies -----------------------------------------------------------------------------

path_chars = url_chars
targets = st.one_of(
    st.sampled_from(
        ["/", "/.well-known/jwks_uri", "/.well-known/openid-configuration", "/health", "//"]
    ),
    st.text(path_chars, max_size=80).map(lambda p: "/" + p),
)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=20,
)
bad_lengths = st.sampled_from(["abc", "-1", "\u00b2", "1e3", "0x10", "+-", "9" * 30])


@st.composite
def cognito_bodies(draw: st.DrawFn, target_token: str, identity_id: str) -> bytes:
    """A JSON body: random fields, or the real ones with random values, or not JSON at all."""
    kind = draw(st.sampled_from(["fields", "random", "bytes", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(500, 5000))
        return b'{"Logins": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "random":
        return json.dumps(draw(json_values)).encode()
    fields: dict[str, Any] = {}
    for name, value in (
        ("IdentityPoolId", st.sampled_from([POOL_ID, "us-east-1:nope"]) | json_values),
        ("IdentityId", st.sampled_from([identity_id, "x"]) | json_values),
        (
            "Logins",
            st.fixed_dictionaries(
                {"cognito-identity.amazonaws.com": st.sampled_from([target_token, "x"])}
            )
            | st.fixed_dictionaries({PROVIDER: st.text(max_size=1100)})
            | json_values,
        ),
        ("TokenDuration", st.integers(-10, 100_000) | json_values),
        ("DeveloperUserIdentifier", st.text(max_size=20) | json_values),
    ):
        if draw(st.booleans()):
            fields[name] = draw(value)
    return json.dumps(fields).encode()


@st.composite
def sts_bodies(draw: st.DrawFn, target_token: str) -> bytes:
    """A query-protocol body for AssumeRoleWithWebIdentity, with random or broken fields."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    fields: dict[str, str] = {}
    for name, value in (
        ("Action", st.sampled_from(["AssumeRoleWithWebIdentity", "AssumeRole", ""])),
        ("Version", st.just("2011-06-15")),
        ("RoleArn", st.sampled_from([ROLE, "arn:aws:iam::1:role/x", ""])),
        ("RoleSessionName", st.text(max_size=20)),
        ("WebIdentityToken", st.sampled_from([target_token, "forged", ""])),
        ("DurationSeconds", st.sampled_from(["900", "0", "x", "99999", "-5", "1e3"])),
        (
            "Policy",
            st.sampled_from(["[" * 1020 + "]" * 1020, "{", '{"x": 1}', "null", "x" * 3000])
            | json_values.map(json.dumps),
        ),
    ):
        if draw(st.integers(0, 3)):
            fields[name] = draw(value)
    return urlencode(fields).encode()


def check(answer: Answer) -> None:
    """No 5xx; a 4xx carries the error shape of the protocol it is answered in."""
    assert answer.status < 500, (answer.status, answer.body[:300])
    if answer.status < 400:
        return
    content_type = answer.headers.get("content-type", "")
    if not answer.body:
        return  # a HEAD answer: headers only
    if content_type == "application/x-amz-json-1.1":
        error = assert_error_json(answer, frozenset({"__type", "message"}))
        assert answer.headers.get("x-amzn-errortype") == error["__type"]
    elif content_type == "text/xml":
        assert_sts_error_xml(answer)
    else:
        assert content_type == "application/json", answer.headers
        assert_error_json(answer)


# --- the fuzzers ----------------------------------------------------------------------------


@EXAMPLES
@given(data=st.data(), method=methods, path=targets, extra=headers)
def test_any_request_gets_an_answer_in_the_services_error_shape(
    target: Target, data: st.DataObject, method: str, path: str, extra: list[tuple[str, str]]
) -> None:
    kind = data.draw(st.sampled_from(["cognito", "cognito-signed", "sts", "raw"]), "kind")
    operation = data.draw(st.sampled_from(OPERATIONS) | st.text(TOKEN_CHARS, max_size=30), "op")
    head = list(extra)
    if kind.startswith("cognito"):
        body = data.draw(cognito_bodies(target.token, target.identity_id), "body")
        method = data.draw(st.sampled_from(["POST", method]), "method")
        if kind == "cognito-signed":
            head = target.signed_headers(operation, body)
        else:
            head += [("X-Amz-Target", f"AWSCognitoIdentityService.{operation}")]
    elif kind == "sts":
        body = data.draw(sts_bodies(target.token), "body")
        method = data.draw(st.sampled_from(["POST", method]), "method")
        head += [("Content-Type", "application/x-www-form-urlencoded")]
    else:
        body = data.draw(st.binary(max_size=300), "body")
    length = data.draw(st.none() | bad_lengths, "content_length")
    answer = exchange(
        target.service.port,
        request_bytes(method, path, head, body, content_length=length),
        expect_body=method != "HEAD",
    )
    check(answer)
    if length is not None:  # refused: as a malformed request, or for its method
        assert answer.status in (400, 405, 413), answer.body


@EXAMPLES
@given(head=st.binary(max_size=400))
def test_arbitrary_bytes_as_a_request_head_get_an_answer(target: Target, head: bytes) -> None:
    request = head.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\n"
    check(exchange(target.service.port, request))

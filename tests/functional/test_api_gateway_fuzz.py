"""The local API Gateway layer itself, over real TLS sockets: unsigned and badly signed
requests with random methods, paths, query strings, headers and bodies get a 4xx with the
documented ``{"error", "message"}`` body (403, 404, 405, 400, 413), never a 5xx, a dropped
connection or a hang. (The functions behind it are fuzzed in their own tests.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.apigateway.service import ApiGateway, ApiRoute, Throttle
from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.functions.runtime import FunctionPool, FunctionSpec
from infra.local.net.certs import ensure_tls_files
from tests.support.fuzz import examples
from tests.support.http_strategies import header_values, headers, url_chars
from tests.support.raw_http import Answer, assert_error_json, exchange, request_bytes

REGION = "us-east-1"
EXAMPLES = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
INVOKE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "execute-api:Invoke",
            "Resource": "arn:aws:execute-api:us-east-1:123456789012:localapi/dev/GET/v1/*",
        }
    ],
}


class Target:
    """The running API gateway (echo function behind it) and a credential it knows."""

    def __init__(self, api: ApiGateway, ca_file: Path, credential: StoredCredential) -> None:
        self.api = api
        self.ca_file = ca_file
        self.credential = credential

    def send(self, request: bytes, *, head: bool = False) -> Answer:
        """One request on a new TLS connection; its answer."""
        return exchange(self.api.port, request, ca_file=self.ca_file, expect_body=not head)

    def signed_headers(self, method: str, target: str, body: bytes) -> list[tuple[str, str]]:
        """SigV4 (execute-api) headers for the request, as botocore signs it."""
        request = AWSRequest(
            method=method, url=f"https://localhost:{self.api.port}{target}", data=body
        )
        credential = self.credential
        SigV4Auth(
            Credentials(
                credential.access_key_id, credential.secret_access_key, credential.session_token
            ),
            "execute-api",
            REGION,
        ).add_auth(request)
        return [("Host", f"localhost:{self.api.port}"), *request.headers.items()]


@pytest.fixture(scope="module")
def target(state_dir: Path) -> Iterator[Target]:
    spec = FunctionSpec("EchoFunction", "tests.support.echo_handler.handler", {}, timeout_s=5)
    functions = FunctionPool(spec)
    functions.warm()
    tls = ensure_tls_files(state_dir, REGION)
    store = CredentialStore()
    routes = [
        ApiRoute("POST", "/v1/login", "NONE", functions.invoke),
        ApiRoute("GET", "/v1/channels/{channel+}", "AWS_IAM", functions.invoke),
    ]
    api = ApiGateway(routes, store, tls.server_context(), throttle=Throttle(0, 0))
    api.start()
    credential = mint_temporary_credential(
        "us-east-1:fuzz",
        [[INVOKE], []],
        variables={"cognito-identity.amazonaws.com:sub": "us-east-1:fuzz"},
    )
    store.put(credential)
    try:
        yield Target(api, tls.ca_file, credential)
    finally:
        api.stop()
        functions.close()


def check(answer: Answer) -> None:
    """No 5xx; every 4xx is JSON ``{"error", "message"}`` with API Gateway's error type."""
    assert answer.status < 500, (answer.status, answer.body[:300])
    if 400 <= answer.status < 500 and answer.body:
        assert answer.headers.get("content-type") == "application/json", answer.headers
        assert_error_json(answer)
        assert answer.headers.get("x-amzn-errortype", "").endswith("Exception"), answer.headers


methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
)
paths = st.one_of(
    st.sampled_from(
        [
            "/dev/v1/channels/public/scores",
            "/dev/v1/channels/users/us-east-1:other/todos",
            "/dev/v1/channels/..%2F..%2Fx",
            "/dev/v1/channels/a%252Fb",
            "/dev/V1/Channels/public/scores",
            "/dev/v1/channels/",
            "/dev/v1/login",
            "/dev",
            "/",
            "/prod/v1/login",
        ]
    ),
    st.text(url_chars, max_size=80).map(lambda p: "/dev/v1/" + p),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
        max_size=40,
    ).map(lambda p: "/dev/v1/channels/" + quote(p, safe="/%")),
)
queries = st.one_of(st.just(""), st.text(url_chars, max_size=60).map(lambda q: "?" + q))
bad_lengths = st.sampled_from(["abc", "-1", "\u00b2", "1e3", "0x10", "+-", "9" * 30])


@EXAMPLES
@given(
    data=st.data(),
    method=methods,
    path=paths,
    query=queries,
    extra=headers,
    body=st.binary(max_size=300),
)
def test_unsigned_and_badly_signed_requests_get_a_documented_4xx(
    target: Target,
    data: st.DataObject,
    method: str,
    path: str,
    query: str,
    extra: list[tuple[str, str]],
    body: bytes,
) -> None:
    signing = data.draw(st.sampled_from(["unsigned", "tampered", "garbage-auth"]), "signing")
    head = [("Host", f"localhost:{target.api.port}")]
    if signing == "tampered":
        head = target.signed_headers(method, path + query, body)
        body = body + b"!"  # the signed payload hash no longer matches
    elif signing == "garbage-auth":
        head.append(("Authorization", data.draw(header_values, "authorization")))
    head += extra
    length = data.draw(st.none() | bad_lengths, "content_length")
    answer = target.send(
        request_bytes(method, path + query, head, body, content_length=length),
        head=method == "HEAD",
    )
    check(answer)
    if answer.status < 400:  # only the unauthenticated login route may pass
        assert method == "POST" and path.startswith("/dev/v1/login"), (method, path)


@EXAMPLES
@given(head=st.binary(max_size=400))
def test_arbitrary_bytes_as_a_request_head_get_an_answer(target: Target, head: bytes) -> None:
    request = head.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\n"
    check(target.send(request))

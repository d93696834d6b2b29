"""The local API Gateway and Lambda runtime: routing, SigV4, IAM, proxy events, errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra.local.apigateway.service import ApiGateway, ApiRoute, GatewayResponse, Throttle
from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.functions.runtime import (
    THROTTLED,
    ConcurrencyLimit,
    FunctionError,
    FunctionPool,
    FunctionSpec,
)
from infra.local.net.certs import ensure_tls_files

REGION = "us-east-1"
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


@pytest.fixture(scope="module")
def pool() -> Iterator[FunctionPool]:
    spec = FunctionSpec(
        "EchoFunction",
        "tests.support.echo_handler.handler",
        {"ECHO_SETTING": "from-template"},
        timeout_s=5,
        max_concurrency=3,
    )
    functions = FunctionPool(spec)
    functions.warm()
    yield functions
    functions.close()


@pytest.fixture(scope="module")
def api(pool: FunctionPool, state_dir: Path) -> Iterator[tuple[ApiGateway, CredentialStore, Path]]:
    tls = ensure_tls_files(state_dir, REGION)
    store = CredentialStore()
    routes = [
        ApiRoute("POST", "/v1/login", "NONE", pool.invoke),
        ApiRoute("GET", "/v1/channels/{channel+}", "AWS_IAM", pool.invoke),
    ]
    gateway = ApiGateway(routes, store, tls.server_context(), throttle=Throttle(0, 0))
    gateway.start()
    yield gateway, store, tls.ca_file
    gateway.stop()


def identity(store: CredentialStore, document: dict = INVOKE) -> StoredCredential:
    credential = mint_temporary_credential(
        "us-east-1:abc",
        [[document], []],
        variables={
            "cognito-identity.amazonaws.com:sub": "us-east-1:abc",
            "cognito-identity.amazonaws.com:aud": "us-east-1:pool",
        },
    )
    store.put(credential)
    return credential


def signed_get(url: str, credential: StoredCredential, ca: Path) -> requests.Response:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(
        Credentials(
            credential.access_key_id, credential.secret_access_key, credential.session_token
        ),
        "execute-api",
        REGION,
    ).add_auth(request)
    return requests.get(url, headers=dict(request.headers), verify=str(ca), timeout=20)


def test_unauthenticated_route_gets_a_proxy_event(api) -> None:
    gateway, _, ca = api
    response = requests.post(
        f"{gateway.url}/v1/login", json={"method": "password"}, verify=str(ca), timeout=20
    )
    assert response.status_code == 200
    body = response.json()
    event = body["event"]
    assert event["resource"] == "/v1/login" and event["httpMethod"] == "POST"
    assert json.loads(event["body"]) == {"method": "password"}
    assert event["requestContext"]["identity"]["cognitoIdentityId"] is None
    assert body["env"] == "from-template" and body["function"] == "EchoFunction"
    assert 0 < body["remaining_ms"] <= 5000


def test_iam_route_passes_the_cognito_identity(api) -> None:
    gateway, store, ca = api
    credential = identity(store)
    response = signed_get(
        f"{gateway.url}/v1/channels/users/us-east-1%3Aabc/todos/changes?after=3", credential, ca
    )
    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert event["pathParameters"] == {"channel": "users/us-east-1:abc/todos/changes"}
    assert event["queryStringParameters"] == {"after": "3"}
    assert event["requestContext"]["identity"]["cognitoIdentityId"] == "us-east-1:abc"
    assert event["requestContext"]["identity"]["cognitoIdentityPoolId"] == "us-east-1:pool"


def test_iam_route_passes_a_role_sessions_arn_as_the_user_arn(api) -> None:
    """As AWS does: ``userArn`` is the caller's ARN (a device's, from the IoT credentials
    provider, is a session of the device role), which the channels function checks."""
    gateway, store, ca = api
    session = "arn:aws:sts::123456789012:assumed-role/tidings-dev-DeviceRole-1A2B/c0ffee"
    credential = replace(
        mint_temporary_credential("tidings-dev-DeviceRole-1A2B/c0ffee", [[INVOKE]]), arn=session
    )
    store.put(credential)
    response = signed_get(f"{gateway.url}/v1/channels/things/t1/settings", credential, ca)
    assert response.status_code == 200, response.text
    caller = response.json()["event"]["requestContext"]["identity"]
    assert caller["userArn"] == session and caller["cognitoIdentityId"] is None


def test_iam_route_refuses_unsigned_tampered_and_unpermitted(api) -> None:
    gateway, store, ca = api
    url = f"{gateway.url}/v1/channels/public/scores"
    unsigned = requests.get(url, verify=str(ca), timeout=20)
    assert unsigned.status_code == 403 and set(unsigned.json()) == {"error", "message"}
    credential = identity(store)
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(
        Credentials(credential.access_key_id, "wrong-secret", credential.session_token),
        "execute-api",
        REGION,
    ).add_auth(request)
    tampered = requests.get(url, headers=dict(request.headers), verify=str(ca), timeout=20)
    assert tampered.status_code == 403 and tampered.json()["error"] == "signature_mismatch"
    nothing = identity(
        store,
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "execute-api:Invoke",
                    "Resource": "arn:aws:execute-api:us-east-1:123456789012:localapi/dev/POST/*",
                }
            ],
        },
    )
    denied = signed_get(url, nothing, ca)
    assert denied.status_code == 403 and "execute-api:Invoke" in denied.json()["message"]


def test_unknown_route_method_and_function_failure(api) -> None:
    gateway, store, ca = api
    assert requests.get(f"{gateway.url}/v2/x", verify=str(ca), timeout=20).status_code == 404
    assert (
        requests.get(
            f"https://localhost:{gateway.port}/other/v1/login", verify=str(ca), timeout=20
        ).status_code
        == 404
    )
    wrong_method = requests.get(f"{gateway.url}/v1/login", verify=str(ca), timeout=20)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    failed = signed_get(f"{gateway.url}/v1/channels/public/scores?fail=1", identity(store), ca)
    assert failed.status_code == 502 and failed.json()["error"] == "bad_gateway"


def test_concurrent_invocations_use_separate_workers(api, pool: FunctionPool) -> None:
    gateway, store, ca = api
    credential = identity(store)
    pids: list[int] = []

    def call() -> None:
        response = signed_get(f"{gateway.url}/v1/channels/public/scores?sleep=0.5", credential, ca)
        pids.append(response.json()["pid"])

    threads = [threading.Thread(target=call) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 3  # three workers served the overlapping long calls
    assert time.monotonic() - started < 10


def test_throttling_answers_429() -> None:
    throttle = Throttle(rate=1, burst=2)
    assert [throttle.take() for _ in range(3)] == [True, True, False]


def test_a_function_that_times_out_or_dies_is_an_error_and_is_replaced() -> None:
    spec = FunctionSpec(
        name="slow",
        handler="tests.support.echo_handler.handler",
        timeout_s=0.5,
        max_concurrency=1,
    )
    functions = FunctionPool(spec)
    try:
        started = time.monotonic()
        with pytest.raises(FunctionError) as late:
            functions.invoke({"queryStringParameters": {"sleep": "10"}})
        assert late.value.error_type == "Timeout"
        assert time.monotonic() - started < 8  # the timeout (+2 s grace), not the sleep
        with pytest.raises(FunctionError) as died:
            functions.invoke({"queryStringParameters": {"exit": "1"}})
        assert died.value.error_type == "WorkerDied"
        answer = functions.invoke({"queryStringParameters": {}})  # a fresh worker serves
        assert answer["statusCode"] == 200
    finally:
        functions.close()


def test_path_parameters_are_decoded_once(api) -> None:
    gateway, store, ca = api
    url = f"{gateway.url}/v1/channels/users/us-east-1%3Aabc%252Fdef/todos"
    response = signed_get(url, identity(store), ca)
    assert response.status_code == 200, response.text
    # %252F arrives as the text %2F, as API Gateway decodes a path parameter once
    parameters = response.json()["event"]["pathParameters"]
    assert parameters == {"channel": "users/us-east-1:abc%2Fdef/todos"}


def throttling_pool(limit: ConcurrencyLimit | None = None, name: str = "busy") -> FunctionPool:
    spec = FunctionSpec(name, "tests.support.echo_handler.handler", timeout_s=10, max_concurrency=1)
    pool = FunctionPool(spec, concurrency=limit)
    pool.warm()
    return pool


def sleeping_call(pool: FunctionPool, seconds: str) -> threading.Thread:
    thread = threading.Thread(
        target=pool.invoke, args=({"queryStringParameters": {"sleep": seconds}},)
    )
    thread.start()
    return thread


def wait_busy(limit: ConcurrencyLimit, count: int) -> None:
    deadline = time.monotonic() + 20
    while limit.in_use < count:
        assert time.monotonic() < deadline, "the invocation never started"
        time.sleep(0.01)


def test_an_invocation_beyond_the_limit_is_throttled_at_once() -> None:
    pool = throttling_pool()
    try:
        running = sleeping_call(pool, "3")
        wait_busy(pool.concurrency, 1)
        started = time.monotonic()
        with pytest.raises(FunctionError) as throttled:
            pool.invoke({"queryStringParameters": {}})
        assert throttled.value.error_type == THROTTLED
        assert time.monotonic() - started < 2  # refused, not queued behind the 3 s call
        running.join()
        assert pool.invoke({"queryStringParameters": {}})["statusCode"] == 200  # freed
    finally:
        pool.close()


def test_functions_without_a_reservation_share_the_account_pool() -> None:
    account = ConcurrencyLimit(1, "the account's unreserved concurrency")
    first, second = throttling_pool(account, "one"), throttling_pool(account, "two")
    try:
        running = sleeping_call(first, "3")
        wait_busy(account, 1)
        with pytest.raises(FunctionError) as throttled:
            second.invoke({"queryStringParameters": {}})
        assert throttled.value.error_type == THROTTLED and "unreserved" in str(throttled.value)
        running.join()
        assert second.invoke({"queryStringParameters": {}})["statusCode"] == 200
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("customised", [True, False])
def test_a_throttled_function_gets_the_integration_failure_response(
    state_dir: Path, customised: bool
) -> None:
    tls = ensure_tls_files(state_dir, REGION)
    store = CredentialStore()
    pool = throttling_pool()
    responses = {
        "INTEGRATION_FAILURE": GatewayResponse(
            "INTEGRATION_FAILURE",
            503,
            {"Retry-After": "1"},
            '{"error": "unavailable", "message": "at capacity; retry"}',
        )
    }
    gateway = ApiGateway(
        [ApiRoute("GET", "/v1/channels/{channel+}", "AWS_IAM", pool.invoke)],
        store,
        tls.server_context(),
        gateway_responses=responses if customised else None,
    )
    gateway.start()
    try:
        credential = identity(store)
        running = threading.Thread(
            target=signed_get,
            args=(f"{gateway.url}/v1/channels/public/scores?sleep=3", credential, tls.ca_file),
        )
        running.start()
        wait_busy(pool.concurrency, 1)
        started = time.monotonic()
        refused = signed_get(f"{gateway.url}/v1/channels/public/scores", credential, tls.ca_file)
        assert time.monotonic() - started < 2.5
        if customised:  # the template's answer: a clear 503 with Retry-After
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert refused.json() == {"error": "unavailable", "message": "at capacity; retry"}
        else:  # API Gateway's own: a bare 500, Lambda's 429 is not passed on
            assert refused.status_code == 500
            assert refused.headers["x-amzn-ErrorType"] == "InternalServerErrorException"
            assert refused.json()["message"] == "Internal server error"
        running.join()
    finally:
        gateway.stop()
        pool.close()

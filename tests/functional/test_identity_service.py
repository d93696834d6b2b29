"""The local Cognito Identity + STS, driven by boto3 over the real protocols."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import urllib.request
from typing import Any
from urllib.parse import urlencode

import boto3
import jwt
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.identity.service import (
    COGNITO_ISSUER,
    IdentityPool,
    IdentityServiceConfig,
    IdentityServiceThread,
)
from tests.support.moto_server import ACCOUNT, POOL_ID, PROVIDER, REGION, developer_credential

ROLE = f"arn:aws:iam::{ACCOUNT}:role/authenticated"
SUB = "${cognito-identity.amazonaws.com:sub}"
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:client/{SUB}",
        },
    ],
}
IOT_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
    ],
}
NO_RETRY = Config(retries={"max_attempts": 1})


def config(**overrides: Any) -> IdentityServiceConfig:
    return IdentityServiceConfig(
        pools=(IdentityPool(POOL_ID, PROVIDER, ROLE),), roles={ROLE: [ROLE_POLICY]}, **overrides
    )


@pytest.fixture(scope="module")
def service():
    store = CredentialStore()
    with IdentityServiceThread(
        config(), store, iot_policies=lambda identity: [IOT_POLICY]
    ) as running:
        yield running


def developer(service: IdentityServiceThread, credential: StoredCredential | None = None) -> Any:
    credential = credential or developer_credential(service.credentials)
    return boto3.client(
        "cognito-identity",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=credential.access_key_id,
        aws_secret_access_key=credential.secret_access_key,
        aws_session_token=credential.session_token,
        config=NO_RETRY,
    )


def public(service: IdentityServiceThread, name: str = "cognito-identity") -> Any:
    return boto3.client(
        name,
        endpoint_url=service.endpoint,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


def token_for(service: IdentityServiceThread, user: str, duration: int = 900) -> dict[str, Any]:
    return dict(
        developer(service).get_open_id_token_for_developer_identity(
            IdentityPoolId=POOL_ID, Logins={PROVIDER: user}, TokenDuration=duration
        )
    )


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_same_developer_user_always_maps_to_the_same_identity(service):
    first, second, other = (token_for(service, u) for u in ("u-1", "u-1", "u-2"))
    assert first["IdentityId"] == second["IdentityId"] != other["IdentityId"]
    assert first["IdentityId"].startswith(f"{REGION}:")


def test_tokens_are_rs256_with_cognito_claims_and_a_jwks(service):
    answer = token_for(service, "u-claims", duration=600)
    with urllib.request.urlopen(service.jwks_uri) as response:
        jwks = json.loads(response.read())
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(
        answer["Token"], key.key, algorithms=["RS256"], audience=POOL_ID, issuer=COGNITO_ISSUER
    )
    assert claims["sub"] == answer["IdentityId"]
    assert claims["amr"][0] == "authenticated" and PROVIDER in claims["amr"]
    assert 595 <= claims["exp"] - claims["iat"] <= 600
    assert jwt.get_unverified_header(answer["Token"])["kid"] == jwks["keys"][0]["kid"]


def test_developer_calls_must_be_signed_by_a_known_key(service):
    with pytest.raises(ClientError) as unsigned:
        public(service).get_open_id_token_for_developer_identity(
            IdentityPoolId=POOL_ID, Logins={PROVIDER: "u"}
        )
    assert error_code(unsigned) in {"IncompleteSignatureException", "UnrecognizedClientException"}
    stranger = mint_temporary_credential("stranger", [])  # never put in the store
    with pytest.raises(ClientError) as unknown:
        developer(service, stranger).get_open_id_token_for_developer_identity(
            IdentityPoolId=POOL_ID, Logins={PROVIDER: "u"}
        )
    assert error_code(unknown) == "UnrecognizedClientException"
    good = developer_credential(service.credentials)
    wrong_secret = dataclasses.replace(good, secret_access_key="x" * 40)
    with pytest.raises(ClientError) as mismatch:
        developer(service, wrong_secret).get_open_id_token_for_developer_identity(
            IdentityPoolId=POOL_ID, Logins={PROVIDER: "u"}
        )
    assert error_code(mismatch) == "InvalidSignatureException"


def test_developer_calls_are_authorised_by_the_callers_policy(service):
    no_policy = mint_temporary_credential(
        "other-role/session",
        [
            [
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
                }
            ]
        ],
    )
    service.credentials.put(no_policy)
    with pytest.raises(ClientError) as denied:
        developer(service, no_policy).get_open_id_token_for_developer_identity(
            IdentityPoolId=POOL_ID, Logins={PROVIDER: "u"}
        )
    assert error_code(denied) == "AccessDeniedException"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        (
            {"IdentityPoolId": "us-east-1:nope", "Logins": {PROVIDER: "u"}},
            "ResourceNotFoundException",
        ),
        ({"IdentityPoolId": POOL_ID, "Logins": {"other.provider": "u"}}, "NotAuthorizedException"),
        (
            {"IdentityPoolId": POOL_ID, "Logins": {PROVIDER: "u"}, "TokenDuration": 100000},
            "InvalidParameterException",
        ),
    ],
)
def test_bad_developer_requests_are_refused(service, kwargs, code):
    with pytest.raises(ClientError) as refused:
        developer(service).get_open_id_token_for_developer_identity(**kwargs)
    assert error_code(refused) == code


def test_lookup_developer_identity(service):
    answer = token_for(service, "u-lookup")
    client = developer(service)
    by_user = client.lookup_developer_identity(
        IdentityPoolId=POOL_ID, DeveloperUserIdentifier="u-lookup"
    )
    assert by_user["IdentityId"] == answer["IdentityId"]
    by_id = client.lookup_developer_identity(
        IdentityPoolId=POOL_ID, IdentityId=answer["IdentityId"]
    )
    assert by_id["DeveloperUserIdentifierList"] == ["u-lookup"]
    with pytest.raises(ClientError) as missing:
        client.lookup_developer_identity(IdentityPoolId=POOL_ID, DeveloperUserIdentifier="none")
    assert error_code(missing) == "ResourceNotFoundException"


def test_get_credentials_for_identity_mints_verifiable_credentials(service):
    answer = token_for(service, "u-creds")
    result = public(service).get_credentials_for_identity(
        IdentityId=answer["IdentityId"], Logins={"cognito-identity.amazonaws.com": answer["Token"]}
    )
    creds = result["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    stored = service.credentials.get(creds["AccessKeyId"])
    assert stored is not None
    assert stored.secret_access_key == creds["SecretKey"]
    assert stored.session_token == creds["SessionToken"]
    assert stored.principal == answer["IdentityId"]
    assert stored.policy_sets == ((ROLE_POLICY,), (IOT_POLICY,))
    assert stored.variables["cognito-identity.amazonaws.com:sub"] == answer["IdentityId"]
    assert 3590 <= creds["Expiration"].timestamp() - time.time() <= 3600
    # GetId resolves the token to the same identity
    assert (
        public(service).get_id(
            IdentityPoolId=POOL_ID, Logins={"cognito-identity.amazonaws.com": answer["Token"]}
        )["IdentityId"]
        == answer["IdentityId"]
    )


def test_credentials_need_the_identitys_own_valid_token(service):
    mine, theirs = token_for(service, "u-a"), token_for(service, "u-b")
    client = public(service)
    cases = [
        (mine["IdentityId"], theirs["Token"]),  # another identity's token
        (mine["IdentityId"], mine["Token"][:-6] + "AAAAAA"),  # tampered signature
        (mine["IdentityId"], "not-a-token"),
    ]
    for identity_id, token in cases:
        with pytest.raises(ClientError) as refused:
            client.get_credentials_for_identity(
                IdentityId=identity_id, Logins={"cognito-identity.amazonaws.com": token}
            )
        assert error_code(refused) == "NotAuthorizedException"
    with pytest.raises(ClientError) as no_login:
        client.get_credentials_for_identity(IdentityId=mine["IdentityId"])
    assert error_code(no_login) == "NotAuthorizedException"
    with pytest.raises(ClientError):
        client.get_id(IdentityPoolId=POOL_ID)  # unauthenticated identities are off


def test_an_expired_openid_token_is_refused(service):
    answer = token_for(service, "u-expiring", duration=1)
    time.sleep(2.1)
    with pytest.raises(ClientError) as expired:
        public(service).get_credentials_for_identity(
            IdentityId=answer["IdentityId"],
            Logins={"cognito-identity.amazonaws.com": answer["Token"]},
        )
    assert "expired" in str(expired.value).lower()


def test_sts_assume_role_with_web_identity_with_a_session_policy(service):
    answer = token_for(service, "u-sts")
    session_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:client/only-this",
            }
        ],
    }
    sts = public(service, "sts")
    result = sts.assume_role_with_web_identity(
        RoleArn=ROLE,
        RoleSessionName="web",
        WebIdentityToken=answer["Token"],
        Policy=json.dumps(session_policy),
        DurationSeconds=900,
    )
    creds = result["Credentials"]
    assert result["SubjectFromWebIdentityToken"] == answer["IdentityId"]
    assert result["AssumedRoleUser"]["Arn"].endswith(":assumed-role/authenticated/web")
    stored = service.credentials.get(creds["AccessKeyId"])
    assert stored is not None
    assert stored.policy_sets == ((ROLE_POLICY,), (session_policy,), (IOT_POLICY,))
    assert 890 <= creds["Expiration"].timestamp() - time.time() <= 900
    with pytest.raises(ClientError) as wrong_role:
        sts.assume_role_with_web_identity(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/admin",
            RoleSessionName="xx",
            WebIdentityToken=answer["Token"],
        )
    assert error_code(wrong_role) == "AccessDenied"
    with pytest.raises(ClientError) as bad_token:
        sts.assume_role_with_web_identity(
            RoleArn=ROLE, RoleSessionName="xx", WebIdentityToken="forged"
        )
    assert error_code(bad_token) == "InvalidIdentityToken"
    with pytest.raises(ClientError) as bad_policy:
        sts.assume_role_with_web_identity(
            RoleArn=ROLE, RoleSessionName="xx", WebIdentityToken=answer["Token"], Policy='{"x": 1}'
        )
    assert error_code(bad_policy) == "MalformedPolicyDocument"


def test_identities_and_keys_survive_a_restart_with_a_state_dir(tmp_path):
    store = CredentialStore()
    with IdentityServiceThread(config(state_dir=tmp_path), store) as first:
        answer = token_for(first, "u-persistent")
    with IdentityServiceThread(config(state_dir=tmp_path), store) as second:
        assert token_for(second, "u-persistent")["IdentityId"] == answer["IdentityId"]
        # a token issued before the restart still buys credentials
        public(second).get_credentials_for_identity(
            IdentityId=answer["IdentityId"],
            Logins={"cognito-identity.amazonaws.com": answer["Token"]},
        )


# --- malformed requests: a 4xx in the service's error shape, never a drop, hang or 5xx -----


def raw_exchange(service: IdentityServiceThread, request: bytes, timeout: float = 15.0) -> bytes:
    """Send ``request`` on a fresh socket; everything the service answers until it closes."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def parsed(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP/1.1 answer."""
    assert answer, "the service closed the connection without an answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def cognito_post(body: bytes, content_length: str | None = None, target: str = "GetId") -> bytes:
    length = str(len(body)) if content_length is None else content_length
    return (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.1\r\n"
        + f"X-Amz-Target: AWSCognitoIdentityService.{target}\r\n".encode()
        + f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


def assert_cognito_error(answer: bytes, status: int, code: str | None = None) -> dict[str, str]:
    got, headers, body = parsed(answer)
    assert got == status, answer[:300]
    error = json.loads(body)
    assert set(error) == {"__type", "message"} and error["message"], error
    assert headers.get("x-amzn-errortype") == error["__type"]
    if code is not None:
        assert error["__type"] == code, error
    return dict(error)


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", " ", "²", "12, 12"])
def test_a_malformed_content_length_gets_a_400(service, length):
    answer = raw_exchange(service, cognito_post(b"{}", content_length=length))
    assert_cognito_error(answer, 400, "SerializationException")


def test_a_body_nested_deeper_than_the_parser_goes_gets_serialization_exception(service):
    for body in (b"[" * 100_000, b'{"IdentityPoolId": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"):
        answer = raw_exchange(service, cognito_post(body))
        assert_cognito_error(answer, 400, "SerializationException")


def test_a_body_that_is_not_json_gets_serialization_exception(service):
    for body in (b"{not json", b"\xff\xfe", b'"a string"', b"[]"):
        assert_cognito_error(
            raw_exchange(service, cognito_post(body)), 400, "SerializationException"
        )


@pytest.fixture(scope="module")
def impatient_service():
    with IdentityServiceThread(config(request_timeout_s=0.5), CredentialStore()) as running:
        yield running


def test_a_body_shorter_than_its_content_length_gets_a_400_not_a_hang(impatient_service):
    with socket.create_connection(("127.0.0.1", impatient_service.port), timeout=15) as sock:
        sock.sendall(cognito_post(b"{}", content_length="100"))  # then nothing more
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    error = assert_cognito_error(answer, 400, "SerializationException")
    assert "Content-Length" in error["message"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 405),  # http.server said 501
        (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400),  # http.server said 505
        (b"garbage\r\n\r\n", 400),  # http.server answered without a status line
        (b"\x1c\r\n\r\n", 400),  # http.server closed without an answer
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
    ],
)
def test_http_level_refusals_are_json_4xx(service, request_bytes, status):
    assert_cognito_error(raw_exchange(service, request_bytes), status)


def test_a_session_policy_nested_too_deeply_is_malformed_not_a_dropped_connection(service):
    answer = token_for(service, "u-deep-policy")
    policy = "[" * 1020 + "]" * 1020  # within STS's 2048 characters
    body = urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": ROLE,
            "RoleSessionName": "deep",
            "WebIdentityToken": answer["Token"],
            "Policy": policy,
        }
    ).encode()
    request = (
        b"POST / HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    status, headers, reply = parsed(raw_exchange(service, request))
    assert status == 400, reply
    assert headers["content-type"] == "text/xml"
    assert b"<Code>MalformedPolicyDocument</Code>" in reply


def test_a_cors_preflight_from_any_origin_is_allowed(service):
    request = (
        b"OPTIONS / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://anywhere.example\r\n"
        b"Access-Control-Request-Method: POST\r\n"
        b"Access-Control-Request-Headers: content-type, x-amz-target, x-amz-user-agent\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, headers, body = parsed(raw_exchange(service, request))
    assert status == 200 and body == b""
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"].split(", ")
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {
        "content-type",
        "x-amz-target",
        "x-amz-user-agent",
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
    } <= allowed
    assert int(headers["access-control-max-age"]) > 0


def test_answers_and_errors_carry_the_cors_origin(service):
    answer = token_for(service, "u-cors")
    body = json.dumps(
        {
            "IdentityId": answer["IdentityId"],
            "Logins": {"cognito-identity.amazonaws.com": answer["Token"]},
        }
    ).encode()
    status, headers, _ = parsed(
        raw_exchange(service, cognito_post(body, target="GetCredentialsForIdentity"))
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "x-amzn-requestid" in headers["access-control-expose-headers"].lower()
    refused = raw_exchange(service, cognito_post(b"{not json"))
    assert_cognito_error(refused, 400, "SerializationException")
    assert parsed(refused)[1]["access-control-allow-origin"] == "*"

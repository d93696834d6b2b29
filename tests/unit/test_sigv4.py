"""SigV4 verification against what real signers produce (awscrt, botocore, AWSIoTPythonSDK)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import botocore.crt.auth
import botocore.session
import pytest
from awscrt import auth as crt_auth
from awscrt import http as crt_http
from awscrt import websocket as crt_websocket
from AWSIoTPythonSDK.core.protocol.connection.cores import SigV4Core
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse, HTTPHeaders
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.awsauth import sigv4
from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.sigv4 import SignatureError, VerifiedRequest
from tests.support.fuzz import examples

REGION = "us-east-1"
IOT_HOST = "abc123example-ats.iot.us-east-1.amazonaws.com"
API_HOST = "api.example.test"
SIGNED_AT = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
T0 = SIGNED_AT.timestamp()

TEMP = StoredCredential(
    access_key_id="ASIATESTKEY000000001",
    secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
    principal="us-east-1:11111111-2222-3333-4444-555555555555",
    session_token="IQoJb3JpZ2luX2Vj/token+with=odd/chars==",
    expiration=T0 + 3600,
)
LONG_TERM = StoredCredential(
    access_key_id="AKIATESTKEY000000002",
    secret_access_key="long/term+secret",
    principal="arn:aws:iam::123456789012:user/dev",
)
STORE = CredentialStore([TEMP, LONG_TERM])


@dataclass(frozen=True)
class Signed:
    """A signed request as the server receives it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    signed_at: float = T0

    def with_query(self, query: str) -> Signed:
        return replace(self, query=query)

    def with_header(self, name: str, value: str) -> Signed:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return replace(self, headers=[*kept, (name, value)])

    def without_header(self, name: str) -> Signed:
        return replace(self, headers=[(k, v) for k, v in self.headers if k.lower() != name.lower()])


def verify_query(
    req: Signed,
    *,
    lookup: Callable[[str], StoredCredential | None] = STORE.get,
    region: str = REGION,
    services: tuple[str, ...] = ("iotdevicegateway", "iotdata"),
    now: float | None = None,
) -> VerifiedRequest:
    return sigv4.verify_presigned(
        req.method,
        req.path,
        req.query,
        req.headers,
        lookup=lookup,
        region=region,
        services=services,
        now=req.signed_at + 1 if now is None else now,
    )


def verify_header(
    req: Signed,
    *,
    lookup: Callable[[str], StoredCredential | None] = STORE.get,
    region: str = REGION,
    services: tuple[str, ...] = ("iotdata", "execute-api"),
    now: float | None = None,
) -> VerifiedRequest:
    return sigv4.verify_authorization_header(
        req.method,
        req.path,
        req.query,
        req.headers,
        req.body,
        lookup=lookup,
        region=region,
        services=services,
        now=req.signed_at + 1 if now is None else now,
    )


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(SignatureError) as info:
        call()
    return info.value.code


def replace_param(query: str, name: str, value: str) -> str:
    out = []
    for piece in query.split("&"):
        key = piece.partition("=")[0]
        out.append(f"{name}={value}" if key == name else piece)
    return "&".join(out)


def drop_param(query: str, name: str) -> str:
    return "&".join(p for p in query.split("&") if p.partition("=")[0] != name)


def param(query: str, name: str) -> str:
    for piece in query.split("&"):
        key, _, value = piece.partition("=")
        if key == name:
            return value
    raise KeyError(name)


def amz_date_epoch(value: str) -> float:
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()


# --- signers -----------------------------------------------------------------------------


def _fixed_now(remove_tzinfo: bool = True) -> dt.datetime:
    return SIGNED_AT.replace(tzinfo=None) if remove_tzinfo else SIGNED_AT


@pytest.fixture(autouse=True)
def _botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's signers (pure Python and its awscrt-backed one) sign at SIGNED_AT."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", _fixed_now)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", _fixed_now)


def crt_provider(cred: StoredCredential) -> crt_auth.AwsCredentialsProvider:
    return crt_auth.AwsCredentialsProvider.new_static(
        cred.access_key_id, cred.secret_access_key, cred.session_token
    )


def crt_websocket_upgrade(
    cred: StoredCredential = TEMP,
    *,
    omit_session_token: bool = True,
    region: str = REGION,
    service: str = "iotdevicegateway",
    date: dt.datetime = SIGNED_AT,
) -> Signed:
    """The upgrade request awsiotsdk's websockets_with_default_aws_signing sends.

    aws-c-mqtt builds the handshake with create_handshake_request semantics (Host without port,
    Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version) and adds
    ``Sec-WebSocket-Protocol: mqtt``; the transform signs it with this exact config.
    """
    request = crt_websocket.create_handshake_request(host=IOT_HOST, path="/mqtt")
    request.headers.add("Sec-WebSocket-Protocol", "mqtt")
    config = crt_auth.AwsSigningConfig(
        algorithm=crt_auth.AwsSigningAlgorithm.V4,
        signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=crt_provider(cred),
        region=region,
        service=service,
        date=date,
        omit_session_token=omit_session_token,
    )
    crt_auth.aws_sign_request(request, config).result(timeout=10)
    path, _, query = request.path.partition("?")
    return Signed("GET", path, query, list(request.headers), signed_at=date.timestamp())


def crt_header_signed(
    method: str,
    path_and_query: str,
    headers: list[tuple[str, str]],
    *,
    service: str = "iotdata",
    cred: StoredCredential = TEMP,
) -> Signed:
    request = crt_http.HttpRequest(method, path_and_query, headers=crt_http.HttpHeaders(headers))
    config = crt_auth.AwsSigningConfig(
        algorithm=crt_auth.AwsSigningAlgorithm.V4,
        signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=crt_provider(cred),
        region=REGION,
        service=service,
        date=SIGNED_AT,
    )
    crt_auth.aws_sign_request(request, config).result(timeout=10)
    path, _, query = request.path.partition("?")
    return Signed(method, path, query, list(request.headers))


def botocore_credentials(cred: StoredCredential) -> Credentials:
    return Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token)


def botocore_presigned(
    cred: StoredCredential = TEMP, *, service: str = "iotdata", expires: int = 86400
) -> Signed:
    """botocore's SigV4QueryAuth, as a Python client would presign the MQTT URL."""
    request = AWSRequest(method="GET", url=f"https://{IOT_HOST}/mqtt")
    SigV4QueryAuth(botocore_credentials(cred), service, REGION, expires=expires).add_auth(request)
    parts = urlsplit(str(request.url))
    signed_at = amz_date_epoch(param(parts.query, "X-Amz-Date"))
    return Signed("GET", parts.path, parts.query, [("Host", IOT_HOST)], signed_at=signed_at)


def iot_python_sdk_url(cred: StoredCredential = TEMP) -> Signed:
    """AWSIoTPythonSDK 1.6.2's own signer (cores.SigV4Core), with its handshake headers."""
    core = SigV4Core()
    core.setIAMCredentials(cred.access_key_id, cred.secret_access_key, cred.session_token or "")
    core._createAmazonDate = lambda: ["20240501", "20240501T120000Z"]
    url = core.createWebsocketEndpoint(IOT_HOST, 443, REGION, "GET", "iotdata", "/mqtt")
    target = url[url.index("/mqtt") :]
    path, _, query = target.partition("?")
    headers = [
        ("Host", IOT_HOST),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "mqttv3.1"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("sec-websocket-key", "x" * 128),
    ]
    return Signed("GET", path, query, headers)


class _RawBody:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def boto3_publish(topic: str = "some/topic", payload: bytes = b'{"seq":1}') -> Signed:
    """The request boto3's iot-data client sends for Publish (captured before the wire)."""
    session = botocore.session.get_session()
    client: Any = session.create_client(
        "iot-data",
        region_name=REGION,
        endpoint_url=f"https://{IOT_HOST}",
        aws_access_key_id=TEMP.access_key_id,
        aws_secret_access_key=TEMP.secret_access_key,
        aws_session_token=TEMP.session_token,
    )
    captured: dict[str, Any] = {}

    def before_send(request: Any, **_: Any) -> Any:
        captured["request"] = request
        return AWSResponse(request.url, 200, HTTPHeaders(), _RawBody())

    client.meta.events.register("before-send.iot-data.Publish", before_send)
    client.publish(topic=topic, qos=1, payload=payload)
    sent = captured["request"]
    parts = urlsplit(sent.url)
    headers = [
        (name, value.decode() if isinstance(value, bytes) else value)
        for name, value in sent.headers.items()
    ]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(("Host", parts.netloc))  # what urllib3 adds on the wire
    amz_date = next(v for k, v in headers if k.lower() == "x-amz-date")
    return Signed(
        "POST", parts.path, parts.query, headers, sent.body, signed_at=amz_date_epoch(amz_date)
    )


def botocore_header_signed(
    method: str,
    url: str,
    *,
    service: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    cred: StoredCredential = TEMP,
) -> Signed:
    """botocore's pure-Python SigV4Auth (the Authorization header form)."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(botocore_credentials(cred), service, REGION).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    sent = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()]
    sent.append(("Host", parts.netloc))
    amz_date = next(v for k, v in sent if k.lower() == "x-amz-date")
    return Signed(method, parts.path, parts.query, sent, body, signed_at=amz_date_epoch(amz_date))


def execute_api_changes() -> Signed:
    return botocore_header_signed(
        "GET",
        f"https://{API_HOST}/v1/channels/users/us-east-1%3Aabc/todos/changes?after=3&limit=10",
        service="execute-api",
    )


# --- what the real clients do --------------------------------------------------------------


def test_awscrt_websocket_upgrade_verifies() -> None:
    req = crt_websocket_upgrade()
    result = verify_query(req)
    assert result == VerifiedRequest(TEMP, "iotdevicegateway", REGION, T0)


def test_awscrt_signs_connection_and_host_and_adds_the_token_to_the_query() -> None:
    req = crt_websocket_upgrade()
    assert param(req.query, "X-Amz-SignedHeaders") == "connection%3Bhost"
    assert "X-Amz-Expires" not in req.query
    names = [p.partition("=")[0] for p in req.query.split("&")]
    assert names[-2:] == ["X-Amz-Security-Token", "X-Amz-Signature"]
    assert dict(req.headers)["Host"] == IOT_HOST  # no port


def test_awscrt_token_is_outside_the_signature_and_botocore_token_inside() -> None:
    # Swap the token in the URL for another credential's token: awscrt's signature still
    # matches (the token is not in its canonical query), botocore's does not.
    other = replace(TEMP, session_token="another-token")
    lookup = {TEMP.access_key_id: other}.get
    crt = crt_websocket_upgrade()
    swapped = crt.with_query(replace_param(crt.query, "X-Amz-Security-Token", "another-token"))
    assert verify_query(swapped, lookup=lookup).credential == other
    boto = botocore_presigned()
    swapped = boto.with_query(replace_param(boto.query, "X-Amz-Security-Token", "another-token"))
    assert code_of(lambda: verify_query(swapped, lookup=lookup)) == "signature_mismatch"


def test_awscrt_hashes_the_empty_payload() -> None:
    req = crt_websocket_upgrade()
    with pytest.raises(SignatureError) as info:
        verify_query(req.with_header("Connection", "close"))
    canonical = info.value.canonical_request
    assert canonical is not None
    assert canonical.endswith("\nconnection;host\n" + sigv4.EMPTY_SHA256)


def test_undeclared_unsigned_payload_is_refused() -> None:
    # No IoT client signs UNSIGNED-PAYLOAD (awscrt's default, the browser client and
    # AWSIoTPythonSDK all hash the empty body), so a URL that does without saying so fails.
    request = crt_websocket.create_handshake_request(host=IOT_HOST, path="/mqtt")
    config = crt_auth.AwsSigningConfig(
        algorithm=crt_auth.AwsSigningAlgorithm.V4,
        signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=crt_provider(LONG_TERM),
        region=REGION,
        service="iotdevicegateway",
        date=SIGNED_AT,
        signed_body_value=crt_auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
    )
    crt_auth.aws_sign_request(request, config).result(timeout=10)
    path, _, query = request.path.partition("?")
    req = Signed("GET", path, query, list(request.headers))
    assert code_of(lambda: verify_query(req)) == "signature_mismatch"


def test_declared_unsigned_payload_is_accepted() -> None:
    request = AWSRequest(
        method="GET",
        url=f"https://{IOT_HOST}/mqtt",
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    SigV4QueryAuth(botocore_credentials(TEMP), "iotdata", REGION, expires=60).add_auth(request)
    parts = urlsplit(str(request.url))
    assert "x-amz-content-sha256" in param(parts.query, "X-Amz-SignedHeaders")
    headers = [("Host", IOT_HOST), ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD")]
    req = Signed("GET", parts.path, parts.query, headers)
    assert verify_query(req).credential == TEMP
    assert code_of(lambda: verify_query(req.with_header("X-Amz-Content-SHA256", "x"))) == (
        "signature_mismatch"
    )


def test_awscrt_with_signed_token_verifies() -> None:
    req = crt_websocket_upgrade(omit_session_token=False)
    assert verify_query(req).credential == TEMP


def test_awscrt_long_term_key_without_token_verifies() -> None:
    req = crt_websocket_upgrade(LONG_TERM)
    assert "X-Amz-Security-Token" not in req.query
    assert verify_query(req).credential == LONG_TERM


def test_unsigned_headers_may_change() -> None:
    req = crt_websocket_upgrade()
    changed = req.with_header("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")
    changed = changed.with_header("Upgrade", "WebSocket")
    assert verify_query(changed).credential == TEMP


def test_header_name_case_and_order_do_not_matter() -> None:
    req = crt_websocket_upgrade()
    shuffled = [(k.upper(), v) for k, v in reversed(req.headers)]
    assert verify_query(replace(req, headers=shuffled)).credential == TEMP


def test_botocore_presigned_iotdata_verifies_with_token_signed() -> None:
    req = botocore_presigned()
    assert param(req.query, "X-Amz-Expires") == "86400"
    assert "X-Amz-Security-Token" in req.query.split("X-Amz-Signature")[0]
    result = verify_query(req)
    assert (result.service, result.credential) == ("iotdata", TEMP)


def test_awsiotpythonsdk_url_verifies() -> None:
    req = iot_python_sdk_url()
    assert param(req.query, "X-Amz-Expires") == "86400"
    assert req.query.endswith(
        "X-Amz-Security-Token=IQoJb3JpZ2luX2Vj/token%2Bwith%3Dodd/chars%3D%3D"
    )
    result = verify_query(req)
    assert (result.service, result.signed_at) == ("iotdata", T0)


def test_presigned_url_valid_for_its_expiry_even_after_skew() -> None:
    req = iot_python_sdk_url()
    assert verify_query(req, now=T0 + 3000).credential == TEMP  # credential expires at T0+3600


def test_boto3_iot_data_publish_verifies() -> None:
    req = boto3_publish()
    assert req.path == "/topics/some%2Ftopic"
    assert req.query == "qos=1"
    result = verify_header(req)
    assert (result.service, result.credential) == ("iotdata", TEMP)


def test_botocore_sigv4auth_iot_data_publish_verifies() -> None:
    req = botocore_header_signed(
        "POST",
        f"https://{IOT_HOST}/topics/some%2Ftopic?qos=1",
        service="iotdata",
        body=b'{"seq":1}',
    )
    assert verify_header(req).service == "iotdata"


def test_botocore_execute_api_get_verifies() -> None:
    result = verify_header(execute_api_changes())
    assert (result.service, result.region) == ("execute-api", REGION)


def test_long_term_key_header_signed_verifies() -> None:
    req = botocore_header_signed(
        "GET",
        f"https://{API_HOST}/v1/channels/public/scores",
        service="execute-api",
        cred=LONG_TERM,
    )
    assert verify_header(req).credential == LONG_TERM


@pytest.mark.parametrize(
    "raw_path",
    ["/topics/a%2Fb", "/topics/a%2Fb/./c//d/../e", "/topics/%7Euser/x~y/a%20b", "/"],
)
def test_path_canonicalisation_matches_botocore_and_awscrt(raw_path: str) -> None:
    # Both sign the raw path's segments encoded once more (a%2Fb -> a%252Fb), after removing
    # dot segments and empty segments; the verifier accepts both.
    by_crt = crt_header_signed("POST", raw_path, [("host", IOT_HOST)])
    assert verify_header(by_crt).credential == TEMP
    by_botocore = botocore_header_signed("POST", f"https://{IOT_HOST}{raw_path}", service="iotdata")
    assert verify_header(by_botocore).credential == TEMP


def test_encoded_slash_is_not_the_same_path_as_a_slash() -> None:
    req = crt_header_signed("POST", "/topics/a%2Fb", [("host", IOT_HOST)])
    assert code_of(lambda: verify_header(replace(req, path="/topics/a/b"))) == "signature_mismatch"


def test_repeated_headers_are_joined_and_whitespace_collapsed() -> None:
    req = crt_header_signed(
        "GET",
        "/v1/x?b=2&a=1&a=0",
        [("host", API_HOST), ("x-tag", "  one   two "), ("X-Tag", "three")],
        service="execute-api",
    )
    assert "x-tag" in dict(req.headers)["Authorization"]
    assert verify_header(req).credential == TEMP
    reordered = [h for h in req.headers if h[0].lower() != "x-tag"]
    reordered += [("X-Tag", "three"), ("x-tag", "one two")]
    assert code_of(lambda: verify_header(replace(req, headers=reordered))) == "signature_mismatch"


def test_body_must_match_declared_content_hash() -> None:
    req = botocore_header_signed(
        "POST",
        f"https://{API_HOST}/v1/x",
        service="execute-api",
        body=b"hello",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(b"hello").hexdigest()},
    )
    assert verify_header(req).credential == TEMP
    tampered = replace(req, body=b"HELLO")
    assert code_of(lambda: verify_header(tampered)) == "signature_mismatch"


def test_body_is_signed_without_content_hash_header() -> None:
    req = boto3_publish()
    assert code_of(lambda: verify_header(replace(req, body=b'{"seq":2}'))) == "signature_mismatch"


# --- refusals: presigned -------------------------------------------------------------------

PRESIGNED_MAKERS: dict[str, Callable[[], Signed]] = {
    "awscrt": crt_websocket_upgrade,
    "botocore": botocore_presigned,
    "awsiotpythonsdk": iot_python_sdk_url,
}


@pytest.fixture(params=sorted(PRESIGNED_MAKERS))
def presigned(request: pytest.FixtureRequest) -> Signed:
    return PRESIGNED_MAKERS[request.param]()


def _flip(signature: str) -> str:
    return ("0" if signature[0] != "0" else "1") + signature[1:]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (
            lambda r: r.with_query(
                replace_param(r.query, "X-Amz-Signature", _flip(param(r.query, "X-Amz-Signature")))
            ),
            "signature_mismatch",
        ),
        (lambda r: r.with_header("Host", "other.example.com"), "signature_mismatch"),
        (lambda r: replace(r, path="/mqtt2"), "signature_mismatch"),
        (lambda r: replace(r, method="POST"), "signature_mismatch"),
        (lambda r: r.with_query(r.query + "&extra=1"), "signature_mismatch"),
        (lambda r: r.with_query(drop_param(r.query, "X-Amz-Security-Token")), "invalid_token"),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-Security-Token", "bogus")),
            "invalid_token",
        ),
        (lambda r: r.with_query(drop_param(r.query, "X-Amz-Credential")), "malformed"),
        (lambda r: r.with_query(drop_param(r.query, "X-Amz-Signature")), "malformed"),
        (lambda r: r.with_query(drop_param(r.query, "X-Amz-Date")), "malformed"),
        (lambda r: r.with_query(drop_param(r.query, "X-Amz-SignedHeaders")), "malformed"),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-Date", "20240501T1200Z")),
            "malformed",
        ),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-Date", "20241301T120000Z")),
            "malformed",
        ),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-Date", "20240502T120000Z")),
            "malformed",
        ),  # scope date differs
        (lambda r: r.with_query(replace_param(r.query, "X-Amz-Signature", "zz" * 32)), "malformed"),
        (lambda r: r.with_query(replace_param(r.query, "X-Amz-Signature", "ab")), "malformed"),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-Algorithm", "AWS4-HMAC-SHA1")),
            "malformed",
        ),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-Credential", "ASIA%2F20240501")),
            "malformed",
        ),
        (
            lambda r: r.with_query(replace_param(r.query, "X-Amz-SignedHeaders", "connection")),
            "malformed",
        ),
        (lambda r: r.with_query(r.query + "&X-Amz-Date=20240501T120000Z"), "malformed"),
    ],
    ids=[
        "tampered-signature",
        "changed-host",
        "changed-path",
        "changed-method",
        "added-param",
        "missing-token",
        "wrong-token",
        "missing-credential",
        "missing-signature",
        "missing-date",
        "missing-signed-headers",
        "garbled-date",
        "impossible-date",
        "scope-date-mismatch",
        "non-hex-signature",
        "short-signature",
        "wrong-algorithm",
        "short-credential",
        "host-not-signed",
        "repeated-date",
    ],
)
def test_presigned_refusals(
    presigned: Signed, mutate: Callable[[Signed], Signed], code: str
) -> None:
    assert code_of(lambda: verify_query(mutate(presigned))) == code


def test_changed_signed_connection_header_is_refused() -> None:
    req = crt_websocket_upgrade()
    assert code_of(lambda: verify_query(req.with_header("Connection", "keep-alive"))) == (
        "signature_mismatch"
    )
    assert code_of(lambda: verify_query(req.without_header("Connection"))) == "signature_mismatch"


def test_changed_query_param_is_refused() -> None:
    req = boto3_publish()
    assert code_of(lambda: verify_header(req.with_query("qos=0"))) == "signature_mismatch"


def test_wrong_secret_is_refused(presigned: Signed) -> None:
    other = {TEMP.access_key_id: replace(TEMP, secret_access_key="not-the-secret")}
    assert code_of(lambda: verify_query(presigned, lookup=other.get)) == "signature_mismatch"


def test_unknown_key_is_refused(presigned: Signed) -> None:
    assert code_of(lambda: verify_query(presigned, lookup=lambda _: None)) == "unknown_key"


def test_token_sent_for_a_long_term_key_is_refused() -> None:
    req = crt_websocket_upgrade(LONG_TERM)
    with_token = req.with_query(req.query + "&X-Amz-Security-Token=abc")
    assert code_of(lambda: verify_query(with_token)) == "invalid_token"


def test_wrong_region_is_refused(presigned: Signed) -> None:
    assert code_of(lambda: verify_query(presigned, region="eu-west-1")) == "wrong_region"


def test_signed_for_another_region_is_refused() -> None:
    req = crt_websocket_upgrade(region="eu-west-1")
    assert code_of(lambda: verify_query(req)) == "wrong_region"


def test_wrong_service_is_refused(presigned: Signed) -> None:
    assert code_of(lambda: verify_query(presigned, services=("execute-api",))) == "wrong_service"


def test_expired_credential_is_refused_after_the_signature_matches() -> None:
    expiring = replace(TEMP, expiration=T0 + 60)
    req = crt_websocket_upgrade(expiring)
    lookup = {expiring.access_key_id: expiring}.get
    assert code_of(lambda: verify_query(req, lookup=lookup, now=T0 + 120)) == (
        "expired_credentials"
    )
    # Without the secret, an expired key only ever yields a signature mismatch.
    forged = req.with_query(replace_param(req.query, "X-Amz-Signature", "0" * 64))
    assert code_of(lambda: verify_query(forged, lookup=lookup, now=T0 + 120)) == (
        "signature_mismatch"
    )


def test_date_ten_minutes_old_without_expires_is_refused() -> None:
    req = crt_websocket_upgrade()
    assert code_of(lambda: verify_query(req, now=T0 + 600)) == "request_expired"
    assert verify_query(req, now=T0 + 299).credential == TEMP


def test_future_date_beyond_skew_is_refused() -> None:
    req = crt_websocket_upgrade()
    assert code_of(lambda: verify_query(req, now=T0 - 600)) == "request_expired"
    with_expiry = iot_python_sdk_url()
    assert code_of(lambda: verify_query(with_expiry, now=T0 - 600)) == "request_expired"
    assert verify_query(with_expiry, now=T0 - 200).credential == TEMP


def test_elapsed_expires_is_refused() -> None:
    req = botocore_presigned(LONG_TERM, expires=60)
    assert code_of(lambda: verify_query(req, now=req.signed_at + 61)) == "request_expired"
    assert verify_query(req, now=req.signed_at + 59).credential == LONG_TERM


@pytest.mark.parametrize("expires", ["0", "604801", "-5", "abc", "1e3", "\u00b2"])
def test_out_of_range_expires_is_malformed(expires: str) -> None:
    req = iot_python_sdk_url()
    bad = req.with_query(replace_param(req.query, "X-Amz-Expires", expires))
    assert code_of(lambda: verify_query(bad)) == "malformed"


def test_messages_never_contain_the_expected_signature() -> None:
    req = crt_websocket_upgrade()
    good = param(req.query, "X-Amz-Signature")
    tampered = req.with_query(replace_param(req.query, "X-Amz-Signature", _flip(good)))
    with pytest.raises(SignatureError) as info:
        verify_query(tampered)
    error = info.value
    assert good not in error.message
    assert good not in str(error)
    assert good not in (error.canonical_request or "") + (error.string_to_sign or "")
    assert TEMP.secret_access_key not in error.message


# --- refusals: Authorization header ------------------------------------------------------


def _set_signature(req: Signed, signature: str) -> Signed:
    header = dict((k.lower(), v) for k, v in req.headers)["authorization"]
    return req.with_header("Authorization", header.rsplit("=", 1)[0] + "=" + signature)


@pytest.mark.parametrize("maker", [boto3_publish, execute_api_changes], ids=["iotdata", "api"])
def test_header_refusals(maker: Callable[[], Signed]) -> None:
    req = maker()
    auth_header = dict((k.lower(), v) for k, v in req.headers)["authorization"]
    signature = auth_header.rsplit("=", 1)[1]
    assert code_of(lambda: verify_header(_set_signature(req, _flip(signature)))) == (
        "signature_mismatch"
    )
    assert code_of(lambda: verify_header(_set_signature(req, "XYZ"))) == "malformed"
    assert code_of(lambda: verify_header(req.with_header("Host", "evil.test"))) == (
        "signature_mismatch"
    )
    assert code_of(lambda: verify_header(replace(req, path=req.path + "x"))) == (
        "signature_mismatch"
    )
    assert code_of(lambda: verify_header(req.with_query(req.query + "&z=1"))) == (
        "signature_mismatch"
    )
    assert code_of(lambda: verify_header(req.without_header("X-Amz-Security-Token"))) == (
        "invalid_token"
    )
    assert code_of(lambda: verify_header(req, lookup=lambda _: None)) == "unknown_key"
    assert code_of(lambda: verify_header(req, region="us-west-2")) == "wrong_region"
    assert code_of(lambda: verify_header(req, services=("s3",))) == "wrong_service"
    assert code_of(lambda: verify_header(req, now=req.signed_at + 600)) == "request_expired"
    assert code_of(lambda: verify_header(req, now=req.signed_at - 600)) == "request_expired"
    assert code_of(lambda: verify_header(req.without_header("Authorization"))) == "malformed"
    assert code_of(lambda: verify_header(req.without_header("X-Amz-Date"))) == "malformed"
    assert code_of(lambda: verify_header(req.with_header("X-Amz-Date", "yesterday"))) == (
        "malformed"
    )
    no_credential = auth_header.replace("Credential=", "Credentials=")
    assert code_of(lambda: verify_header(req.with_header("Authorization", no_credential))) == (
        "malformed"
    )
    garbled = "AWS4-HMAC-SHA256 Credential"
    assert code_of(lambda: verify_header(req.with_header("Authorization", garbled))) == (
        "malformed"
    )


def test_header_wrong_token_is_invalid_token() -> None:
    req = boto3_publish()
    assert code_of(lambda: verify_header(req.with_header("X-Amz-Security-Token", "x"))) == (
        "invalid_token"
    )


def test_header_expired_credential() -> None:
    req = boto3_publish()
    expiring = {TEMP.access_key_id: replace(TEMP, expiration=req.signed_at)}
    assert code_of(lambda: verify_header(req, lookup=expiring.get)) == "expired_credentials"


def test_date_header_accepted_when_no_x_amz_date() -> None:
    # botocore signs with the Date header (and no X-Amz-Date) when the request has one.
    request = AWSRequest(
        method="GET", url=f"https://{API_HOST}/v1/channels/public/scores", headers={"Date": "-"}
    )
    SigV4Auth(botocore_credentials(TEMP), "execute-api", REGION).add_auth(request)
    prepared = request.prepare()
    headers = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()]
    headers.append(("Host", API_HOST))
    names = {k.lower() for k, _ in headers}
    assert "date" in names and "x-amz-date" not in names
    date = dict((k.lower(), v) for k, v in headers)["date"]
    signed_at = dt.datetime.strptime(date, "%a, %d %b %Y %H:%M:%S %z").timestamp()
    req = Signed("GET", "/v1/channels/public/scores", "", headers, signed_at=signed_at)
    assert verify_header(req).signed_at == signed_at
    assert code_of(lambda: verify_header(req.with_header("Date", "not a date"))) == "malformed"


# --- garbage in, SignatureError out -----------------------------------------------------------

_KEYS = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
]
_VALID = dict(p.split("=", 1) for p in crt_websocket_upgrade().query.split("&"))
_piece = st.one_of(
    st.sampled_from([f"{k}={v}" for k, v in _VALID.items()]),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(_KEYS), st.text(max_size=40)),
    st.text(max_size=30),
)
_queries = st.one_of(st.text(max_size=200), st.lists(_piece, max_size=10).map("&".join))
_header_names = st.one_of(
    st.sampled_from(
        [
            "Host",
            "Connection",
            "Authorization",
            "X-Amz-Date",
            "x-amz-security-token",
            "x-amz-content-sha256",
            "Date",
        ]
    ),
    st.text(max_size=15),
)
_headers = st.lists(st.tuples(_header_names, st.text(max_size=80)), max_size=8)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.text(max_size=40), query=_queries, headers=_headers, body=st.binary(max_size=20))
def test_garbage_only_ever_raises_signature_error(
    path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: sigv4.verify_presigned(
            "GET",
            path,
            query,
            headers,
            lookup=STORE.get,
            region=REGION,
            services=("iotdevicegateway",),
            now=T0,
        ),
        lambda: sigv4.verify_authorization_header(
            "POST",
            path,
            query,
            headers,
            body,
            lookup=STORE.get,
            region=REGION,
            services=("iotdevicegateway",),
            now=T0,
        ),
    ]
    for call in calls:
        try:
            call()
        except SignatureError as error:
            assert error.code in {
                "malformed",
                "unknown_key",
                "invalid_token",
                "signature_mismatch",
                "expired_credentials",
                "request_expired",
                "wrong_region",
                "wrong_service",
            }
            assert error.message


@settings(max_examples=examples(100), deadline=None)
@given(auth=st.text(max_size=120), date=st.text(max_size=20))
def test_garbage_authorization_header_only_raises_signature_error(auth: str, date: str) -> None:
    headers = [
        ("Host", API_HOST),
        ("Authorization", "AWS4-HMAC-SHA256 " + auth),
        ("X-Amz-Date", date),
    ]
    with pytest.raises(SignatureError):
        sigv4.verify_authorization_header(
            "GET",
            "/",
            "",
            headers,
            b"",
            lookup=STORE.get,
            region=REGION,
            services=("execute-api",),
            now=T0,
        )


def test_public_surface() -> None:
    assert sorted(sigv4.__all__) == [
        "SignatureError",
        "VerifiedRequest",
        "verify_authorization_header",
        "verify_presigned",
    ]

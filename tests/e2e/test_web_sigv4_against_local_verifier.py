"""The web client's SigV4 signer (client_sdk/web/src/sigv4.js), checked by the local verifier.

``node`` runs ``client_sdk/web/test/sign-cli.mjs`` on the requests below; the signed headers
and URLs it prints must pass :func:`infra.local.awsauth.sigv4.verify_authorization_header`
and :func:`~infra.local.awsauth.sigv4.verify_presigned`, the checks the local API gateway and
IoT gateway apply, as AWS does. Requests are given to the verifier as a browser would send
them: the URL's path and query as written, its ``Host``, the given headers and the added ones.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.sigv4 import (
    SignatureError,
    VerifiedRequest,
    verify_authorization_header,
    verify_presigned,
)

ROOT = Path(__file__).resolve().parents[2]
SIGN_CLI = ROOT / "client_sdk" / "web" / "test" / "sign-cli.mjs"

REGION = "us-east-1"
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()
IDENTITY = "us-east-1:11111111-2222-3333-4444-555555555555"
API = "https://api.example.test"
IOT = "wss://abc123example-ats.iot.us-east-1.amazonaws.com/mqtt"
TEMP = StoredCredential(
    access_key_id="ASIATESTKEY000000001",
    secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
    principal=IDENTITY,
    session_token="IQoJb3JpZ2luX2Vj/token+with=odd/chars==",
    expiration=T0 + 3600,
)
STORE = CredentialStore([TEMP])
CREDENTIALS = {
    "accessKeyId": TEMP.access_key_id,
    "secretAccessKey": TEMP.secret_access_key,
    "sessionToken": TEMP.session_token,
}

REQUESTS: dict[str, dict[str, Any]] = {
    "identity id in the path as written": {
        "method": "GET",
        "url": f"{API}/v1/users/{IDENTITY}/todos",
    },
    "identity id percent-encoded, as the Python client sends it, and a query": {
        "method": "GET",
        "url": f"{API}/v1/channels/users/{IDENTITY.replace(':', '%3A')}/todos"
        "?limit=100&after=5&cursor=a%2Fb+c",
    },
    "POST with a JSON body": {
        "method": "POST",
        "url": f"{API}/v1/users/{IDENTITY}/todos?dry_run",
        "headers": {"Content-Type": "application/json"},
        "body": '{"text": "buy milk ✓"}',
    },
    "without X-Amz-Content-Sha256": {
        "method": "DELETE",
        "url": f"{API}/v1/users/{IDENTITY}/todos/7",
        "contentSha256": False,
    },
}
PRESIGNED: dict[str, dict[str, Any]] = {
    "AWS IoT, token appended after signing": {"url": IOT, "tokenAfterSigning": True},
    "AWS IoT, token after signing, with X-Amz-Expires": {
        "url": IOT,
        "tokenAfterSigning": True,
        "expiresIn": 3600,
    },
    "token inside the signed query": {"url": f"{IOT}?x-amz-customauthorizer-name=none"},
}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not on PATH: the web client's tests need Node.js 20 or later "
            "(see client_sdk/web/README.md)"
        )
    return node


def _run_signer(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [_node(), str(SIGN_CLI)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"sign-cli.mjs failed:\n{done.stderr}"
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def _common(options: dict[str, Any]) -> dict[str, Any]:
    return {"region": REGION, "credentials": CREDENTIALS, "now": T0, **options}


@pytest.fixture(scope="module")
def signed() -> dict[str, dict[str, Any]]:
    names = [*REQUESTS, *PRESIGNED]
    jobs = [{"sign": _common({"service": "execute-api", **o})} for o in REQUESTS.values()]
    jobs += [{"presign": _common({"service": "iotdevicegateway", **o})} for o in PRESIGNED.values()]
    return dict(zip(names, _run_signer(jobs), strict=True))


def _verify_header(
    request: dict[str, Any], added: dict[str, str], *, path: str | None = None
) -> VerifiedRequest:
    url = urlsplit(request["url"])
    headers = [("Host", url.netloc), *request.get("headers", {}).items(), *added.items()]
    return verify_authorization_header(
        request["method"],
        url.path if path is None else path,
        url.query,
        headers,
        request.get("body", "").encode("utf-8"),
        lookup=STORE.get,
        region=REGION,
        services={"execute-api"},
        now=T0 + 1,
    )


def _verify_url(signed_url: str) -> VerifiedRequest:
    url = urlsplit(signed_url)
    headers = [
        ("Host", url.netloc),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Protocol", "mqtt"),
    ]
    return verify_presigned(
        "GET",
        url.path,
        url.query,
        headers,
        lookup=STORE.get,
        region=REGION,
        services={"iotdevicegateway"},
        now=T0 + 1,
    )


@pytest.mark.parametrize("name", REQUESTS)
def test_signed_api_request_verifies(signed: dict[str, dict[str, Any]], name: str) -> None:
    added = signed[name]["headers"]
    verified = _verify_header(REQUESTS[name], added)
    assert verified.credential.principal == IDENTITY
    assert (verified.service, verified.region, verified.signed_at) == ("execute-api", REGION, T0)
    assert added["X-Amz-Security-Token"] == TEMP.session_token
    assert ("X-Amz-Content-Sha256" in added) is REQUESTS[name].get("contentSha256", True)


def test_the_identity_ids_colon_is_signed_as_it_is_sent(signed: dict[str, dict[str, Any]]) -> None:
    """``:`` sent as is is signed as ``%3A``; ``%3A`` sent is signed as ``%253A``: a
    signature for one spelling does not verify for the other."""
    name = "identity id in the path as written"
    added = signed[name]["headers"]
    encoded = f"/v1/users/{IDENTITY.replace(':', '%3A')}/todos"
    with pytest.raises(SignatureError) as refused:
        _verify_header(REQUESTS[name], added, path=encoded)
    assert refused.value.code == "signature_mismatch"
    assert refused.value.canonical_request is not None
    assert "/v1/users/us-east-1%253A" in refused.value.canonical_request


def test_a_changed_body_is_refused(signed: dict[str, dict[str, Any]]) -> None:
    name = "POST with a JSON body"
    request = {**REQUESTS[name], "body": '{"text": "buy beer"}'}
    with pytest.raises(SignatureError) as refused:
        _verify_header(request, signed[name]["headers"])
    assert refused.value.code == "signature_mismatch"


@pytest.mark.parametrize("name", PRESIGNED)
def test_presigned_iot_url_verifies(signed: dict[str, dict[str, Any]], name: str) -> None:
    url = signed[name]["url"]
    verified = _verify_url(url)
    assert verified.credential.principal == IDENTITY
    assert (verified.service, verified.signed_at) == ("iotdevicegateway", T0)
    query = urlsplit(url).query.split("&")
    names = [piece.partition("=")[0] for piece in query]
    if PRESIGNED[name].get("tokenAfterSigning"):
        assert names[-2:] == ["X-Amz-Signature", "X-Amz-Security-Token"]
    else:
        assert names[-2:] == ["X-Amz-Security-Token", "X-Amz-Signature"]
    assert ("X-Amz-Expires" in names) is ("expiresIn" in PRESIGNED[name])


def test_a_presigned_url_for_another_host_is_refused(signed: dict[str, dict[str, Any]]) -> None:
    url = signed["AWS IoT, token appended after signing"]["url"]
    with pytest.raises(SignatureError) as refused:
        _verify_url(url.replace("abc123example-ats", "other-ats"))
    assert refused.value.code == "signature_mismatch"

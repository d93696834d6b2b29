"""Forged and foreign ID tokens at ``POST /v1/login`` (method ``id_token``): each is the same
401 ``invalid_credentials``, and no header of the token makes the login fetch keys elsewhere.

The login handler runs on its API Gateway event against moto and the local identity service
(real sockets); the verifier's own unit tests are in ``tests/unit/test_auth_tokens.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.settings import OidcIssuer
from tests.support.moto_server import SigninStack, signin_stack

ISSUER = "https://idp.example.test/security"
AUDIENCE = "security-client"
JWKS_URI = "https://idp.example.test/security/jwks.json"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OIDC = OidcIssuer(ISSUER, (AUDIENCE,), JWKS_URI)
FETCHED: list[str] = []


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    data.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return dict(data)


def issuer_jwks(url: str) -> dict[str, Any]:
    FETCHED.append(url)
    if url != JWKS_URI:  # an attacker's key set, were the login ever to ask for it
        return {"keys": [jwk(ATTACKER_KEY, "idp-1"), jwk(ATTACKER_KEY, "evil")]}
    return {"keys": [jwk(KEY, "idp-1")]}


@pytest.fixture(scope="module")
def stack() -> Iterator[SigninStack]:
    with signin_stack(issuers=(OIDC,), jwks_fetch=issuer_jwks) as running:
        yield running


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "victim",
        "token_use": "id",
        "iat": now,
        "exp": now + 300,
        "cognito:groups": ["acme"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(key: Any = KEY, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
    return jwt.encode(
        claims(**overrides), key, algorithm="RS256", headers={"kid": "idp-1", **(headers or {})}
    )


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def alg_none() -> str:
    return f"{b64({'alg': 'none', 'kid': 'idp-1', 'typ': 'JWT'})}.{b64(claims())}."


def hs256_with_the_public_key() -> str:
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64({"alg": "HS256", "kid": "idp-1", "typ": "JWT"})
    body = b64(claims())
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def embedded_jwk() -> str:
    """A token carrying its own (attacker's) public key in the header."""
    return signed(ATTACKER_KEY, headers={"jwk": jwk(ATTACKER_KEY, "idp-1")})


FORGERIES = {
    "alg none": alg_none,
    "HS256 signed with the issuer's public key": hs256_with_the_public_key,
    "wrong issuer": lambda: signed(iss="https://evil.example.test/security"),
    "issuer with a trailing slash": lambda: signed(iss=ISSUER + "/"),
    "wrong audience": lambda: signed(aud="someone-else"),
    "audience list without ours": lambda: signed(aud=["a", "b"]),
    "expired": lambda: signed(exp=int(time.time()) - 120, iat=int(time.time()) - 900),
    "not yet valid": lambda: signed(nbf=int(time.time()) + 3600),
    "signed by another key under the issuer's kid": lambda: signed(ATTACKER_KEY),
    "unknown kid": lambda: signed(ATTACKER_KEY, headers={"kid": "evil"}),
    "kid path traversal": lambda: signed(ATTACKER_KEY, headers={"kid": "../../../../dev/null"}),
    "kid with a URL": lambda: signed(
        ATTACKER_KEY, headers={"kid": "https://evil.example.test/jwks.json#idp-1"}
    ),
    "jku pointing elsewhere": lambda: signed(
        ATTACKER_KEY, headers={"jku": "https://evil.example.test/jwks.json"}
    ),
    "x5u pointing elsewhere": lambda: signed(
        ATTACKER_KEY, headers={"x5u": "https://evil.example.test/cert.pem"}
    ),
    "embedded jwk": embedded_jwk,
    "access token": lambda: signed(token_use="access"),
    "payload swapped after signing": lambda: ".".join(
        [signed().split(".")[0], b64(claims(sub="admin")), signed().split(".")[2]]
    ),
    "not a JWT": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_or_foreign_id_token_is_refused(stack: SigninStack, name: str):
    FETCHED.clear()
    status, body, _ = stack.post(
        {"method": "id_token", "id_token": FORGERIES[name]()}, source_ip=f"192.0.2.{len(name)}"
    )
    assert status == 401, (name, body)
    assert body["error"] == "invalid_credentials", body
    assert set(FETCHED) <= {JWKS_URI}, FETCHED  # no header sends the login elsewhere


def test_the_genuine_token_is_accepted_so_the_refusals_mean_something(stack: SigninStack):
    answer = stack.login({"method": "id_token", "id_token": signed()}, source_ip="192.0.2.250")
    assert answer["identityId"].startswith("us-east-1:")


def test_every_refusal_reads_the_same(stack: SigninStack):
    bodies = {
        json.dumps(stack.post({"method": "id_token", "id_token": make()}, "192.0.2.251")[1])
        for make in (alg_none, lambda: signed(aud="x"), lambda: signed(ATTACKER_KEY))
    }
    assert len(bodies) == 1, bodies

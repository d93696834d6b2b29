"""ID-token verification: what is accepted, and every forgery that must be refused."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth.errors import TokenExpired, TokenInvalid
from auth.settings import OidcIssuer
from auth.tokens import JwksCache, verify_id_token

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool"
CLIENT = "client-abc"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CONFIG = OidcIssuer(ISSUER, (CLIENT,), "https://keys.example/jwks.json")


def jwk(key: Any, kid: str) -> dict[str, Any]:
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    data.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return data


class FakeJwks:
    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": [jwk(KEY, "k1")]}
        self.calls: list[str] = []

    def __call__(self, url: str) -> dict[str, Any]:
        self.calls.append(url)
        return self.document


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "user-1",
        "token_use": "id",
        "iat": now,
        "exp": now + 600,
        "cognito:groups": ["acme"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Any = KEY, kid: str | None = "k1", alg: str = "RS256", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def verify(raw: str, cache: JwksCache | None = None) -> dict[str, Any]:
    return verify_id_token(raw, [CONFIG], cache or JwksCache(FakeJwks()))[1]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_valid_id_token_is_accepted():
    assert verify(token())["sub"] == "user-1"


def test_an_access_token_is_checked_against_client_id():
    config = OidcIssuer(
        ISSUER, (CLIENT,), "https://keys.example/jwks.json", token_use=("id", "access")
    )
    raw = token(aud=None, token_use="access", client_id=CLIENT)
    assert verify_id_token(raw, [config], JwksCache(FakeJwks()))[1]["sub"] == "user-1"
    with pytest.raises(TokenInvalid):
        verify_id_token(
            token(aud=None, token_use="access", client_id="other"), [config], JwksCache(FakeJwks())
        )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("wrong issuer", lambda: token(iss="https://evil.example/")),
        ("issuer with a trailing slash", lambda: token(iss=ISSUER + "/")),
        ("wrong audience", lambda: token(aud="someone-else")),
        ("no audience", lambda: token(aud=None)),
        ("access token where an ID token is required", lambda: token(token_use="access")),
        (
            "access token with a matching client_id where an ID token is required",
            lambda: token(token_use="access", client_id=CLIENT),
        ),
        ("no token_use", lambda: token(token_use=None)),
        ("no exp", lambda: token(exp=None)),
        ("signed by another key under our kid", lambda: token(key=OTHER_KEY)),
        ("unknown kid", lambda: token(kid="k2")),
        ("no kid", lambda: token(kid=None)),
        ("not a JWT", lambda: "not.a.jwt"),
        ("garbage", lambda: "xyz"),
    ],
)
def test_forged_or_foreign_tokens_are_refused(name, raw):
    with pytest.raises(TokenInvalid):
        verify(raw())


def test_an_expired_token_is_refused_as_expired():
    with pytest.raises(TokenExpired):
        verify(token(exp=int(time.time()) - 120, iat=int(time.time()) - 900))


def test_alg_none_is_refused():
    unsigned = f"{b64({'alg': 'none', 'kid': 'k1', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(TokenInvalid):
        verify(unsigned)


def test_hs256_signed_with_the_rsa_public_key_is_refused():
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    body = b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
    with pytest.raises(TokenInvalid):
        verify(forged)


def test_a_tampered_signature_or_payload_is_refused():
    header, body, signature = token().split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    with pytest.raises(TokenInvalid):
        verify(f"{header}.{body}.{flipped}")
    with pytest.raises(TokenInvalid):
        verify(f"{header}.{b64(claims(sub='admin'))}.{signature}")


def test_a_key_of_the_wrong_type_for_alg_is_refused():
    config = OidcIssuer(
        ISSUER, (CLIENT,), "https://keys.example/jwks.json", algorithms=("RS256", "ES256")
    )
    ec_key = ec.generate_private_key(ec.SECP256R1())
    raw = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "k1"})  # RSA kid
    with pytest.raises(TokenInvalid):
        verify_id_token(raw, [config], JwksCache(FakeJwks()))


def test_jwks_is_fetched_once_and_cached():
    fetch = FakeJwks()
    cache = JwksCache(fetch)
    for _ in range(20):
        verify(token(), cache)
    assert len(fetch.calls) == 1


def test_unknown_kid_refetches_at_most_once_per_interval_then_finds_a_rotated_key():
    now = [1000.0]
    fetch = FakeJwks()
    cache = JwksCache(fetch, min_refresh_s=60, clock=lambda: now[0])
    verify(token(), cache)
    for _ in range(5):
        with pytest.raises(TokenInvalid):
            verify(token(key=OTHER_KEY, kid="k2"), cache)
    assert len(fetch.calls) == 1  # forged kids cannot make us hammer the issuer
    fetch.document = {"keys": [jwk(KEY, "k1"), jwk(OTHER_KEY, "k2")]}  # the issuer rotates
    now[0] += 61
    assert verify(token(key=OTHER_KEY, kid="k2"), cache)["sub"] == "user-1"
    assert len(fetch.calls) == 2


def test_cached_keys_expire_after_the_ttl():
    now = [0.0]
    fetch = FakeJwks()
    cache = JwksCache(fetch, ttl_s=3600, clock=lambda: now[0])
    verify(token(), cache)
    now[0] = 3601
    verify(token(), cache)
    assert len(fetch.calls) == 2

"""Verifying ID tokens from Cognito user pools and OIDC issuers (``id_token`` logins).

A token is accepted only if all of these hold, checked in this order:

1. it parses as a JWS with a ``kid`` header;
2. its (unverified) ``iss`` names a configured issuer — nothing else is trusted;
3. its ``alg`` is in that issuer's allow-list (asymmetric algorithms only, so ``none`` and
   HS256-signed-with-the-public-key are refused before any key is used);
4. the ``kid`` is in the issuer's JWKS (cached; an unknown ``kid`` triggers at most one
   refetch per ``min_refresh_s``) and the key's type fits ``alg``;
5. the signature verifies, ``exp`` has not passed, ``iss`` matches exactly;
6. ``aud`` (ID tokens) or ``client_id`` (access tokens) is one of the issuer's audiences;
7. ``token_use`` is one the issuer accepts.

Every failure is a :class:`~auth.errors.TokenInvalid` (or ``TokenExpired``), which the HTTP
layer answers with the same generic 401.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jwt
from jwt.exceptions import ExpiredSignatureError, PyJWTError

from auth.errors import TokenExpired, TokenInvalid, UpstreamError
from auth.settings import OidcIssuer

__all__ = ["JwksCache", "fetch_json", "verify_id_token"]

MAX_JWKS_BYTES = 256 * 1024


def fetch_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET ``url`` and parse the JSON body (the default JWKS fetcher)."""
    if not url.startswith(("https://", "http://")):
        raise UpstreamError(f"JWKS URL {url!r} is not http(s)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read(MAX_JWKS_BYTES))
    except (OSError, ValueError) as exc:
        raise UpstreamError(f"The issuer's keys could not be fetched from {url}: {exc}") from exc


class JwksCache:
    """Signing keys per JWKS URL, fetched once and kept for ``ttl_s``.

    ``fetch`` and ``clock`` are injectable for tests. Thread-safe.
    """

    def __init__(
        self,
        fetch: Callable[[str], Any] = fetch_json,
        *,
        ttl_s: float = 3600.0,
        min_refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, dict[str, Mapping[str, Any]]]] = {}
        self.fetches = 0

    def key(self, jwks_uri: str, kid: str) -> Mapping[str, Any]:
        """The JWK with ``kid`` from ``jwks_uri``; :class:`TokenInvalid` if there is none."""
        now = self._clock()
        with self._lock:
            cached = self._keys.get(jwks_uri)
            if cached is not None:
                fetched_at, keys = cached
                if kid in keys and now - fetched_at < self._ttl_s:
                    return keys[kid]
                if kid not in keys and now - fetched_at < self._min_refresh_s:
                    raise TokenInvalid(f"unknown kid {kid!r}")
            keys = self._load(jwks_uri)
            self._keys[jwks_uri] = (now, keys)
        if kid not in keys:
            raise TokenInvalid(f"unknown kid {kid!r}")
        return keys[kid]

    def _load(self, jwks_uri: str) -> dict[str, Mapping[str, Any]]:
        self.fetches += 1
        document = self._fetch(jwks_uri)
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise UpstreamError(f"{jwks_uri} is not a JWKS (no 'keys' list)")
        return {
            entry["kid"]: entry
            for entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("kid"), str)
        }

    def clear(self) -> None:
        """Forget every cached key."""
        with self._lock:
            self._keys.clear()


def verify_id_token(
    token: str,
    issuers: Sequence[OidcIssuer],
    jwks: JwksCache,
    *,
    leeway_s: float = 30.0,
) -> tuple[OidcIssuer, dict[str, Any]]:
    """The issuer and verified claims of ``token``, or :class:`TokenInvalid`/``TokenExpired``."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except (PyJWTError, ValueError) as exc:
        raise TokenInvalid(f"not a JWT: {exc}") from None
    issuer_name = unverified.get("iss")
    issuer = next((i for i in issuers if i.issuer == issuer_name), None)
    if issuer is None:
        raise TokenInvalid(f"untrusted issuer {issuer_name!r}")
    algorithm = header.get("alg")
    if algorithm not in issuer.algorithms:
        raise TokenInvalid(f"algorithm {algorithm!r} not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenInvalid("no kid in the header")
    jwk = jwks.key(issuer.jwks_uri, kid)
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=algorithm)
    except (PyJWTError, ValueError) as exc:
        raise TokenInvalid(f"key {kid!r} does not fit {algorithm}: {exc}") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            issuer=issuer.issuer,
            leeway=leeway_s,
            options={"require": ["exp", "iss", "sub"], "verify_aud": False},
        )
    except ExpiredSignatureError:
        raise TokenExpired("token expired") from None
    except (PyJWTError, ValueError) as exc:
        raise TokenInvalid(f"verification failed: {exc}") from None
    token_use = claims.get("token_use")
    if issuer.token_use and token_use not in issuer.token_use:
        raise TokenInvalid(f"token_use {token_use!r} not accepted")
    if token_use == "access":
        audiences = [claims.get("client_id")]
    else:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a in issuer.audiences for a in audiences):
        raise TokenInvalid("audience not accepted")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenInvalid("no subject")
    return issuer, claims

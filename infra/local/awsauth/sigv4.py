"""Verify AWS Signature Version 4 the way AWS does, for the local IoT and API gateways.

Two forms are accepted, as AWS accepts them:

- **presigned URLs** (:func:`verify_presigned`): the ``X-Amz-*`` parameters are in the query
  string; this is how every MQTT-over-WebSocket client signs its ``GET /mqtt`` upgrade;
- **the Authorization header** (:func:`verify_authorization_header`): how boto3 signs
  ``iot-data`` Publish and how the clients sign ``execute-api`` calls.

What real clients do, and therefore what is accepted (measured with awscrt 0.36.1,
botocore 1.44 and AWSIoTPythonSDK 1.6.2; see tests/unit/test_sigv4.py):

- awscrt/awsiotsdk (service ``iotdevicegateway``) sign ``connection`` and ``host``, hash the
  empty payload (``e3b0…b855``), send no ``X-Amz-Expires``, and add ``X-Amz-Security-Token``
  to the query without signing it (``omit_session_token=True``: the parameter comes before
  ``X-Amz-Signature`` in the URL but is not part of the canonical query). AWSIoTPythonSDK
  (service ``iotdata``, ``X-Amz-Expires=86400``, only ``host`` signed) and the browser client
  of aws-crt-nodejs append the token after the signature, also unsigned.
- botocore's ``SigV4QueryAuth`` puts the token *inside* the signed query.
  A presigned URL therefore verifies when its signature matches the canonical query with the
  token or the canonical query without it.
- No IoT client signs a presigned URL with ``UNSIGNED-PAYLOAD``: the payload hash is the
  hash of the empty string unless the request declares another one (an
  ``X-Amz-Content-Sha256`` signed header or query parameter, as S3 presigners do).
- awscrt and botocore build the canonical URI the same way for non-S3 services: dot segments
  and empty segments are removed from the path as received, then every byte except the
  unreserved characters and ``/`` is percent-encoded once more (``/topics/a%2Fb`` is signed
  as ``/topics/a%252Fb``).
- Query parameters are percent-decoded (``+`` stays a plus sign) and re-encoded per SigV4,
  so a client that encodes differently from the canonical form still verifies.

The checks run in the order AWS reports them, so that an error never tells more than AWS
would: the form of the request (``malformed``), the credential scope (``wrong_region``,
``wrong_service``), the clock (``request_expired``), the access key (``unknown_key``; AWS
also says when a key does not exist), the session token (``invalid_token``), the signature
(``signature_mismatch``), and only then the expiry of the credential
(``expired_credentials``): only a caller who holds the secret key learns that it has expired.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from infra.local.awsauth.credential_store import StoredCredential

__all__ = [
    "SignatureError",
    "VerifiedRequest",
    "verify_authorization_header",
    "verify_presigned",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_EXPIRES_S = 604800

_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_EXPIRES = re.compile(r"[0-9]{1,7}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_PAYLOAD_HASH = re.compile(r"[0-9a-fA-F]{64}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_SPACES = re.compile(r"[ \t]+")
_UNRESERVED = "-_.~"

Lookup = Callable[[str], StoredCredential | None]


class SignatureError(Exception):
    """A request whose SigV4 signature cannot be accepted.

    ``code`` is one of ``malformed``, ``unknown_key``, ``invalid_token``,
    ``signature_mismatch``, ``expired_credentials``, ``request_expired``, ``wrong_region``,
    ``wrong_service``; ``message`` is a sentence a person can act on. Neither ever contains
    the signature the server expected. For ``signature_mismatch``, ``canonical_request`` and
    ``string_to_sign`` hold what the server signed (as AWS shows them) for debugging.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        canonical_request: str | None = None,
        string_to_sign: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signature matched: who signed it, for what, and when."""

    credential: StoredCredential
    service: str
    region: str
    signed_at: float
    """Epoch seconds of the request's ``X-Amz-Date``."""


@dataclass(frozen=True)
class _Auth:
    """The signing parameters a request carries, in either form."""

    access_key_id: str
    date: str
    region: str
    service: str
    amz_date: str
    signed_at: float
    signed_headers: tuple[str, ...]
    signature: str
    token: str | None


def verify_presigned(
    method: str,
    path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    *,
    lookup: Lookup,
    region: str,
    services: Collection[str],
    now: float | None = None,
    max_skew_s: float = 300.0,
    s3_rules: bool = False,
) -> VerifiedRequest:
    """Verify a request signed in its query string (a presigned URL).

    ``path`` and ``raw_query`` are as received (still percent-encoded); ``headers`` is the raw
    header list. ``lookup`` maps an access key id to its credential. The credential scope
    must name ``region`` and one of ``services``. With ``X-Amz-Expires`` the request is valid
    from ``X-Amz-Date - max_skew_s`` until ``X-Amz-Date + X-Amz-Expires``; without it,
    within ``max_skew_s`` of ``now``. ``s3_rules``: S3's variant of SigV4, where the path is
    signed exactly as received (every other service normalizes it and encodes it once more)
    and a presigned URL's payload is ``UNSIGNED-PAYLOAD``. Returns the verified request or
    raises :class:`SignatureError`.
    """
    try:
        moment = time.time() if now is None else now
        params = _parse_query(raw_query)
        header_map = _header_map(headers)
        auth = _presigned_auth(params, header_map)
        _check_scope(auth, region, services)
        expires = _single(params, "X-Amz-Expires")
        _check_presigned_time(auth, expires, moment, max_skew_s)
        credential = _lookup(lookup, auth.access_key_id)
        _check_token(credential, auth.token)
        canonical_headers = _canonical_headers(auth.signed_headers, header_map)
        payload_hash = _presigned_payload_hash(auth, params, header_map, s3_rules)
        canonical_uri = (path or "/") if s3_rules else _canonical_uri(path)
        queries = [_canonical_query(params, ("X-Amz-Signature",))]
        if _single(params, "X-Amz-Security-Token") is not None:
            queries.append(_canonical_query(params, ("X-Amz-Signature", "X-Amz-Security-Token")))
        requests = [
            _canonical_request(method, canonical_uri, q, canonical_headers, auth, payload_hash)
            for q in queries
        ]
        _check_signature(credential, auth, requests)
        _check_expiry(credential, moment)
        return VerifiedRequest(credential, auth.service, auth.region, auth.signed_at)
    except UnicodeError:
        raise SignatureError(
            "malformed", "The request contains text that cannot be encoded as UTF-8."
        ) from None


def verify_authorization_header(
    method: str,
    path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    lookup: Lookup,
    region: str,
    services: Collection[str],
    now: float | None = None,
    max_skew_s: float = 300.0,
    s3_rules: bool = False,
) -> VerifiedRequest:
    """Verify a request signed with an ``Authorization: AWS4-HMAC-SHA256 …`` header.

    The date comes from ``X-Amz-Date`` (or ``Date``) and must be within ``max_skew_s`` of
    ``now``. The payload hash is the ``x-amz-content-sha256`` header when present (a hex
    hash must then equal the SHA-256 of ``body``), else the SHA-256 of ``body``. The session
    token, if any, is the ``X-Amz-Security-Token`` header. ``s3_rules`` as for
    :func:`verify_presigned`. Returns the verified request or raises :class:`SignatureError`.
    """
    try:
        moment = time.time() if now is None else now
        params = _parse_query(raw_query)
        header_map = _header_map(headers)
        auth = _header_auth(header_map)
        _check_scope(auth, region, services)
        if abs(moment - auth.signed_at) > max_skew_s:
            raise _skew_error(auth, moment, max_skew_s)
        credential = _lookup(lookup, auth.access_key_id)
        _check_token(credential, auth.token)
        canonical_headers = _canonical_headers(auth.signed_headers, header_map)
        declared = _single_header(header_map, "x-amz-content-sha256")
        payload_hash = declared if declared is not None else hashlib.sha256(body).hexdigest()
        request = _canonical_request(
            method,
            (path or "/") if s3_rules else _canonical_uri(path),
            _canonical_query(params, ()),
            canonical_headers,
            auth,
            payload_hash,
        )
        _check_signature(credential, auth, [request])
        if (
            declared is not None
            and _PAYLOAD_HASH.fullmatch(declared)
            and not hmac.compare_digest(declared.lower(), hashlib.sha256(body).hexdigest())
        ):
            raise SignatureError(
                "signature_mismatch",
                "The body does not match the x-amz-content-sha256 header: "
                "sign the body that is sent.",
            )
        _check_expiry(credential, moment)
        return VerifiedRequest(credential, auth.service, auth.region, auth.signed_at)
    except UnicodeError:
        raise SignatureError(
            "malformed", "The request contains text that cannot be encoded as UTF-8."
        ) from None


# --- parsing ---------------------------------------------------------------------------


def _parse_query(raw_query: str) -> list[tuple[bytes, bytes]]:
    """The query's parameters, percent-decoded to bytes (``+`` stays a plus sign)."""
    pairs: list[tuple[bytes, bytes]] = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def _single(params: list[tuple[bytes, bytes]], name: str) -> str | None:
    """The one value of query parameter ``name``; repeated → malformed."""
    wanted = name.encode()
    values = [value for key, value in params if key == wanted]
    if not values:
        return None
    if len(values) > 1:
        raise SignatureError("malformed", f"The query string repeats {name}: send it once.")
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("malformed", f"{name} is not valid UTF-8.") from None


def _header_map(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.strip().lower(), []).append(value)
    return by_name


def _single_header(header_map: dict[str, list[str]], name: str) -> str | None:
    values = header_map.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise SignatureError("malformed", f"The request repeats the {name} header: send it once.")
    return values[0].strip()


def _required(value: str | None, name: str, where: str) -> str:
    if value is None or value == "":
        raise SignatureError("malformed", f"The request has no {name} {where}: sign it with SigV4.")
    return value


def _presigned_auth(params: list[tuple[bytes, bytes]], header_map: dict[str, list[str]]) -> _Auth:
    where = "query parameter"
    algorithm = _required(_single(params, "X-Amz-Algorithm"), "X-Amz-Algorithm", where)
    credential = _required(_single(params, "X-Amz-Credential"), "X-Amz-Credential", where)
    amz_date = _required(_single(params, "X-Amz-Date"), "X-Amz-Date", where)
    signed = _required(_single(params, "X-Amz-SignedHeaders"), "X-Amz-SignedHeaders", where)
    signature = _required(_single(params, "X-Amz-Signature"), "X-Amz-Signature", where)
    token = _single(params, "X-Amz-Security-Token")
    if token is None:
        token = _single_header(header_map, "x-amz-security-token")
    return _build_auth(algorithm, credential, amz_date, signed, signature, token)


def _header_auth(header_map: dict[str, list[str]]) -> _Auth:
    header = _required(_single_header(header_map, "authorization"), "Authorization", "header")
    algorithm, _, rest = header.partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name in fields:
            raise SignatureError(
                "malformed",
                "The Authorization header is not of the form 'AWS4-HMAC-SHA256 "
                "Credential=…, SignedHeaders=…, Signature=…'.",
            )
        fields[name] = value.strip()
    where = "in the Authorization header"
    credential = _required(fields.get("Credential"), "Credential", where)
    signed = _required(fields.get("SignedHeaders"), "SignedHeaders", where)
    signature = _required(fields.get("Signature"), "Signature", where)
    amz_date = _single_header(header_map, "x-amz-date")
    if amz_date is None:
        date_header = _single_header(header_map, "date")
        if date_header is None:
            raise SignatureError(
                "malformed", "The request has neither an X-Amz-Date nor a Date header."
            )
        amz_date = _http_date_to_amz(date_header)
    token = _single_header(header_map, "x-amz-security-token")
    return _build_auth(algorithm.strip(), credential, amz_date, signed, signature, token)


def _http_date_to_amz(value: str) -> str:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise SignatureError(
            "malformed", "The Date header is not an HTTP date; send X-Amz-Date instead."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _build_auth(
    algorithm: str,
    credential: str,
    amz_date: str,
    signed_headers: str,
    signature: str,
    token: str | None,
) -> _Auth:
    if algorithm != ALGORITHM:
        raise SignatureError(
            "malformed", f"The signing algorithm must be {ALGORITHM}, not {algorithm[:40]!r}."
        )
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts[:4]):
        raise SignatureError(
            "malformed",
            "The credential must be <access key>/<yyyymmdd>/<region>/<service>/aws4_request.",
        )
    access_key_id, date, region, service, _ = parts
    if not _AMZ_DATE.fullmatch(amz_date):
        raise SignatureError(
            "malformed", "X-Amz-Date must be a UTC timestamp of the form yyyymmddTHHMMSSZ."
        )
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise SignatureError(
            "malformed", f"X-Amz-Date {amz_date} is not a valid date and time."
        ) from None
    if date != amz_date[:8]:
        raise SignatureError(
            "malformed",
            f"The credential scope date {date[:16]!r} must be the date of X-Amz-Date "
            f"({amz_date[:8]}).",
        )
    names = tuple(signed_headers.split(";"))
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        raise SignatureError(
            "malformed", "SignedHeaders must be lower-case header names separated by ';'."
        )
    if "host" not in names:
        raise SignatureError("malformed", "The host header must be among the signed headers.")
    if not _SIGNATURE.fullmatch(signature):
        raise SignatureError("malformed", "The signature must be 64 lower-case hexadecimal digits.")
    return _Auth(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        amz_date=amz_date,
        signed_at=signed_at,
        signed_headers=tuple(sorted(set(names))),
        signature=signature,
        token=token,
    )


# --- checks ----------------------------------------------------------------------------


def _check_scope(auth: _Auth, region: str, services: Collection[str]) -> None:
    if auth.region != region:
        raise SignatureError(
            "wrong_region",
            f"The credential is scoped to region {auth.region[:40]!r} but this endpoint is in "
            f"{region!r}: sign for {region!r}.",
        )
    if auth.service not in services:
        expected = ", ".join(repr(s) for s in sorted(services))
        raise SignatureError(
            "wrong_service",
            f"The credential is scoped to service {auth.service[:40]!r} but this endpoint "
            f"accepts {expected}: sign for the right service.",
        )


def _check_presigned_time(
    auth: _Auth, expires: str | None, moment: float, max_skew_s: float
) -> None:
    if expires is None:
        if abs(moment - auth.signed_at) > max_skew_s:
            raise _skew_error(auth, moment, max_skew_s)
        return
    if not _EXPIRES.fullmatch(expires) or not 1 <= int(expires) <= MAX_EXPIRES_S:
        raise SignatureError(
            "malformed",
            f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES_S}.",
        )
    if moment < auth.signed_at - max_skew_s:
        raise SignatureError(
            "request_expired",
            f"The request is not yet valid: X-Amz-Date {auth.amz_date} is in the future; "
            "check the client's clock.",
        )
    if moment > auth.signed_at + int(expires):
        raise SignatureError(
            "request_expired",
            f"The request expired: signed at {auth.amz_date}, valid for {int(expires)} s; "
            "sign a new one.",
        )


def _skew_error(auth: _Auth, moment: float, max_skew_s: float) -> SignatureError:
    now_text = datetime.fromtimestamp(moment, UTC).strftime("%Y%m%dT%H%M%SZ")
    return SignatureError(
        "request_expired",
        f"Signature expired: X-Amz-Date {auth.amz_date} is more than {int(max_skew_s)} s away "
        f"from the server time {now_text}; check the client's clock and sign again.",
    )


def _lookup(lookup: Lookup, access_key_id: str) -> StoredCredential:
    credential = lookup(access_key_id)
    if credential is None:
        raise SignatureError(
            "unknown_key",
            f"The access key id {access_key_id[:40]!r} is not known here: "
            "use credentials issued by this stack.",
        )
    return credential


def _check_token(credential: StoredCredential, presented: str | None) -> None:
    expected = credential.session_token
    if expected is None:
        if presented:
            raise SignatureError(
                "invalid_token",
                "The request carries a session token but the access key has none: "
                "send the token only with temporary credentials.",
            )
        return
    if not presented:
        raise SignatureError(
            "invalid_token",
            "The access key is temporary and the request has no X-Amz-Security-Token: "
            "send the session token that came with it.",
        )
    if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        raise SignatureError(
            "invalid_token",
            "The session token is not the one issued with this access key: "
            "send the matching token.",
        )


def _check_signature(credential: StoredCredential, auth: _Auth, requests: list[str]) -> None:
    key = _signing_key(credential.secret_access_key, auth.date, auth.region, auth.service)
    scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
    first_sts = ""
    for i, canonical in enumerate(requests):
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        string_to_sign = f"{ALGORITHM}\n{auth.amz_date}\n{scope}\n{digest}"
        if i == 0:
            first_sts = string_to_sign
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, auth.signature):
            return
    raise SignatureError(
        "signature_mismatch",
        "The request signature does not match the one calculated with the secret key of "
        f"{auth.access_key_id!r}: check the secret key and that the request is sent as signed.",
        canonical_request=requests[0],
        string_to_sign=first_sts,
    )


def _check_expiry(credential: StoredCredential, moment: float) -> None:
    if credential.is_expired(moment):
        raise SignatureError(
            "expired_credentials",
            "The security token included in the request is expired: get new credentials.",
        )


# --- canonical request -----------------------------------------------------------------


def _canonical_request(
    method: str,
    canonical_uri: str,
    canonical_query: str,
    canonical_headers: str,
    auth: _Auth,
    payload_hash: str,
) -> str:
    return "\n".join(
        (
            method.upper(),
            canonical_uri,
            canonical_query,
            canonical_headers,
            ";".join(auth.signed_headers),
            payload_hash,
        )
    )


def _canonical_uri(path: str) -> str:
    """Dot and empty segments removed, then each segment URI-encoded (again)."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and kept else ""
    return quote(lead + "/".join(kept) + trail, safe="/~")


def _canonical_query(params: list[tuple[bytes, bytes]], excluded: tuple[str, ...]) -> str:
    skip = {name.encode() for name in excluded}
    encoded = sorted(
        (quote(name, safe=_UNRESERVED), quote(value, safe=_UNRESERVED))
        for name, value in params
        if name not in skip
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _canonical_headers(signed: tuple[str, ...], header_map: dict[str, list[str]]) -> str:
    lines = []
    for name in signed:
        values = header_map.get(name, [])
        joined = ",".join(_SPACES.sub(" ", value).strip(" \t") for value in values)
        lines.append(f"{name}:{joined}\n")
    return "".join(lines)


def _presigned_payload_hash(
    auth: _Auth,
    params: list[tuple[bytes, bytes]],
    header_map: dict[str, list[str]],
    s3_rules: bool = False,
) -> str:
    if "x-amz-content-sha256" in auth.signed_headers:
        declared = _single_header(header_map, "x-amz-content-sha256")
        if declared:
            return declared
    from_query = _single(params, "X-Amz-Content-Sha256")
    if from_query:
        return from_query
    return UNSIGNED_PAYLOAD if s3_rules else EMPTY_SHA256


@lru_cache(maxsize=512)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode("utf-8"), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key

"""CORS on the local DynamoDB endpoint, so that a web page can call DynamoDB as on AWS.

AWS's DynamoDB endpoint answers browsers from any origin: a page signs its requests with its
identity's temporary credentials (SigV4) and sends them from its own origin; the identity's
IAM policy, not the origin, decides what it may do. A browser first sends an unsigned
preflight (``OPTIONS`` with ``Origin``, ``Access-Control-Request-Method`` and
``Access-Control-Request-Headers``: DynamoDB's JSON protocol needs ``X-Amz-Target``,
``X-Amz-Date``, ``Authorization``... which are not CORS-safelisted), then the signed
``POST``, whose answer it lets the page read only if it names the origin.

Here (pure functions, wired in :class:`~infra.local.motohost.auth.MotoAuth`):

- :func:`preflight`: a preflight to ``/`` that asks for ``X-Amz-Target`` is answered
  ``200`` without a signature: ``Access-Control-Allow-Origin: *``, the methods, the
  requested headers echoed, ``Access-Control-Max-Age``. The moto host serves every service on
  one port, and a preflight does not say which JSON-protocol service it is for (it carries no
  ``X-Amz-Target`` value), so this answers the preflights of the other JSON-protocol services
  here too; on AWS each has a host of its own.
- :func:`response_headers`: a DynamoDB answer (``X-Amz-Target: DynamoDB_20120810.*``) to a
  request that carries ``Origin`` names ``*`` and exposes the headers the SDKs read
  (``x-amzn-RequestId``, ``x-amzn-ErrorType``, ``x-amz-crc32``...), refusals included, so the
  page can read why it was refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

__all__ = [
    "ALLOWED_METHODS",
    "EXPOSED_HEADERS",
    "MAX_AGE_S",
    "is_dynamodb",
    "preflight",
    "response_headers",
]

ALLOWED_METHODS = "POST, OPTIONS"
EXPOSED_HEADERS = "x-amzn-RequestId, x-amzn-ErrorType, x-amzn-ErrorMessage, x-amz-crc32, Date"
MAX_AGE_S = 172800
_TARGET_PREFIX = "DynamoDB_20120810."

Response = tuple[int, list[tuple[str, str]], bytes]


def _header(environ: Mapping[str, object], name: str) -> str | None:
    value = environ.get("HTTP_" + name.upper().replace("-", "_"))
    return None if value is None else str(value)


def is_dynamodb(environ: Mapping[str, object]) -> bool:
    """True for a DynamoDB JSON call (its ``X-Amz-Target`` names DynamoDB's API)."""
    return (_header(environ, "X-Amz-Target") or "").startswith(_TARGET_PREFIX)


def preflight(environ: Mapping[str, object]) -> Response | None:
    """The answer to a CORS preflight for a JSON-protocol call, or None if it is none."""
    if str(environ.get("REQUEST_METHOD", "")).upper() != "OPTIONS":
        return None
    origin = _header(environ, "Origin")
    method = _header(environ, "Access-Control-Request-Method")
    requested = _header(environ, "Access-Control-Request-Headers") or ""
    if origin is None or method is None or (environ.get("PATH_INFO") or "/") != "/":
        return None
    names = {part.strip().lower() for part in requested.split(",") if part.strip()}
    if "x-amz-target" not in names:
        return None
    headers = [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", ALLOWED_METHODS),
        ("Access-Control-Allow-Headers", requested),
        ("Access-Control-Max-Age", str(MAX_AGE_S)),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    return 200, headers, b""


def response_headers(environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """The CORS headers a DynamoDB answer to this request carries ([] when it needs none)."""
    if _header(environ, "Origin") is None or not is_dynamodb(environ):
        return []
    return [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
    ]

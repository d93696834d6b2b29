"""The HTTP edge of the login: API Gateway proxy event in, proxy response out.

Accepts the REST API (payload 1.0) and HTTP API (payload 2.0) event shapes. Every error
becomes ``{"error", "message"}`` with its status; 429 carries ``Retry-After``; anything
unexpected is logged and answered 500 without details.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from auth.errors import AuthError, BadRequest, TooManyAttempts
from backend.cors import cors_headers

__all__ = ["Authenticator", "handle_login_event", "response"]

log = logging.getLogger("tidings.auth")

HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class Authenticator(Protocol):
    """What the edge needs from the login service."""

    def login(self, body: bytes | str | None, source_ip: str) -> dict[str, Any]:
        """Handle one login body from ``source_ip``."""
        ...


def response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway proxy response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {**HEADERS, **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _source_ip(event: Mapping[str, Any]) -> str:
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    http = context.get("http") or {}
    ip = identity.get("sourceIp") or http.get("sourceIp")
    return str(ip) if ip else "unknown"


def _body(event: Mapping[str, Any]) -> bytes | str | None:
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return body if body is None or isinstance(body, str) else str(body)
    try:
        return base64.b64decode(str(body), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid_body", "The body is marked base64 but is not.") from None


def handle_login_event(
    event: Mapping[str, Any], service: Authenticator, *, allowed_origin: str = ""
) -> dict[str, Any]:
    """Answer one ``POST /v1/login`` proxy event with ``service``.

    Every answer, errors included, names ``allowed_origin`` (one origin or ``*``) in its CORS
    headers, so the page that signs in can read it; "": no CORS headers.
    """
    cors = cors_headers(allowed_origin)
    try:
        return response(200, service.login(_body(event), _source_ip(event)), cors)
    except TooManyAttempts as exc:
        return response(
            exc.status,
            {"error": exc.code, "message": exc.message},
            {**cors, "Retry-After": str(exc.retry_after_s)},
        )
    except AuthError as exc:
        if exc.status >= 500:
            log.error("login failed: %s", exc.message)
        return response(exc.status, {"error": exc.code, "message": exc.message}, cors)
    except Exception:
        log.exception("login failed unexpectedly")
        return response(
            500,
            {
                "error": "internal_error",
                "message": "Sign-in failed on the server. Try again later.",
            },
            cors,
        )

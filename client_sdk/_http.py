"""Small JSON-over-HTTPS helper built on the standard library (no boto3, no requests)."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HttpResponse", "request_json", "ssl_context"]


@dataclass(frozen=True)
class HttpResponse:
    """Status, headers (lower-case names) and the decoded JSON body (or None)."""

    status: int
    headers: Mapping[str, str]
    body: Any


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system trust store, or only ``ca_file`` when given (the local stack's CA)."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def request_json(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> HttpResponse:
    """Send one request; raises ``OSError`` (including timeouts) when nothing comes back."""
    parts = urlsplit(url)
    port = parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        raw = response.read()
        names = {k.lower(): v for k, v in response.getheaders()}
    except http.client.HTTPException as exc:
        raise OSError(f"{method} {url}: {exc}") from exc
    finally:
        connection.close()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = {"message": raw[:200].decode("utf-8", "replace")}
    return HttpResponse(response.status, names, decoded)

"""Small JSON-over-HTTPS helper built on the standard library (no boto3, no requests).

Requests made with an :class:`InFlight` can be ended at once from another thread
(:meth:`InFlight.abort`): the client's ``close()`` does not wait out a 20 s long-poll.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HttpResponse", "InFlight", "request_json", "ssl_context"]


@dataclass(frozen=True)
class HttpResponse:
    """Status, headers (lower-case names) and the decoded JSON body (or None)."""

    status: int
    headers: Mapping[str, str]
    body: Any


class InFlight:
    """The connections of requests under way; :meth:`abort` ends them and refuses new ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._aborted = False

    def add(self, connection: http.client.HTTPConnection) -> None:
        """Track ``connection``; raises ``OSError`` once aborted."""
        with self._lock:
            if self._aborted:
                raise OSError("the client is closed")
            self._open.add(connection)

    def check(self, connection: http.client.HTTPConnection) -> None:
        """Raises ``OSError`` if :meth:`abort` ran while ``connection`` was connecting."""
        with self._lock:
            if self._aborted:
                _shut(connection)
                raise OSError("the client is closed")

    def discard(self, connection: http.client.HTTPConnection) -> None:
        """Stop tracking ``connection`` (its request is over)."""
        with self._lock:
            self._open.discard(connection)

    def abort(self) -> None:
        """End every request under way (their callers get ``OSError``); refuse new ones."""
        with self._lock:
            self._aborted = True
            for connection in self._open:
                _shut(connection)


def _shut(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        # the plain socket's shutdown: wakes a thread blocked reading, TLS or not
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


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
    in_flight: InFlight | None = None,
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
    if in_flight is not None:
        in_flight.add(connection)
    try:
        connection.connect()
        if in_flight is not None:
            in_flight.check(connection)
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        raw = response.read()
        names = {k.lower(): v for k, v in response.getheaders()}
    except http.client.HTTPException as exc:
        raise OSError(f"{method} {url}: {exc}") from exc
    finally:
        if in_flight is not None:
            in_flight.discard(connection)
        connection.close()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = {"message": raw[:200].decode("utf-8", "replace")}
    return HttpResponse(response.status, names, decoded)

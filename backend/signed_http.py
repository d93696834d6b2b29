"""What the publisher's hand-made AWS calls share: kept-alive connections and TLS settings.

:class:`~backend.iot_publish.SignedPublishClient` and
:class:`~backend.dynamodb_transact.TransactClient` send one SigV4-signed request each
(botocore's ``SigV4Auth``) without botocore's per-call pipeline; both keep their connections
here.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from urllib.parse import urlsplit

__all__ = ["CONNECTION_ERRORS", "RETRYABLE_STATUS", "Connections", "tls_context"]

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
CONNECTION_ERRORS = (OSError, http.client.HTTPException)


def tls_context(endpoint_url: str, verify: str | bool) -> ssl.SSLContext | None:
    """The TLS settings for an ``https://`` endpoint (``verify``: a CA bundle path, or a bool)."""
    if not endpoint_url.startswith("https://"):
        return None
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    from botocore.httpsession import get_cert_path

    cafile = verify if isinstance(verify, str) else get_cert_path(True)
    return ssl.create_default_context(cafile=cafile)


class Connections:
    """Idle keep-alive connections to one endpoint (at most ``size`` kept)."""

    def __init__(
        self, endpoint_url: str, context: ssl.SSLContext | None, size: int, timeout_s: float
    ):
        """``context`` is None for plain HTTP."""
        parts = urlsplit(endpoint_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port
        self.context = context
        self.size = size
        self.timeout_s = timeout_s
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def take(self) -> http.client.HTTPConnection:
        """An idle connection that is still open, or a new one."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                break
            if not _dropped(connection):
                return connection
            connection.close()
        if self.context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        """Keep a connection whose answer was read in full for the next request."""
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(connection)
                return
        connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read was closed by the server (or is unusable)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)

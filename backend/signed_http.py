"""What hand-made AWS calls share: signing and kept-alive connections, botocore-shaped errors.

:class:`~backend.iot_publish.SignedPublishClient` and
:class:`~backend.dynamodb_transact.TransactClient` send one SigV4-signed request each
(botocore's ``SigV4Auth``) without botocore's per-call pipeline; both keep their connections
here.
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

__all__ = [
    "CONNECTION_ERRORS",
    "RETRYABLE_STATUS",
    "Connections",
    "SignedPoster",
    "client_error",
    "tls_context",
]

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


class SignedPoster:
    """SigV4-signed POSTs to one endpoint, on kept-alive connections (no retries here)."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        signing_name: str,
        credentials: Any,
        *,
        verify: str | bool = True,
        pool_size: int = 10,
        timeout_s: float = 10.0,
    ) -> None:
        """``credentials`` is a botocore credentials object (``get_frozen_credentials()``)."""
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region
        self.signing_name = signing_name
        self.credentials = credentials
        self._connections = Connections(
            self.endpoint_url, tls_context(self.endpoint_url, verify), pool_size, timeout_s
        )

    @classmethod
    def for_client(cls, client: Any, credentials: Any, **options: Any) -> SignedPoster:
        """To the endpoint, region and signing name of a boto3 client."""
        meta = client.meta
        return cls(
            str(meta.endpoint_url),
            str(meta.region_name),
            str(meta.service_model.signing_name),
            credentials,
            **options,
        )

    def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> tuple[int, bytes]:
        """Sign and send; ``(status, body)``. ``on_sent()`` runs once the request has left.

        A connection error closes the connection and is raised (one of ``CONNECTION_ERRORS``).
        """
        request = AWSRequest(
            method="POST", url=self.endpoint_url + path, data=body, headers=dict(headers or {})
        )
        SigV4Auth(
            self.credentials.get_frozen_credentials(), self.signing_name, self.region
        ).add_auth(request)
        connection = self._connections.take()
        try:
            connection.request("POST", path, body=body, headers=dict(request.headers.items()))
            if on_sent is not None:
                on_sent()
            response = connection.getresponse()
            answer = response.read()
        except CONNECTION_ERRORS:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._connections.give_back(connection)
        return response.status, answer


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


def _decoded(value: Any) -> Any:
    """An attribute value from the wire with its binaries as bytes, as boto3 returns it."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, content),) = value.items()
    if kind == "B":
        return {"B": base64.b64decode(content)}
    if kind == "BS":
        return {"BS": [base64.b64decode(item) for item in content]}
    if kind == "M":
        return {"M": {name: _decoded(item) for name, item in content.items()}}
    if kind == "L":
        return {"L": [_decoded(item) for item in content]}
    return value


def client_error(status: int, body: bytes, operation: str) -> ClientError:
    """The ``ClientError`` botocore raises for a JSON-protocol error answer to ``operation``."""
    try:
        document = json.loads(body)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    code = str(document.get("__type", "")).rpartition("#")[2] or f"HTTP{status}"
    message = str(document.get("message") or document.get("Message") or body[:200])
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    for name, value in document.items():
        if name != "__type":  # botocore keeps the modeled members, message included
            response[name] = value
    for reason in response.get("CancellationReasons") or []:
        if isinstance(reason, dict) and isinstance(reason.get("Item"), dict):
            reason["Item"] = {name: _decoded(item) for name, item in reason["Item"].items()}
    return ClientError(response, operation)  # type: ignore[arg-type]

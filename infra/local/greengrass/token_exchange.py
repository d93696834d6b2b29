"""The nucleus's token exchange service (``aws.greengrass.TokenExchangeService``), locally.

A component that depends on the token exchange service gets
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (``http://localhost:<port>/2016-11-01/
credentialprovider/``) and ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` (its ``SVCUID``); the AWS
SDKs' container-credentials provider then calls ``GET <uri>`` with ``Authorization: <token>``
and gets ``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}``.

The service has no credentials of its own: as on a core device, it asks the AWS IoT
credentials provider for the core's role alias over mutual TLS with the core device's
certificate (``x-amzn-iot-thingname``: the core's thing), and keeps the answer until five
minutes before it expires. A token no component holds is a 403, a path other than the
credentials path a 404, another method a 405; when the credentials provider refuses or
cannot be reached, the answer is a 502 or 503 that carries its reason (the shapes of the
real service's errors were not measured).
"""

from __future__ import annotations

import hmac
import http.client
import json
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.local.net.http_server import RefusingRequestHandler
from infra.local.net.service import ServerThread

__all__ = ["CREDENTIALS_PATH", "CoreCertificate", "TokenExchangeService"]

CREDENTIALS_PATH = "/2016-11-01/credentialprovider/"
"""The path the nucleus serves container credentials on."""
RENEW_BEFORE_S = 300.0


@dataclass(frozen=True)
class CoreCertificate:
    """The core device as the credentials provider knows it: thing, certificate, key, and
    the CA that signs the credentials provider's server certificate."""

    thing_name: str
    cert_file: Path
    key_file: Path
    ca_file: Path


class TokenExchangeService(ServerThread):
    """``with TokenExchangeService(core, url, tokens) as tes: tes.uri`` (HTTP on 127.0.0.1).

    ``credentials_url`` is the credentials provider's ``https://host:port/role-aliases/
    <alias>/credentials``; ``tokens`` the components' authorization tokens (their SVCUIDs).
    """

    name = "Greengrass token exchange service"

    def __init__(
        self,
        core: CoreCertificate,
        credentials_url: str,
        tokens: Iterable[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.core = core
        self.credentials_url = credentials_url
        self.tokens = tuple(tokens)
        self.host, self.requested_port = host, port
        self.clock = clock
        self._cache_lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self._cached_until = 0.0
        self.fetches = 0
        """Requests made to the credentials provider (each cached answer saves one)."""

    @property
    def uri(self) -> str:
        """``AWS_CONTAINER_CREDENTIALS_FULL_URI`` for the components."""
        return f"http://localhost:{self.port}{CREDENTIALS_PATH}"

    def authorised(self, token: str | None) -> bool:
        """Whether ``token`` is a component's (compared in constant time)."""
        if not token:
            return False
        found = False
        for known in self.tokens:
            found |= hmac.compare_digest(known.encode(), token.encode())
        return found

    def credentials(self) -> dict[str, Any]:
        """The container-credentials answer, from the cache or the credentials provider.

        Raises :class:`_Upstream` with the status to answer when the provider fails.
        """
        with self._cache_lock:
            if self._cached is not None and self.clock() < self._cached_until:
                return self._cached
            answer = self._fetch()
            expiration = datetime.fromisoformat(answer["Expiration"].replace("Z", "+00:00"))
            self._cached = answer
            self._cached_until = expiration.timestamp() - RENEW_BEFORE_S
            return answer

    def _fetch(self) -> dict[str, Any]:
        url = urlsplit(self.credentials_url)
        context = ssl.create_default_context(cafile=str(self.core.ca_file))
        context.load_cert_chain(str(self.core.cert_file), str(self.core.key_file))
        connection = http.client.HTTPSConnection(
            url.hostname or "", url.port, context=context, timeout=10
        )
        self.fetches += 1
        try:
            connection.request(
                "GET", url.path, headers={"x-amzn-iot-thingname": self.core.thing_name}
            )
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _Upstream(
                503, f"the AWS IoT credentials provider cannot be reached: {exc}"
            ) from exc
        finally:
            connection.close()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        if response.status != 200:
            message = body.get("message") if isinstance(body, dict) else None
            raise _Upstream(
                502,
                f"the AWS IoT credentials provider refused the core device "
                f"{self.core.thing_name!r}: HTTP {response.status} {message or ''}".rstrip(),
            )
        try:
            issued = body["credentials"]
            return {
                "AccessKeyId": issued["accessKeyId"],
                "SecretAccessKey": issued["secretAccessKey"],
                "Token": issued["sessionToken"],
                "Expiration": _iso(issued["expiration"]),
            }
        except (KeyError, TypeError) as exc:
            raise _Upstream(502, f"the AWS IoT credentials provider's answer lacks {exc}") from exc

    def _bind(self) -> socketserver.BaseServer:
        server = ThreadingHTTPServer((self.host, self.requested_port), _Handler)
        server.daemon_threads = True
        server.service = self  # type: ignore[attr-defined]
        return server


class _Upstream(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _iso(value: Any) -> str:
    """AWS's expiration (ISO 8601 text, or epoch seconds) as ISO 8601 UTC text."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class _Handler(RefusingRequestHandler):
    allowed_methods = "GET"

    def refuse(self, status: int, message: str) -> None:
        self._answer(status, {"message": message})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        service: TokenExchangeService = self.server.service  # type: ignore[attr-defined]
        if self.path.split("?", 1)[0] != CREDENTIALS_PATH:
            self.refuse(404, f"not found: the credentials are at {CREDENTIALS_PATH}")
            return
        if not service.authorised(self.headers.get("Authorization")):
            self.refuse(403, "the Authorization header is not a component's token")
            return
        try:
            answer = service.credentials()
        except _Upstream as exc:
            self.refuse(exc.status, exc.message)
            return
        self._answer(200, answer)

    def do_POST(self) -> None:
        self.refuse(405, "use GET")

    def log_message(self, format: str, *args: Any) -> None:
        return

"""The local services' HTTP/1.1 servers on ``http.server``: every refusal answered, TLS per thread.

:class:`RefusingRequestHandler` closes the gaps ``http.server`` leaves for a client that sends
something odd: its own refusals (bad request line, unknown method, unsupported version, long
headers) come in the service's error format as a 4xx instead of an HTML 501/505, a blank
request line gets a 400 instead of a silent close, a request line too broken to name a version
is answered with a status line (``http.server`` falls back to HTTP/0.9 and sends none), a
stalled client times out, and an unexpected exception still gets an answer. A subclass says
how an error looks (:meth:`~RefusingRequestHandler.refuse`).

:class:`TlsThreadingHTTPServer` runs the TLS handshake in the connection's own thread with a
timeout, not in the accept loop: a client that connects and never says hello holds only its
own thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "HTTP_REFUSAL_TYPES",
    "HttpRefusal",
    "RefusingRequestHandler",
    "TlsThreadingHTTPServer",
]

log = logging.getLogger("tidings.http")

HTTP_REFUSAL_TYPES = {
    400: "BadRequestException",
    404: "ResourceNotFoundException",
    405: "MethodNotAllowedException",
    408: "RequestTimeoutException",
    411: "LengthRequiredException",
    413: "RequestEntityTooLargeException",
    414: "RequestUriTooLongException",
    431: "RequestHeaderFieldsTooLargeException",
}
"""The AWS error type (``x-amzn-ErrorType``, ``__type``) of an HTTP-level refusal, by status."""


class HttpRefusal(Exception):
    """A request refused before it reaches the service: ``status`` and a ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RefusingRequestHandler(BaseHTTPRequestHandler):
    """``BaseHTTPRequestHandler`` that answers everything it refuses (see the module doc)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """``http.server`` writes the headers and the body apart: with Nagle's algorithm the body
    waits for the client's delayed ACK of the headers, ~40 ms per kept-alive request."""
    request_timeout_s: float | None = 10.0
    """How long a client may take to send a request (line, headers, body) before it is cut."""
    allowed_methods = "GET, POST"
    """Named in the answer to an unknown method."""

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` in the service's error format and close."""
        raise NotImplementedError

    def setup(self) -> None:
        super().setup()
        if self.request_timeout_s is not None:
            self.connection.settimeout(self.request_timeout_s)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """``http.server``'s own refusals, as 4xx in the service's format (never 501/505)."""
        if not str(getattr(self, "request_version", "")).startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # answer with a status line, not as HTTP/0.9
        self.close_connection = True
        if code == 501:
            self.refuse(405, f"{self.command!r} is not supported here; use {self.allowed_methods}.")
        elif code == 505:
            self.refuse(400, "Send HTTP/1.1 (or HTTP/1.0).")
        else:
            self.refuse(code if code < 500 else 400, message or explain or "Malformed request.")

    def parse_request(self) -> bool:
        """``http.server``'s parser, plus a 400 for a blank request line (it closed silently)."""
        if not str(getattr(self, "raw_requestline", b"x"), "iso-8859-1").split():
            self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""
            self.send_error(400, "The request line is empty: send 'METHOD /path HTTP/1.1'.")
            return False
        return super().parse_request()

    def handle_one_request(self) -> None:
        """One request; an answer even when handling it fails (never a silent drop)."""
        try:
            super().handle_one_request()
        except TimeoutError:
            self.close_connection = True
        except (ConnectionError, ssl.SSLError):
            self.close_connection = True
        except Exception:
            log.exception("%s: unhandled error", type(self).__name__)
            self.close_connection = True
            with contextlib.suppress(Exception):
                self.refuse(500, "The local service failed; see its log.")

    def read_body(self, limit: int) -> bytes:
        """The request's body by its ``Content-Length``; :class:`HttpRefusal` if malformed.

        Chunked bodies (411), a missing, repeated, negative or non-ASCII length (400), one over
        ``limit`` (413) and a body that ends early (400) are refused.
        """
        if (self.headers.get("Transfer-Encoding") or "").strip().lower() not in ("", "identity"):
            raise HttpRefusal(411, "Send the body with a Content-Length, not chunked.")
        values = self.headers.get_all("Content-Length") or []
        text = values[0].strip() if values else "0"
        if len(set(values)) > 1 or not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise HttpRefusal(400, "Content-Length must be one non-negative decimal number.")
        length = int(text)
        if length > limit:
            raise HttpRefusal(413, f"The body exceeds {limit} bytes.")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
        if len(body) != length:
            self.close_connection = True
            raise HttpRefusal(
                400,
                f"The body ended after {len(body)} of the {length} bytes of its Content-Length.",
            )
        return body


class TlsThreadingHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections do their TLS handshake in their own thread."""

    daemon_threads = True
    handshake_timeout_s = 10.0

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext
    ) -> None:
        super().__init__(address, handler)
        self.ssl_context = ctx

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Handshake (bounded), then serve the connection; a failed handshake just closes."""
        raw: socket.socket = request
        raw.settimeout(self.handshake_timeout_s)
        try:
            secured = self.ssl_context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            self.RequestHandlerClass(secured, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                secured.close()

"""A small WSGI server for the moto process: a thread per connection, HTTP/1.1 keep-alive.

Each connection's thread reads a request, calls the app and writes the answer itself, so a
call crosses no thread boundary inside the server (waitress hands every request from its
socket loop to a worker thread and back, which costs the local stack's busiest process
about a third of its CPU). The clients are the local stack's own: boto3, the pumps, the
Lambda workers, a few dozen kept-alive connections at most.

HTTP parsing is the standard library's (:class:`http.server.BaseHTTPRequestHandler`, with
``Expect: 100-continue``); request bodies come with ``Content-Length`` or chunked; every answer
carries ``Content-Length``. A failing app gets a 500 with ``{"error", "message"}``. The
headers as received are in the environ under ``tidings.raw_headers`` too (SigV4 verification
needs their names and values as signed, which WSGI's ``HTTP_*`` keys do not keep).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from infra.local.motohost.auth import RAW_HEADERS
from infra.local.net.service import ServerThread

__all__ = ["WsgiServer"]

_log = logging.getLogger("tidings.wsgi")
_IDLE_TIMEOUT_S = 300.0
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class WsgiServer(ServerThread):
    """Serves ``app`` on ``host:port`` (0 picks a free port) from :meth:`start` to :meth:`stop`."""

    name = "moto WSGI server"

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str, port: int) -> None:
        super().__init__()
        self._app = app
        self._address = (host, port)

    def _bind(self) -> _Server:
        server = _Server(self._address, _Handler)
        server.app = self._app
        return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    app: Callable[..., Iterable[bytes]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "moto"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT_S
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per request

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (bad request line, 414, ...), as JSON; closes."""
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # a garbled request line still gets a status line
        reason = message or self.responses.get(code, ("error",))[0]
        body = json.dumps({"error": "bad_request", "message": reason}).encode()
        self._write(code, [("Content-Type", "application/json")], body)

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except TimeoutError:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():  # it has answered (400, 505, ...)
            return
        try:
            body = self._body()
        except (ValueError, OSError) as exc:
            self.close_connection = True
            self._write(400, [("Content-Type", "application/json")], _error("bad_request", exc))
            return
        status, headers, content = self._call(body)
        self._write(status, headers, content)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _environ(self, body: bytes) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            RAW_HEADERS: list(self.headers.items()),
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append

        try:
            result = self.server.app(self._environ(body), start_response)
            try:
                written.extend(chunk for chunk in result if chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the app did not start a response")
        except Exception as exc:
            _log.exception("%s %s failed", self.command, self.path)
            return 500, [("Content-Type", "application/json")], _error("internal_error", exc)
        status, headers = started
        return int(str(status).split(" ", 1)[0]), headers, b"".join(written)

    def _write(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [f"HTTP/1.1 {status} {reason}"]
        declared = None
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                declared = value
            if lowered not in _HOP_BY_HOP:
                lines.append(f"{name}: {value}")
        head_only = self.command == "HEAD"
        length = declared if head_only and declared is not None else str(len(content))
        lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        text = "\r\n".join(lines) + "\r\n\r\n"
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:  # a header value outside Latin-1: send it as UTF-8
            data = text.encode("utf-8")
        self.wfile.write(data if head_only else data + content)


def _error(code: str, exc: Exception) -> bytes:
    return json.dumps({"error": code, "message": str(exc)}).encode()

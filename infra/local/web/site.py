"""The pages ``tidings up`` serves: the demo page, an empty page for trying the web client,
the web client's ES modules, and the settings a page needs to reach the local stack.

What is served, all with ``GET`` (and ``HEAD``):

- ``/`` — the demo page (``infra/web/index.html`` with its script and style beside it): sign
  in, see your todos, your tenant's board and the public scores change live, add a todo;
- ``/sandbox.html`` — a page that loads nothing, for the browser console and for tests
  (``await import("/client/index.js")``);
- ``/client/<module>.js`` — the web client's modules (``client_sdk/web/src``), unbundled: the
  browser loads them as ES modules, so no build step stands between an edit and a reload;
- ``/config.json`` — where the page signs in and what it may write to: ``apiUrl``,
  ``cognitoEndpoint``, ``region``, ``dynamodbEndpoint`` and the ``tables``.

Plain HTTP on 127.0.0.1 only: browsers treat loopback as a secure context (``crypto.subtle``
works) and the page reaches the HTTPS API and the WSS gateway with the local CA, which the
browser is told to trust (docs/WEB.md). Anything else gets a 404 or 405 with
``{"error", "message"}``.
"""

from __future__ import annotations

import json
import mimetypes
import re
import socketserver
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from infra.local.net.http_server import RefusingRequestHandler
from infra.local.net.service import ServerThread

__all__ = ["SiteConfig", "WebSite"]

_MODULE = re.compile(r"^/client/([a-z][a-z0-9_-]*\.js)$")
_PAGES = {"/": "index.html", "/index.html": "index.html", "/sandbox.html": "sandbox.html"}
_ASSET = re.compile(r"^/([a-z][a-z0-9_-]*\.(?:js|css|svg))$")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class SiteConfig:
    """Where the site listens and what it serves."""

    pages: Path
    """The demo page's folder (``infra/web``)."""
    client: Path | None
    """The web client's modules (``client_sdk/web/src``); None when they are not installed."""
    settings: Callable[[], Mapping[str, Any]]
    """What ``/config.json`` answers (read at each request: the stack fills it as it starts)."""
    port: int = 8447
    host: str = "127.0.0.1"


class _Handler(RefusingRequestHandler):
    server: _Server
    allowed_methods = "GET, HEAD"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def refuse(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": _ERRORS.get(status, "error"), "message": message}))

    def _send(self, status: int, body: str | bytes, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        config = self.server.site
        path = self.path.split("?", 1)[0]
        if path == "/config.json":
            self._send(200, json.dumps(dict(config.settings()), indent=1))
            return
        file = self._file(config, path)
        if file is None or not file.is_file():
            self.refuse(404, f"Nothing is served at {path}; the demo page is at /.")
            return
        content_type = _TYPES.get(file.suffix) or (
            mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        )
        self._send(200, file.read_bytes(), content_type)

    @staticmethod
    def _file(config: SiteConfig, path: str) -> Path | None:
        if path in _PAGES:
            return config.pages / _PAGES[path]
        module = _MODULE.match(path)
        if module is not None:
            return None if config.client is None else config.client / module.group(1)
        asset = _ASSET.match(path)
        return config.pages / asset.group(1) if asset is not None else None

    def _refuse_method(self) -> None:
        self.close_connection = True
        self.refuse(405, f"{self.command} is not served here; use GET.")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method


_ERRORS = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        super().__init__((site.host, site.port), _Handler)


class WebSite(ServerThread):
    """``with WebSite(config) as site: ... site.url ...``"""

    name = "web site"

    def __init__(self, config: SiteConfig) -> None:
        super().__init__()
        self.config = config

    def _bind(self) -> socketserver.BaseServer:
        return _Server(self.config)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/``: the demo page."""
        return f"http://{self.config.host}:{self.port}/"

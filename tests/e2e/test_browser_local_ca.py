"""Real Chromium trusts the local stack as tests/support/browser.py sets it up, with its
certificate checks still on: a page reaches the HTTP API (TLS and CORS preflight passed) and
the IoT gateway's ``/mqtt`` endpoint, while the same browser refuses a certificate of another
local CA, and a browser without the setting refuses the stack's."""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from infra.local.net.certs import ensure_tls_files
from infra.local.stack.local_stack import LocalStack
from tests.support.browser import chromium, page_errors

PAGE = b"<!doctype html><title>tidings browser test</title>"

# A POST the API refuses (not JSON), sent as a page would: JSON content type, so the browser
# asks the API's preflight first.
BAD_LOGIN = """async (url) => {
  const answer = await fetch(url, {
    method: "POST", headers: {"content-type": "application/json"}, body: "{not json",
  });
  return {status: answer.status, body: await answer.json()};
}"""

FETCH_ERROR = """async (url) => {
  try { await fetch(url, {method: "POST", body: "{}"}); return null; }
  catch (error) { return `${error.name}: ${error.message}`; }
}"""

# An unsigned URL: the gateway answers the upgrade with 403, which the page sees as an error
# and a close (1006) without ever opening.
WEBSOCKET = """(url) => new Promise((resolve) => {
  const socket = new WebSocket(url, "mqtt");
  let opened = false;
  socket.onopen = () => { opened = true; socket.close(); };
  socket.onclose = (event) => resolve({opened, code: event.code});
})"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.send_header("access-control-allow-origin", "*")
        self.end_headers()
        self.wfile.write(PAGE)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A throwaway server on 127.0.0.1 answering every GET and POST with ``PAGE``; its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield f"https://localhost:{port}/" if tls else f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    return shared_stack


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """The page's origin: plain HTTP on 127.0.0.1, a secure context as localhost is."""
    with serve() as url:
        yield url


@pytest.fixture(scope="module")
def trusting(stack: LocalStack) -> Iterator[Browser]:
    with chromium(stack.ca_file) as browser:
        yield browser


@pytest.fixture
def page(trusting: Browser, origin: str) -> Iterator[Page]:
    page = trusting.new_page()
    page.goto(origin)
    assert page.evaluate("isSecureContext")
    yield page
    page.close()


def test_a_page_reaches_the_api_through_tls_and_cors(stack: LocalStack, page: Page) -> None:
    answer = page.evaluate(BAD_LOGIN, f"{stack.api_url}/v1/login")
    assert answer["status"] == 400, answer
    assert set(answer["body"]) == {"error", "message"}, answer


def test_a_page_reaches_the_gateways_websocket_endpoint(
    stack: LocalStack, page: Page, caplog: pytest.LogCaptureFixture
) -> None:
    errors = page_errors(page)
    with caplog.at_level(logging.INFO, logger="tidings.gateway"):
        closed = page.evaluate(WEBSOCKET, f"wss://localhost:{stack.iot_port}/mqtt")
    assert closed == {"opened": False, "code": 1006}
    # the request was read (so TLS passed) and refused for its missing signature
    refusals = [r.getMessage() for r in caplog.records if "refused WebSocket" in r.getMessage()]
    assert refusals, [r.getMessage() for r in caplog.records]
    assert not any("TLS handshake" in r.getMessage() for r in caplog.records)
    assert any("Unexpected response code: 403" in e for e in errors), errors


def test_the_same_browser_refuses_another_local_cas_certificate(
    trusting: Browser, origin: str, tmp_path: Path
) -> None:
    other = ensure_tls_files(tmp_path / "other-ca", "us-east-1")
    with serve(other.server_context()) as url:
        page = trusting.new_page()
        page.goto(origin)
        errors = page_errors(page)
        assert page.evaluate(FETCH_ERROR, url) == "TypeError: Failed to fetch"
        page.close()
        # the same server, to a browser that trusts it
        with chromium(other.ca_file) as browser:
            page = browser.new_page()
            page.goto(origin)
            assert page.evaluate(FETCH_ERROR, url) is None
    assert any("ERR_CERT_AUTHORITY_INVALID" in e for e in errors), errors


def test_a_browser_without_the_trust_setting_refuses_the_stack(
    stack: LocalStack, origin: str
) -> None:
    with chromium(None) as browser:
        page = browser.new_page()
        page.goto(origin)
        errors = page_errors(page)
        failure = page.evaluate(FETCH_ERROR, f"{stack.api_url}/v1/login")
    assert failure == "TypeError: Failed to fetch"
    assert any("ERR_CERT_AUTHORITY_INVALID" in e for e in errors), errors

"""Raw HTTP/1.1 over a real socket (plain or TLS), for tests that send what no client library
would: malformed heads, odd methods, lying Content-Lengths, arbitrary bytes.

``exchange`` sends the bytes and reads one complete answer (head and Content-Length body), so a
server that drops the connection without answering, or never answers, fails the test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class NoAnswer(AssertionError):
    """The server closed the connection (or reset it) without a complete HTTP answer."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def exchange(
    port: int,
    request: bytes,
    *,
    ca_file: Path | str | None = None,
    timeout: float = 15.0,
    expect_body: bool = True,
) -> Answer:
    """Send ``request`` on a new connection to 127.0.0.1 (TLS if ``ca_file``); read the answer.

    Raises :class:`NoAnswer` if the server closes without a whole answer, ``TimeoutError`` if
    it does not answer within ``timeout``. ``expect_body=False`` for HEAD requests.
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock: socket.socket = raw
    try:
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.settimeout(timeout)
        # the server may answer and close before reading everything: read its answer anyway
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            sock.sendall(request)
        return _read_answer(sock, expect_body)
    finally:
        sock.close()


def _read_answer(sock: socket.socket, expect_body: bool) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock)
        if not chunk:
            raise NoAnswer(f"closed without an answer (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        raise NoAnswer(f"not an HTTP/1.x status line: {lines[0][:200]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(lines[0].split(" ")[1])
    if status == 101 or not expect_body:
        return Answer(status, headers, body)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = _recv(sock)
        if not chunk:
            raise NoAnswer(f"closed after {len(body)} of {length} body bytes")
        body += chunk
    return Answer(status, headers, body[:length])


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except (ConnectionResetError, ssl.SSLError):
        return b""


def request_bytes(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    content_length: str | None = None,
) -> bytes:
    """A request head (``Connection: close`` added) and body; ``content_length`` overrides."""
    length = str(len(body)) if content_length is None else content_length
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    lines += [f"Content-Length: {length}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_error_json(
    answer: Answer, keys: frozenset[str] = frozenset({"error", "message"})
) -> Any:
    """The body of a 4xx is JSON with exactly ``keys``, each a non-empty string."""
    document = answer.json()
    assert isinstance(document, dict) and set(document) == keys, document
    assert all(isinstance(document[k], str) and document[k] for k in keys), document
    return document


def assert_sts_error_xml(answer: Answer) -> ET.Element:
    """The body of an STS (query protocol) error: ``ErrorResponse/Error/{Type,Code,Message}``."""
    root = ET.fromstring(answer.body)
    assert root.tag.endswith("ErrorResponse"), answer.body[:300]
    namespace = root.tag[: -len("ErrorResponse")]
    error = root.find(f"{namespace}Error")
    assert error is not None, answer.body[:300]
    for name in ("Type", "Code", "Message"):
        element = error.find(f"{namespace}{name}")
        assert element is not None and element.text, (name, answer.body[:300])
    return error

"""The moto process's WSGI server, over real sockets: keep-alive, bodies, errors."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.motohost.wsgi_server import WsgiServer


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with what it was given; ``/boom`` raises, ``/late`` uses ``write()``."""
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("the app failed")
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"] or 0))
    answer = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "path": path,
            "raw": environ["RAW_URI"],
            "query": environ["QUERY_STRING"],
            "type": environ["CONTENT_TYPE"],
            "target": environ.get("HTTP_X_AMZ_TARGET"),
            "body": body.decode("latin-1"),
            "thread": threading.get_ident(),
        }
    ).encode()
    write = start_response("201 Created", [("Content-Type", "application/json")])
    if path == "/late":
        write(answer)
        return []
    return [answer[:10], b"", answer[10:]]


@pytest.fixture
def server() -> Iterator[WsgiServer]:
    with WsgiServer(echo_app, "127.0.0.1", 0) as served:
        yield served


def call(connection: http.client.HTTPConnection, method: str, path: str, **kw: Any) -> Any:
    connection.request(method, path, **kw)
    response = connection.getresponse()
    return response, response.read()


def test_requests_on_one_kept_alive_connection_are_answered_in_turn(server: WsgiServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    threads = set()
    for index in range(3):
        response, data = call(
            connection,
            "POST",
            f"/a%20b/{index}?x=1%202",
            body=b'{"n": 1}',
            headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "T.Op"},
        )
        answer = json.loads(data)
        assert response.status == 201 and response.getheader("Connection") is None
        assert int(response.getheader("Content-Length")) == len(data)
        assert answer["path"] == f"/a b/{index}" and answer["raw"] == f"/a%20b/{index}?x=1%202"
        assert answer["query"] == "x=1%202" and answer["target"] == "T.Op"
        assert answer["body"] == '{"n": 1}' and answer["type"] == "application/x-amz-json-1.0"
        threads.add(answer["thread"])
    assert len(threads) == 1  # one connection, one thread, no hand-over


def test_chunked_and_100_continue_bodies_arrive_whole(server: WsgiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"PUT /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n"
        )
        reply = _read_reply(sock)
        assert reply.startswith(b"HTTP/1.1 201 ") and b'"body": "abcdefg"' in reply
        sock.sendall(
            b"PUT /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        assert b'"body": "hello"' in _read_reply(sock)


def test_a_failing_app_gets_a_500_with_a_reason_and_the_connection_survives(
    server: WsgiServer,
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    response, data = call(connection, "GET", "/boom")
    assert response.status == 500
    assert json.loads(data) == {"error": "internal_error", "message": "the app failed"}
    response, data = call(connection, "GET", "/late")
    assert response.status == 201 and json.loads(data)["path"] == "/late"


def test_head_answers_carry_no_body(server: WsgiServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    response, data = call(connection, "HEAD", "/x")
    assert response.status == 201 and data == b""
    assert int(response.getheader("Content-Length")) > 0
    response, data = call(connection, "GET", "/after-head")
    assert json.loads(data)["path"] == "/after-head"


def test_malformed_requests_get_a_400_and_close(server: WsgiServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n")
        reply = _read_until_closed(sock)
        assert reply.startswith(b"HTTP/1.1 400") and b"Connection: close" in reply
        assert b"negative Content-Length" in reply
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 400")


def test_a_busy_port_raises_at_start(server: WsgiServer) -> None:
    second = WsgiServer(echo_app, "127.0.0.1", server.port)
    with pytest.raises(OSError):
        second.start()
    assert not second.ready
    second.stop()  # harmless: it never started


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data

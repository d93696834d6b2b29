"""The signed iot-data client: kept-alive connections, on_sent before the answer, dropped
connections noticed. Against a real HTTP/1.1 server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.credentials import Credentials

from backend.iot_publish import SignedPublishClient

REGION = "us-east-1"


class Server:
    """An HTTP/1.1 keep-alive server that counts connections and can hold its answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.close_after_answer = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(self.path)
                outer.release.wait(10)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                if outer.close_after_answer:  # an idle timeout, as a load balancer's
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        class Http(ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                outer.closed.set()  # the server's side of a connection is closed

        self.closed = threading.Event()
        self.http = Http(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture()
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def client(server: Server) -> SignedPublishClient:
    return SignedPublishClient(server.url, REGION, Credentials("a", "b"))


def test_publishes_reuse_one_connection(server: Server) -> None:
    publisher = client(server)
    for n in range(20):
        publisher.publish(topic="tidings/dev/public/scores", qos=1, payload=b'{"n":%d}' % n)
    assert len(server.requests) == 20
    assert server.connections == 1


def test_on_sent_comes_once_before_the_answer(server: Server) -> None:
    publisher = client(server)
    server.release.clear()  # hold the answer
    sent = threading.Event()
    calls: list[int] = []

    def on_sent() -> None:
        calls.append(1)
        sent.set()

    finished = threading.Event()
    worker = threading.Thread(
        target=lambda: (
            publisher.publish(topic="t/a", qos=1, payload=b"{}", on_sent=on_sent),
            finished.set(),
        )
    )
    worker.start()
    assert sent.wait(5)
    assert not finished.is_set()  # the request left; the answer has not come
    server.release.set()
    worker.join(5)
    assert finished.is_set() and calls == [1]


def test_a_connection_the_server_closed_while_idle_is_replaced(server: Server) -> None:
    publisher = SignedPublishClient(server.url, REGION, Credentials("a", "b"), max_attempts=1)
    server.close_after_answer = True
    publisher.publish(topic="t/a", qos=1, payload=b"{}")
    assert server.closed.wait(10)  # idle, and closed by the server
    publisher.publish(topic="t/a", qos=1, payload=b"{}")
    assert len(server.requests) == 2  # one attempt each: none was lost on the closed socket
    assert server.connections == 2


def test_on_sent_is_called_even_when_nothing_could_be_sent() -> None:
    publisher = SignedPublishClient(
        "http://127.0.0.1:9", REGION, Credentials("a", "b"), max_attempts=1
    )
    calls: list[int] = []
    with pytest.raises(Exception, match="failed"):
        publisher.publish(topic="t/a", qos=1, payload=b"{}", on_sent=lambda: calls.append(1))
    assert calls == [1]

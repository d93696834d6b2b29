"""The gateway's HTTP side over real TLS sockets: the iot-data Publish endpoint and the /mqtt
WebSocket upgrade answer every request, malformed or not, with a non-5xx status and the
``{"error", "message"}`` body, never a dropped connection or a hang; plus the regressions
found this way, and the per-gateway framing cache."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.iot import gateway as gateway_module
from infra.local.iot.broker import BrokerConfig
from infra.local.iot.gateway import Gateway, GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread
from infra.local.net import websocket as ws
from tests.support.fuzz import examples
from tests.support.http_strategies import header_values, headers, url_chars
from tests.support.identities import REGION, Identity, new_identity, new_publisher
from tests.support.raw_http import Answer, assert_error_json, exchange, request_bytes
from tests.support.real_clients import presigned_mqtt_path

EXAMPLES = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
WS_HEADERS = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),  # replaced by request_bytes' "close" below: kept for realism
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Protocol", "mqtt"),
]


class Target:
    """A running gateway with a publisher and a subscriber identity in its store."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.port = gateway.port
        self.ca_file = gateway.ca_file
        self.publisher = new_publisher(gateway.credentials)
        self.identity = new_identity(gateway.credentials)

    def send(self, request: bytes, *, head: bool = False) -> Answer:
        """One request on a new TLS connection; its answer."""
        return exchange(self.port, request, ca_file=self.ca_file, expect_body=not head)

    def signed_publish(
        self, raw_path: str, raw_query: str, body: bytes, identity: Identity | None = None
    ) -> list[tuple[str, str]]:
        """Headers of an iot-data Publish signed by ``identity`` (the publisher by default)."""
        who = identity or self.publisher
        url = f"https://localhost:{self.port}{raw_path}" + (f"?{raw_query}" if raw_query else "")
        request = AWSRequest(method="POST", url=url, data=body)
        credentials = Credentials(who.access_key, who.secret_key, who.token)
        SigV4Auth(credentials, "iotdata", REGION).add_auth(request)
        return [("Host", f"localhost:{self.port}"), *request.headers.items()]


@pytest.fixture(scope="module")
def target(state_dir: Path) -> Iterator[Target]:
    config = GatewayConfig(
        port=0, state_dir=state_dir, broker=BrokerConfig(), handshake_timeout_s=1.0
    )
    with GatewayThread(config, CredentialStore()) as running:
        assert running.gateway is not None
        yield Target(running.gateway)


def check(answer: Answer) -> None:
    """No 5xx; every 4xx is JSON ``{"error", "message"}`` with an ``x-amzn-ErrorType``."""
    assert answer.status < 500, (answer.status, answer.body[:300])
    if 400 <= answer.status < 500:
        assert answer.headers.get("content-type") == "application/json", answer.headers
        assert_error_json(answer)
        assert answer.headers.get("x-amzn-errortype", "").endswith("Exception"), answer.headers


# --- strategies -----------------------------------------------------------------------------

methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
)
topics = st.one_of(
    st.sampled_from(
        [
            "tidings/dev/public/scores",
            "tidings/dev/users/x/todos",
            "$aws/events/presence/connected/x",
            "tidings/dev/#",
            "tidings/dev/+/x",
            "a/b/c/d/e/f/g/h/i",
            "",
            "x" * 300,
        ]
    ),
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
        max_size=40,
    ),
)
queries = st.one_of(
    st.sampled_from(["", "qos=0", "qos=1", "qos=2", "qos=x", "retain=true", "qos=1&retain=true"]),
    st.text(url_chars, max_size=60),
)
bad_lengths = st.sampled_from(["abc", "-1", "\u00b2", "1e3", "0x10", "+-", "9" * 30])


@st.composite
def presigned_paths(draw: st.DrawFn, target: Target) -> str:
    """A valid presigned /mqtt path, sometimes with a query part changed, dropped or added."""
    path = presigned_mqtt_path(target.identity, target.port)
    base, _, query = path.partition("?")
    params = query.split("&")
    change = draw(st.sampled_from(["none", "drop", "replace", "append", "garbage"]))
    if change == "drop":
        params.pop(draw(st.integers(0, len(params) - 1)))
    elif change == "replace":
        index = draw(st.integers(0, len(params) - 1))
        name = params[index].split("=", 1)[0]
        params[index] = f"{name}={quote(draw(st.text(max_size=30)), safe='')}"
    elif change == "append":
        params.append(draw(st.text(url_chars, max_size=30)))
    elif change == "garbage":
        return base + "?" + draw(st.text(url_chars, max_size=200))
    return base + "?" + "&".join(params)


# --- the fuzzers ----------------------------------------------------------------------------


@EXAMPLES
@given(
    data=st.data(),
    topic=topics,
    query=queries,
    body=st.binary(max_size=400),
    extra=headers,
    method=methods,
)
def test_iot_data_publish_answers_every_request(
    target: Target,
    data: st.DataObject,
    topic: str,
    query: str,
    body: bytes,
    extra: list[tuple[str, str]],
    method: str,
) -> None:
    raw_path = "/topics/" + quote(topic, safe=data.draw(st.sampled_from(["", "/", "/$+#"])))
    signer = data.draw(st.sampled_from(["publisher", "identity", "unsigned", "tampered"]))
    length = data.draw(st.none() | bad_lengths, "content_length")
    if signer == "unsigned":
        head = list(extra)
    else:
        identity = target.identity if signer == "identity" else target.publisher
        head = target.signed_publish(raw_path, query, body, identity) + extra
        if signer == "tampered":
            method = data.draw(st.sampled_from(["POST", method]))
            body = body + b"!"
    request = request_bytes(
        method, raw_path + (f"?{query}" if query else ""), head, body, content_length=length
    )
    answer = target.send(request, head=method == "HEAD")
    check(answer)
    if length is not None:
        assert answer.status in (400, 413), answer.body
    if signer == "tampered" and method == "POST" and length is None:
        assert answer.status == 403, answer.body


@EXAMPLES
@given(data=st.data(), extra=headers, method=methods)
def test_the_mqtt_upgrade_answers_every_request(
    target: Target, data: st.DataObject, extra: list[tuple[str, str]], method: str
) -> None:
    kind = data.draw(st.sampled_from(["presigned", "random-path", "no-query"]))
    if kind == "presigned":
        path = data.draw(presigned_paths(target))
    elif kind == "random-path":
        path = "/mqtt?" + data.draw(st.text(url_chars, max_size=120))
    else:
        path = "/mqtt"
    head = [("Host", f"localhost:{target.port}")]
    for name, value in WS_HEADERS:
        if data.draw(st.integers(0, 4)):
            value = data.draw(st.just(value) | header_values, name)
            head.append((name, value))
    head += extra
    method = data.draw(st.sampled_from(["GET", method]), "method")
    answer = target.send(request_bytes(method, path, head), head=method == "HEAD")
    check(answer)
    if answer.status == 101:
        assert kind == "presigned" and method == "GET", (path, head)


@EXAMPLES
@given(head=st.binary(max_size=400))
def test_arbitrary_bytes_as_a_request_head_get_an_answer(target: Target, head: bytes) -> None:
    request = head.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\n"
    answer = target.send(request)
    check(answer)
    assert answer.status >= 400


# --- regressions found by the fuzzers -------------------------------------------------------


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9", "\u00b3"])
def test_a_superscript_digit_content_length_is_a_400_not_a_dropped_connection(
    target: Target, length: str
):
    # str.isdigit() accepts '²', which int() refuses: the gateway used to drop the connection
    answer = target.send(request_bytes("POST", "/topics/a", [], b"x", content_length=length))
    assert answer.status == 400 and assert_error_json(answer)["error"] == "bad_request"


def test_a_non_ascii_websocket_key_is_a_400_not_a_dropped_connection(target: Target):
    path = presigned_mqtt_path(target.identity, target.port)
    head = [("Host", f"localhost:{target.port}"), *WS_HEADERS]
    head[3] = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==\u00e9")
    answer = target.send(request_bytes("GET", path, head))
    assert answer.status == 400
    assert "Sec-WebSocket-Key" in assert_error_json(answer)["message"]


def test_a_request_body_that_stalls_gets_a_408(target: Target):
    # the body promised by Content-Length never comes: after the handshake timeout (1 s here)
    # the client gets an answer instead of a silently dropped connection
    started = time.monotonic()
    answer = target.send(request_bytes("POST", "/topics/a", [], b"{}", content_length="100"))
    assert answer.status == 408, answer.body
    assert assert_error_json(answer)["error"] == "request_timeout"
    assert time.monotonic() - started < 10


def test_an_idle_kept_alive_connection_is_closed_cleanly_and_an_active_one_is_served(
    target: Target,
):
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(target.ca_file))
    with (
        socket.create_connection(("127.0.0.1", target.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        for _ in range(5):  # requests over 2.5 s on one connection: past the 1 s timeout
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while not data.endswith(b'{"status":"ok"}'):
                chunk = tls.recv(4096)
                assert chunk, "an active keep-alive connection was dropped"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
        assert tls.recv(4096) == b""  # idle for longer than 1 s: closed with close_notify


# --- the framing cache is per gateway -------------------------------------------------------


def _connection(gateway: Gateway) -> Any:
    connection = gateway_module._Connection(gateway)
    connection._flush_scheduled = True  # keep frames in _pending: no loop needed
    return connection


def test_two_gateways_in_one_process_never_send_each_others_frames(tmp_path: Path):
    """A fan-out frame cached by one gateway is not handed to the other's subscribers.

    Each gateway runs on its own loop thread. The interleaving that used to mix frames (gateway
    B replacing a shared cache between gateway A's two reads of it) is replayed here
    deterministically: B frames a packet of its own at every line A executes in ``send``.
    """
    one = Gateway(GatewayConfig(port=0, state_dir=tmp_path), CredentialStore())
    two = Gateway(GatewayConfig(port=0, state_dir=tmp_path), CredentialStore())
    packet = b"\x30\x05\x00\x01aXY"  # the bytes object a fan-out hands every subscriber
    code = gateway_module._Connection.send.__code__
    for stop_at in range(1, 15):  # interleave at the 1st, 2nd, ... line of send
        sender, other = _connection(one), _connection(two)
        sender.send(packet)  # the packet's frame is now cached
        lines_seen = 0

        def tracer(
            frame: FrameType, event: str, arg: object, stop_at: int = stop_at, other: Any = other
        ) -> Any:
            nonlocal lines_seen
            if frame.f_code is not code:
                return None
            if event == "line":
                lines_seen += 1
                if lines_seen == stop_at:  # the other gateway's loop thread runs here
                    other.send(bytes([0x30, 0x03, 0x00, 0x01, stop_at]))
            return tracer

        sys.settrace(lambda frame, event, arg: tracer if frame.f_code is code else None)
        try:
            sender.send(packet)
        finally:
            sys.settrace(None)
        assert sender._pending == [ws.encode_binary(packet)] * 2, stop_at
        if lines_seen < stop_at:
            break

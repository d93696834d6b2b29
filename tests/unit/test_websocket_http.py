"""WebSocket framing and HTTP head parsing (pure logic)."""

from __future__ import annotations

import json
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.local.net import websocket as ws
from infra.local.net.http1 import HttpError, error_response, parse_request_head
from tests.support.fuzz import examples


def client_frame(payload: bytes, opcode: int = ws.OP_BINARY, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_accept_key_rfc_example() -> None:
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_takes_a_128_byte_key() -> None:
    # AWSIoTPythonSDK sends base64 of 128 random bytes
    key = "QUFB" * 43
    assert len(ws.accept_key(key)) == 28


def test_subprotocol_choice() -> None:
    assert ws.choose_subprotocol(["mqttv3.1"], ["mqtt", "mqttv3.1"]) == "mqttv3.1"
    assert ws.choose_subprotocol(["mqtt, other"], ["mqtt", "mqttv3.1"]) == "mqtt"
    assert ws.choose_subprotocol([], ["mqtt"]) is None


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 140000])
def test_frames_of_every_length_encoding(size: int) -> None:
    payload = os.urandom(size)
    decoder = ws.FrameDecoder(200_000)
    assert decoder.feed(client_frame(payload)) == [(ws.OP_BINARY, payload)]


def test_fragmented_message_and_interleaved_ping() -> None:
    decoder = ws.FrameDecoder(1000)
    data = (
        client_frame(b"ab", fin=False)
        + client_frame(b"p", opcode=ws.OP_PING)
        + client_frame(b"cd", opcode=ws.OP_CONTINUATION)
    )
    assert decoder.feed(data) == [(ws.OP_PING, b"p"), (ws.OP_BINARY, b"abcd")]


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.integers(1, 50))
@settings(max_examples=examples(200))
def test_any_chunking_gives_the_same_messages(payloads: list[bytes], step: int) -> None:
    stream = b"".join(client_frame(p) for p in payloads)
    decoder = ws.FrameDecoder(10_000)
    out = []
    for start in range(0, len(stream), step):
        out += decoder.feed(stream[start : start + step])
    assert out == [(ws.OP_BINARY, p) for p in payloads]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x82\x02ab", ws.CLOSE_PROTOCOL_ERROR),  # unmasked
        (b"\xc2\x80abcd", ws.CLOSE_PROTOCOL_ERROR),  # RSV1 without extension
        (b"\x83\x80abcd", ws.CLOSE_PROTOCOL_ERROR),  # unknown opcode
        (b"\x09\x80abcd", ws.CLOSE_PROTOCOL_ERROR),  # fragmented ping
        (b"\x80\x80abcd", ws.CLOSE_PROTOCOL_ERROR),  # continuation without start
        (b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", ws.CLOSE_PROTOCOL_ERROR),  # top bit
        (b"\x82\xfe\xff\xff", ws.CLOSE_MESSAGE_TOO_BIG),
    ],
)
def test_bad_frames(data: bytes, code: int) -> None:
    with pytest.raises(ws.WebSocketError) as raised:
        ws.FrameDecoder(1000).feed(data)
    assert raised.value.close_code == code


@given(st.binary(max_size=200))
@settings(max_examples=examples(300))
def test_garbage_only_raises_websocket_error(data: bytes) -> None:
    try:
        out = ws.FrameDecoder(1000).feed(data)
    except ws.WebSocketError as exc:
        assert exc.close_code in {ws.CLOSE_PROTOCOL_ERROR, ws.CLOSE_MESSAGE_TOO_BIG}
    else:
        assert all(isinstance(op, int) and isinstance(body, bytes) for op, body in out)


def test_parse_request_head() -> None:
    request = parse_request_head(
        b"GET /mqtt?X-Amz-Date=1&a=b HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket"
    )
    assert request.raw_path == "/mqtt" and request.raw_query == "X-Amz-Date=1&a=b"
    assert request.header("UPGRADE") == "websocket" and request.keep_alive


@pytest.mark.parametrize(
    "head",
    [b"GET /\r\n", b"GET mqtt HTTP/1.1", b"GET / HTTP/1.1\r\nno colon", b"G3T / HTTP/1.1"],
)
def test_bad_request_heads(head: bytes) -> None:
    with pytest.raises(HttpError) as raised:
        parse_request_head(head)
    assert raised.value.status == 400 and raised.value.message


def test_error_body_shape() -> None:
    response = error_response(403, "signature_mismatch", "The signature does not match.")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden")
    assert json.loads(body) == {
        "error": "signature_mismatch",
        "message": "The signature does not match.",
    }

"""The event stream binary format: encode, incremental decode, and every malformed input."""

from __future__ import annotations

import contextlib
import random
import struct
import uuid
import zlib

import pytest

from infra.local.greengrass import eventstream as es
from infra.local.greengrass.eventstream import Header, HeaderType, Message

EVERY_TYPE = (
    Header("t", HeaderType.BOOL_TRUE, True),
    Header("f", HeaderType.BOOL_FALSE, False),
    Header("byte", HeaderType.BYTE, -128),
    Header("short", HeaderType.INT16, 32767),
    Header(":stream-id", HeaderType.INT32, -(2**31)),
    Header("long", HeaderType.INT64, 2**63 - 1),
    Header("buf", HeaderType.BYTE_BUF, b"\x00\xff"),
    Header("service-model-type", HeaderType.STRING, "aws.greengrass#IoTCoreMessage ✓"),
    Header("when", HeaderType.TIMESTAMP, 1_764_384_000_000),
    Header("id", HeaderType.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
)


def test_a_published_vector_decodes() -> None:
    # {"foo": "bar"} without headers, as the AWS event stream documentation's examples encode it
    wire = bytes(
        [0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138, *list(b'{"foo": "bar"}'), 174, 114, 88, 228]
    )
    assert es.decode(wire) == Message((), b'{"foo": "bar"}')
    assert es.encode(Message((), b'{"foo": "bar"}')) == wire


def test_every_header_type_round_trips() -> None:
    message = Message(EVERY_TYPE, b"payload")
    assert es.decode(es.encode(message)) == message


def test_the_prelude_and_crcs() -> None:
    wire = es.encode(Message((Header.string("a", "b"),), b"xyz"))
    total, headers_length, prelude_crc = struct.unpack_from(">III", wire)
    assert total == len(wire) == 16 + headers_length + 3
    assert headers_length == 1 + 1 + 1 + 2 + 1
    assert prelude_crc == zlib.crc32(wire[:8])
    assert struct.unpack(">I", wire[-4:])[0] == zlib.crc32(wire[:-4])


def test_the_decoder_is_incremental() -> None:
    messages = [Message(EVERY_TYPE[: i + 1], bytes([i]) * i) for i in range(len(EVERY_TYPE))]
    wire = b"".join(es.encode(m) for m in messages)
    decoder = es.Decoder()
    out: list[Message] = []
    for byte in wire:
        out += decoder.feed(bytes([byte]))
    assert out == messages
    assert decoder.pending == 0
    assert es.Decoder().feed(wire) == messages


def test_rpc_fields() -> None:
    message = es.rpc_message(
        es.MessageType.CONNECT_ACK, stream_id=7, flags=es.MessageFlag.CONNECTION_ACCEPTED
    )
    fields = es.rpc_fields(es.decode(es.encode(message)))
    assert fields == es.RpcFields(es.MessageType.CONNECT_ACK, es.MessageFlag.CONNECTION_ACCEPTED, 7)


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (Header.int32(es.MESSAGE_TYPE, 0), Header.int32(es.MESSAGE_FLAGS, 0)),
        (
            Header.string(es.MESSAGE_TYPE, "0"),
            Header.int32(es.MESSAGE_FLAGS, 0),
            Header.int32(es.STREAM_ID, 0),
        ),
        (
            Header.int32(es.MESSAGE_TYPE, 99),
            Header.int32(es.MESSAGE_FLAGS, 0),
            Header.int32(es.STREAM_ID, 0),
        ),
    ],
)
def test_rpc_fields_missing_or_wrong_are_malformed(headers: tuple[Header, ...]) -> None:
    with pytest.raises(es.MalformedMessage):
        es.rpc_fields(Message(headers))


@pytest.mark.parametrize(
    "header",
    [
        Header("", HeaderType.STRING, "x"),
        Header("n" * 128, HeaderType.STRING, "x"),
        Header("n", HeaderType.BYTE, 128),
        Header("n", HeaderType.INT16, -(2**15) - 1),
        Header("n", HeaderType.INT32, 2**31),
        Header("n", HeaderType.INT32, True),
        Header("n", HeaderType.INT64, "1"),
        Header("n", HeaderType.STRING, b"bytes"),
        Header("n", HeaderType.BYTE_BUF, "text"),
        Header("n", HeaderType.BYTE_BUF, b"x" * 65536),
        Header("n", HeaderType.BOOL_TRUE, False),
        Header("n", HeaderType.UUID, "not a uuid"),
    ],
)
def test_unencodable_headers(header: Header) -> None:
    with pytest.raises(es.EventStreamError):
        es.encode(Message((header,)))


def test_encode_bounds() -> None:
    with pytest.raises(es.EventStreamError, match="over 100"):
        es.encode(Message(payload=b"x" * 85), max_size=100)
    es.encode(Message(payload=b"x" * 84), max_size=100)
    too_many = tuple(Header.string(f"h{i}", "v" * 60000) for i in range(3))
    with pytest.raises(es.EventStreamError, match="headers take"):
        es.encode(Message(too_many))


def _with_crcs(prelude: bytes, body: bytes) -> bytes:
    """A message with correct CRCs around whatever prelude and body."""
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    return head + body + struct.pack(">I", zlib.crc32(head + body))


def _headers_message(headers: bytes, payload: bytes = b"") -> bytes:
    total = 16 + len(headers) + len(payload)
    return _with_crcs(struct.pack(">II", total, len(headers)), headers + payload)


GOOD = es.encode(Message(EVERY_TYPE, b"payload"))

MALFORMED = {
    "prelude crc": GOOD[:8] + bytes([GOOD[8] ^ 1]) + GOOD[9:],
    "message crc": GOOD[:-1] + bytes([GOOD[-1] ^ 1]),
    "payload bit flip": GOOD[:-6] + bytes([GOOD[-6] ^ 0x80]) + GOOD[-5:],
    "total below 16": _with_crcs(struct.pack(">II", 15, 0), b""),
    "headers longer than the message": _with_crcs(struct.pack(">II", 20, 5), b"abcd"),
    "headers over 128 KiB": _with_crcs(struct.pack(">II", 200_000, 140_000), b""),
    "unknown header type": _headers_message(b"\x01n\x0a"),
    "empty header name": _headers_message(b"\x00\x07\x00\x00"),
    "name past the headers": _headers_message(b"\x05ab"),
    "type missing": _headers_message(b"\x01n"),
    "string past the headers": _headers_message(b"\x01n\x07\x00\x09abc"),
    "int32 cut short": _headers_message(b"\x01n\x04\x00\x00"),
    "uuid cut short": _headers_message(b"\x01n\x09" + b"\x00" * 15),
    "name not utf-8": _headers_message(b"\x01\xff\x00"),
    "string not utf-8": _headers_message(b"\x01n\x07\x00\x01\xff"),
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise_malformed_message(wire: bytes) -> None:
    with pytest.raises(es.MalformedMessage):
        es.Decoder().feed(wire)


def test_oversized_is_refused_from_the_prelude() -> None:
    decoder = es.Decoder(max_message_size=1024)
    prelude = struct.pack(">II", 1025, 0)
    with pytest.raises(es.MessageTooLarge):
        decoder.feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    with pytest.raises(es.MalformedMessage, match="already malformed"):
        decoder.feed(es.encode(Message()))


@pytest.mark.parametrize("cut", [0, 1, 11, 12, 20, len(GOOD) - 1])
def test_truncations_wait_and_decode_refuses(cut: int) -> None:
    decoder = es.Decoder()
    assert decoder.feed(GOOD[:cut]) == []
    assert decoder.pending == cut
    with pytest.raises(es.MalformedMessage):
        es.decode(GOOD[:cut])
    assert decoder.feed(GOOD[cut:]) == [Message(EVERY_TYPE, b"payload")]


def test_decode_refuses_trailing_bytes() -> None:
    with pytest.raises(es.MalformedMessage):
        es.decode(GOOD + GOOD[:3])


def _random_header(rng: random.Random, index: int) -> Header:
    kind = rng.choice(list(HeaderType))
    name = f"h{index}-" + "x" * rng.randrange(0, 20)
    value: es.HeaderValue
    if kind is HeaderType.BOOL_TRUE:
        value = True
    elif kind is HeaderType.BOOL_FALSE:
        value = False
    elif kind is HeaderType.BYTE_BUF:
        value = rng.randbytes(rng.randrange(0, 40))
    elif kind is HeaderType.STRING:
        value = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 20)))
    elif kind is HeaderType.UUID:
        value = uuid.UUID(bytes=rng.randbytes(16))
    else:
        bits = {HeaderType.BYTE: 8, HeaderType.INT16: 16, HeaderType.INT32: 32}.get(kind, 64)
        value = rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1))
    return Header(name, kind, value)


def test_fuzz_round_trips_and_mutations() -> None:
    rng = random.Random(20261129)
    for _ in range(300):
        message = Message(
            tuple(_random_header(rng, i) for i in range(rng.randrange(0, 8))),
            rng.randbytes(rng.randrange(0, 200)),
        )
        wire = es.encode(message)
        assert es.decode(wire) == message
        mutated = bytearray(wire)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        if mutated == wire:  # the same bit flipped twice
            continue
        # a CRC32 catches every 1-3 bit change in these short messages
        with pytest.raises(es.MalformedMessage):
            es.decode(bytes(mutated))


def test_fuzz_random_bytes_only_raise_malformed_message() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 64))
        if rng.random() < 0.5 and len(data) >= 8:
            # a valid prelude CRC, so the fuzz reaches the lengths and the headers
            prelude = struct.pack(">II", len(data) + 8, rng.randrange(0, len(data) + 1))
            data = _with_crcs(prelude, data[: len(data) - 8])
        with contextlib.suppress(es.MalformedMessage):
            es.Decoder(max_message_size=4096).feed(data)


def test_fuzz_valid_crcs_random_headers_only_raise_malformed_message() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        headers = rng.randbytes(rng.randrange(0, 40))
        with contextlib.suppress(es.MalformedMessage):
            es.decode(_headers_message(headers, rng.randbytes(rng.randrange(0, 4))))

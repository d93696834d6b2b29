"""The AWS event stream binary message format, and the RPC conventions on top of it.

A message is ``prelude | prelude CRC | headers | payload | message CRC``: the prelude is the
total length and the headers' length (two big-endian uint32), each CRC a big-endian CRC32
(the gzip one) — the prelude CRC over the 8 prelude bytes, the message CRC over every byte
before it. 16 bytes of overhead. A header is ``name length (uint8) | name (UTF-8) | type
(uint8) | value``; the value's shape follows the type (:class:`HeaderType`). Limits as in
aws-c-event-stream: 16 MiB per message, 128 KiB of headers, 127-byte header names.

Event stream RPC (what Greengrass IPC speaks) names each message with three int32 headers —
``:message-type`` (:class:`MessageType`), ``:message-flags`` (:class:`MessageFlag`) and
``:stream-id`` (0 for the connection, then one per operation) — plus ``operation`` on a
stream's first message, ``service-model-type`` and ``:content-type`` on application messages.

Errors (all :class:`EventStreamError`)::

    EventStreamError            a message that cannot be encoded (a value out of range ...)
    └── MalformedMessage        bytes that are not a valid message (decoding)
        └── MessageTooLarge     a prelude announcing more than the decoder accepts
"""

from __future__ import annotations

import enum
import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "CONTENT_TYPE",
    "CONTENT_TYPE_JSON",
    "MAX_HEADERS_SIZE",
    "MAX_MESSAGE_SIZE",
    "MESSAGE_FLAGS",
    "MESSAGE_TYPE",
    "OPERATION",
    "SERVICE_MODEL_TYPE",
    "STREAM_ID",
    "VERSION",
    "VERSION_STRING",
    "Decoder",
    "EventStreamError",
    "Header",
    "HeaderType",
    "MalformedMessage",
    "Message",
    "MessageFlag",
    "MessageTooLarge",
    "MessageType",
    "RpcFields",
    "decode",
    "encode",
    "rpc_fields",
    "rpc_message",
]

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_HEADERS_SIZE = 128 * 1024
MAX_HEADER_NAME = 127
_PRELUDE = struct.Struct(">III")
_OVERHEAD = _PRELUDE.size + 4

MESSAGE_TYPE = ":message-type"
MESSAGE_FLAGS = ":message-flags"
STREAM_ID = ":stream-id"
OPERATION = "operation"
SERVICE_MODEL_TYPE = "service-model-type"
CONTENT_TYPE = ":content-type"
CONTENT_TYPE_JSON = "application/json"
VERSION = ":version"
VERSION_STRING = "0.1.0"


class EventStreamError(ValueError):
    """A message that cannot be encoded or decoded."""


class MalformedMessage(EventStreamError):
    """Bytes that are not a valid event stream message."""


class MessageTooLarge(MalformedMessage):
    """A message longer than the limit (its prelude says so before it arrives)."""


class HeaderType(enum.IntEnum):
    """A header value's wire type."""

    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTE_BUF = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


class MessageType(enum.IntEnum):
    """``:message-type`` of event stream RPC."""

    APPLICATION_MESSAGE = 0
    APPLICATION_ERROR = 1
    PING = 2
    PING_RESPONSE = 3
    CONNECT = 4
    CONNECT_ACK = 5
    PROTOCOL_ERROR = 6
    INTERNAL_ERROR = 7


class MessageFlag(enum.IntFlag):
    """``:message-flags`` of event stream RPC."""

    NONE = 0
    CONNECTION_ACCEPTED = 1
    TERMINATE_STREAM = 2


HeaderValue = bool | int | bytes | str | uuid.UUID

_INT_RANGES = {
    HeaderType.BYTE: (">b", -(2**7), 2**7 - 1),
    HeaderType.INT16: (">h", -(2**15), 2**15 - 1),
    HeaderType.INT32: (">i", -(2**31), 2**31 - 1),
    HeaderType.INT64: (">q", -(2**63), 2**63 - 1),
    HeaderType.TIMESTAMP: (">q", -(2**63), 2**63 - 1),
}


@dataclass(frozen=True)
class Header:
    """One typed header. ``TIMESTAMP`` values are milliseconds since the epoch (an int)."""

    name: str
    type: HeaderType
    value: HeaderValue

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name, HeaderType.STRING, value)

    @classmethod
    def int32(cls, name: str, value: int) -> Header:
        return cls(name, HeaderType.INT32, value)

    @classmethod
    def boolean(cls, name: str, value: bool) -> Header:
        return cls(name, HeaderType.BOOL_TRUE if value else HeaderType.BOOL_FALSE, value)


@dataclass(frozen=True)
class Message:
    """Headers (in wire order) and a payload."""

    headers: tuple[Header, ...] = ()
    payload: bytes = b""

    def header(self, name: str) -> Header | None:
        """The first header with this name (case-insensitive), or ``None``."""
        lowered = name.lower()
        for header in self.headers:
            if header.name.lower() == lowered:
                return header
        return None

    def string(self, name: str) -> str | None:
        """The value of a ``STRING`` header, ``None`` when absent or of another type."""
        header = self.header(name)
        if header is None or header.type is not HeaderType.STRING:
            return None
        assert isinstance(header.value, str)
        return header.value


def _encode_header(header: Header) -> bytes:
    name = header.name.encode("utf-8")
    if not 1 <= len(name) <= MAX_HEADER_NAME:
        raise EventStreamError(f"header name {header.name!r} must be 1-{MAX_HEADER_NAME} bytes")
    head = bytes([len(name)]) + name + bytes([header.type])
    kind, value = header.type, header.value
    if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        if value is not (kind is HeaderType.BOOL_TRUE):
            raise EventStreamError(f"header {header.name!r}: type {kind.name} with value {value!r}")
        return head
    if kind in _INT_RANGES:
        fmt, low, high = _INT_RANGES[kind]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise EventStreamError(f"header {header.name!r}: {value!r} is not a {kind.name}")
        return head + struct.pack(fmt, value)
    if kind in (HeaderType.BYTE_BUF, HeaderType.STRING):
        if kind is HeaderType.STRING and isinstance(value, str):
            data = value.encode("utf-8")
        elif kind is HeaderType.BYTE_BUF and isinstance(value, bytes):
            data = value
        else:
            raise EventStreamError(f"header {header.name!r}: {value!r} is not a {kind.name}")
        if len(data) > 0xFFFF:
            raise EventStreamError(f"header {header.name!r}: value longer than 65535 bytes")
        return head + struct.pack(">H", len(data)) + data
    if kind is HeaderType.UUID and isinstance(value, uuid.UUID):
        return head + value.bytes
    raise EventStreamError(f"header {header.name!r}: {value!r} is not a {kind.name}")


def encode(message: Message, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """The wire bytes of ``message``; :class:`EventStreamError` when it cannot be sent."""
    headers = b"".join(_encode_header(header) for header in message.headers)
    if len(headers) > MAX_HEADERS_SIZE:
        raise EventStreamError(f"headers take {len(headers)} bytes, over {MAX_HEADERS_SIZE}")
    total = _OVERHEAD + len(headers) + len(message.payload)
    if total > max_size:
        raise EventStreamError(f"the message would be {total} bytes, over {max_size}")
    prelude = struct.pack(">II", total, len(headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + message.payload
    return body + struct.pack(">I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def take(self, count: int, what: str) -> bytes:
        end = self._at + count
        if end > len(self._data):
            raise MalformedMessage(f"headers end inside {what}")
        chunk, self._at = self._data[self._at : end], end
        return chunk

    @property
    def done(self) -> bool:
        return self._at >= len(self._data)


def _decode_headers(data: bytes) -> tuple[Header, ...]:
    reader, headers = _Reader(data), []
    while not reader.done:
        (name_length,) = reader.take(1, "a header name length")
        if name_length == 0:
            raise MalformedMessage("a header has an empty name")
        try:
            name = reader.take(name_length, "a header name").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("a header name is not UTF-8") from exc
        (type_code,) = reader.take(1, f"header {name!r}'s type")
        try:
            kind = HeaderType(type_code)
        except ValueError:
            raise MalformedMessage(f"header {name!r} has unknown type {type_code}") from None
        value: HeaderValue
        if kind is HeaderType.BOOL_TRUE:
            value = True
        elif kind is HeaderType.BOOL_FALSE:
            value = False
        elif kind in _INT_RANGES:
            fmt = _INT_RANGES[kind][0]
            (value,) = struct.unpack(fmt, reader.take(struct.calcsize(fmt), f"header {name!r}"))
        elif kind is HeaderType.UUID:
            value = uuid.UUID(bytes=reader.take(16, f"header {name!r}"))
        else:
            (length,) = struct.unpack(">H", reader.take(2, f"header {name!r}'s length"))
            raw = reader.take(length, f"header {name!r}'s value")
            if kind is HeaderType.STRING:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise MalformedMessage(f"header {name!r} is not UTF-8") from exc
            else:
                value = raw
        headers.append(Header(name, kind, value))
    return tuple(headers)


@dataclass
class Decoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, get the complete messages.

    After a :class:`MalformedMessage` the stream has lost its framing; the decoder refuses
    further input (close the connection).
    """

    max_message_size: int = MAX_MESSAGE_SIZE
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _failed: bool = field(default=False, repr=False)

    def feed(self, data: bytes) -> list[Message]:
        if self._failed:
            raise MalformedMessage("the stream was already malformed")
        self._buffer += data
        messages: list[Message] = []
        try:
            while (message := self._next()) is not None:
                messages.append(message)
        except MalformedMessage:
            self._failed = True
            raise
        return messages

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a message."""
        return len(self._buffer)

    def _next(self) -> Message | None:
        buffer = self._buffer
        if len(buffer) < _PRELUDE.size:
            return None
        total, headers_length, prelude_crc = _PRELUDE.unpack_from(buffer)
        if zlib.crc32(buffer[:8]) != prelude_crc:
            raise MalformedMessage("prelude CRC mismatch")
        if total < _OVERHEAD:
            raise MalformedMessage(f"total length {total} is below the 16-byte minimum")
        if total > self.max_message_size:
            raise MessageTooLarge(f"a {total}-byte message, over {self.max_message_size}")
        if headers_length > MAX_HEADERS_SIZE or headers_length > total - _OVERHEAD:
            raise MalformedMessage(f"headers length {headers_length} does not fit")
        if len(buffer) < total:
            return None
        frame = bytes(buffer[:total])
        del buffer[:total]
        (message_crc,) = struct.unpack_from(">I", frame, total - 4)
        if zlib.crc32(frame[: total - 4]) != message_crc:
            raise MalformedMessage("message CRC mismatch")
        start = _PRELUDE.size
        headers = _decode_headers(frame[start : start + headers_length])
        return Message(headers, frame[start + headers_length : total - 4])


def decode(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Exactly one message from ``data``; :class:`MalformedMessage` otherwise."""
    decoder = Decoder(max_size)
    messages = decoder.feed(data)
    if len(messages) != 1 or decoder.pending:
        raise MalformedMessage(
            f"expected one whole message, got {len(messages)} and {decoder.pending} bytes over"
        )
    return messages[0]


@dataclass(frozen=True)
class RpcFields:
    """The RPC headers every event stream RPC message carries."""

    message_type: MessageType
    flags: MessageFlag
    stream_id: int


def rpc_fields(message: Message) -> RpcFields:
    """``:message-type``, ``:message-flags`` and ``:stream-id``; missing ones are malformed."""
    values: list[int] = []
    for name in (MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID):
        header = message.header(name)
        if header is None or header.type is not HeaderType.INT32:
            raise MalformedMessage(f"an RPC message needs an int32 {name} header")
        assert isinstance(header.value, int)
        values.append(header.value)
    try:
        message_type = MessageType(values[0])
    except ValueError:
        raise MalformedMessage(f"unknown {MESSAGE_TYPE} {values[0]}") from None
    return RpcFields(message_type, MessageFlag(values[1] & 3), values[2])


def rpc_message(
    message_type: MessageType,
    *,
    stream_id: int = 0,
    flags: MessageFlag = MessageFlag.NONE,
    headers: Iterable[Header] = (),
    payload: bytes = b"",
) -> Message:
    """An RPC message: the three RPC headers, then ``headers``."""
    rpc = (
        Header.int32(MESSAGE_TYPE, int(message_type)),
        Header.int32(MESSAGE_FLAGS, int(flags)),
        Header.int32(STREAM_ID, stream_id),
    )
    return Message(rpc + tuple(headers), payload)

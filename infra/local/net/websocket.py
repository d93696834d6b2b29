"""WebSocket (RFC 6455) handshake and framing for the server side, without I/O.

Only what an MQTT-over-WebSocket endpoint needs: binary messages, ping/pong, close.
Extensions (permessage-deflate) are declined, as RFC 6455 allows.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence

__all__ = [
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameDecoder",
    "WebSocketError",
    "accept_key",
    "choose_subprotocol",
    "encode_binary",
    "encode_close",
    "encode_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008
CLOSE_MESSAGE_TOO_BIG = 1009

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})


class WebSocketError(Exception):
    """A frame the server must refuse; ``close_code`` is the RFC 6455 status to send."""

    def __init__(self, close_code: int, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.message = message


def accept_key(client_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``.

    The key is used as sent: AWSIoTPythonSDK sends 128 random bytes base64-encoded instead of
    the 16 the RFC asks for, and AWS IoT accepts it, so this does too.
    """
    digest = hashlib.sha1(client_key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def choose_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first supported subprotocol the client offered, in the server's order."""
    wanted = {p.strip().lower() for item in offered for p in item.split(",") if p.strip()}
    for protocol in supported:
        if protocol.lower() in wanted:
            return protocol
    return None


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


def encode_binary(payload: bytes) -> bytes:
    """A binary server frame (the carrier of MQTT bytes)."""
    length = len(payload)
    if length < 126:
        return bytes((0x82, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x82, 126, length) + payload
    return struct.pack("!BBQ", 0x82, 127, length) + payload


def encode_close(code: int, reason: str = "") -> bytes:
    """A close frame with a status code and a short reason (truncated to fit 125 bytes)."""
    body = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    return encode_frame(OP_CLOSE, body)


class FrameDecoder:
    """Turns the client's byte stream into complete messages.

    ``feed`` returns ``(opcode, payload)`` pairs: data messages reassembled from fragments
    (``OP_BINARY`` or ``OP_TEXT``) and control frames as they come. Client frames must be
    masked; anything malformed raises :class:`WebSocketError` and the decoder must not be fed
    again.
    """

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: int | None = None
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return every message completed by them."""
        buffer = self._buffer
        buffer += data
        out: list[tuple[int, bytes]] = []
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            first = buffer[offset]
            second = buffer[offset + 1]
            if first & 0x70:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
            if not second & 0x80:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - offset < 4:
                    break
                length = (buffer[offset + 2] << 8) | buffer[offset + 3]
                header = 4
            elif length == 127:
                if size - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                header = 10
                if length >> 63:
                    raise WebSocketError(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
            opcode = first & 0x0F
            fin = bool(first & 0x80)
            if opcode in _CONTROL_OPCODES:
                if length > 125 or not fin:
                    raise WebSocketError(
                        CLOSE_PROTOCOL_ERROR, "control frames must be final and at most 125 bytes"
                    )
            elif opcode not in _DATA_OPCODES:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if length + self._fragment_size > self.max_message_size:
                raise WebSocketError(
                    CLOSE_MESSAGE_TOO_BIG,
                    f"message larger than {self.max_message_size} bytes",
                )
            end = offset + header + 4 + length
            if end > size:
                break
            mask = bytes(buffer[offset + header : offset + header + 4])
            payload = _unmask(bytes(buffer[offset + header + 4 : end]), mask)
            offset = end
            if opcode in _CONTROL_OPCODES:
                out.append((opcode, payload))
                continue
            if opcode == OP_CONTINUATION:
                if self._fragment_opcode is None:
                    raise WebSocketError(CLOSE_PROTOCOL_ERROR, "continuation without a start")
            elif self._fragment_opcode is not None:
                raise WebSocketError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            else:
                if fin:
                    out.append((opcode, payload))
                    continue
                self._fragment_opcode = opcode
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if fin:
                assert self._fragment_opcode is not None
                out.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments = []
                self._fragment_opcode = None
                self._fragment_size = 0
        if offset:
            del buffer[:offset]
        return out


def _unmask(payload: bytes, mask: bytes) -> bytes:
    length = len(payload)
    if not length:
        return payload
    repeated = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")

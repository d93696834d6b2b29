"""The wire's building blocks, shared by every packet family.

Packet types, the reason codes of :class:`MalformedPacket`, the largest remaining length, and the
encoding of integers, variable byte integers, UTF-8 strings, binary data, packet identifiers
and the fixed header. Decoding the same shapes is the job of ``_reader``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the union of every packet family, for MalformedPacket.packets only
    from infra.local.iot.mqtt_codec._dispatch import Packet


class PacketType(enum.IntEnum):
    """MQTT control packet types: the high nibble of a packet's first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


REASON_MALFORMED_PACKET: Final = 0x81
REASON_PROTOCOL_ERROR: Final = 0x82
REASON_UNSUPPORTED_PROTOCOL_VERSION: Final = 0x84
REASON_PACKET_TOO_LARGE: Final = 0x95

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest remaining length a four-byte variable byte integer can express."""


class MalformedPacket(Exception):
    """Received bytes that are not a valid MQTT packet; the connection cannot go on.

    ``reason_code`` is the MQTT 5 reason to send before closing: 0x81 Malformed Packet,
    0x82 Protocol Error, 0x84 Unsupported Protocol Version (CONNECT only) or 0x95 Packet too
    large. ``message`` says what was wrong in words a person can act on; ``packet_type`` is
    the type of the offending packet when the first byte was readable. ``packets`` holds the
    valid packets decoded earlier in the same :meth:`PacketDecoder.feed` call, so the broker
    may still act on them.
    """

    def __init__(
        self, reason_code: int, message: str, packet_type: PacketType | None = None
    ) -> None:
        super().__init__(message if packet_type is None else f"{packet_type.name}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.packet_type = packet_type
        self.packets: list[Packet] = []


# --------------------------------------------------------------------------------------------
# Encoding

_SMALL_VARINTS: Final = tuple(bytes((n,)) for n in range(0x80))


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{value} does not fit a variable byte integer (0 to 268435455)")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(value: int, size: int, what: str) -> bytes:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{what} is {value}; it must fit {size} byte(s) unsigned")
    return value.to_bytes(size, "big")


def _binary(data: bytes, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > 0xFFFF:
        raise ValueError(f"{what} is {len(data)} bytes; at most 65535 fit")
    return len(data).to_bytes(2, "big") + bytes(data)


def _utf8(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if "\x00" in text:
        raise ValueError(f"{what} contains U+0000, which MQTT forbids")
    raw = text.encode("utf-8")  # raises UnicodeEncodeError (a ValueError) on lone surrogates
    if len(raw) > 0xFFFF:
        raise ValueError(f"{what} is {len(raw)} bytes of UTF-8; at most 65535 fit")
    return len(raw).to_bytes(2, "big") + raw


def _packet_id(packet_id: int | None) -> bytes:
    if packet_id is None or isinstance(packet_id, bool) or not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier is {packet_id!r}; it must be 1 to 65535")
    return packet_id.to_bytes(2, "big")


def _qos(qos: int, what: str) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"{what} is {qos!r}; it must be 0, 1 or 2")
    return qos


def _frame(first: int, body: bytes | bytearray) -> bytes:
    if len(body) > MAX_REMAINING_LENGTH:
        raise ValueError(f"the packet body is {len(body)} bytes; MQTT allows at most 268435455")
    return bytes((first,)) + _varint(len(body)) + body

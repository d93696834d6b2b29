"""From packet type to packet family: the :data:`Packet` union, :class:`PacketDecoder` (the
incremental decoder that frames a connection's byte stream and hands each body to its family's
decoder) and :func:`encode` for any packet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from infra.local.iot.mqtt_codec._connection import (
    _CONNACK_V3_CODES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    _decode_auth,
    _decode_connack,
    _decode_connect,
    _decode_disconnect,
    _decode_pingreq,
    _decode_pingresp,
    _encode_connect,
    _encode_reason_only,
)
from infra.local.iot.mqtt_codec._primitives import (
    REASON_MALFORMED_PACKET,
    REASON_PACKET_TOO_LARGE,
    REASON_PROTOCOL_ERROR,
    MalformedPacket,
    PacketType,
    _frame,
    _int,
    _packet_id,
    _utf8,
)
from infra.local.iot.mqtt_codec._properties import _properties
from infra.local.iot.mqtt_codec._publish import (
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    _decode_puback,
    _decode_pubcomp,
    _decode_publish,
    _decode_pubrec,
    _decode_pubrel,
    _encode_ack,
    encode_publish,
)
from infra.local.iot.mqtt_codec._reader import _Reader
from infra.local.iot.mqtt_codec._subscribe import (
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    _decode_suback,
    _decode_subscribe,
    _decode_unsuback,
    _decode_unsubscribe,
    _subscription_options,
)

Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
"""Any decoded MQTT packet."""


# --------------------------------------------------------------------------------------------
# Decoding

_TYPES: Final[tuple[PacketType | None, ...]] = (None, *PacketType)

_REQUIRED_FLAGS: Final[dict[PacketType, int]] = {
    t: (0b0010 if t in (PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE) else 0)
    for t in PacketType
}


_DECODERS: Final[dict[PacketType, Callable[[_Reader, int, bool], Packet]]] = {
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: _decode_puback,
    PacketType.PUBREC: _decode_pubrec,
    PacketType.PUBREL: _decode_pubrel,
    PacketType.PUBCOMP: _decode_pubcomp,
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_unsuback,
    PacketType.PINGREQ: _decode_pingreq,
    PacketType.PINGRESP: _decode_pingresp,
    PacketType.DISCONNECT: _decode_disconnect,
    PacketType.AUTH: _decode_auth,
}


class PacketDecoder:
    """Turns the byte stream of one connection into packets, whatever the chunking.

    The stream must start with CONNECT unless ``protocol_level`` is given (as a client-side
    decoder would, or a test); the CONNECT's level then selects the wire format. Packets of
    every type decode in either direction — refusing a client's CONNACK is the broker's call.

    ``max_packet_size`` bounds the whole packet (fixed header included): a larger one is
    refused as soon as its fixed header arrives, before any of its body is buffered. After
    :meth:`feed` has raised, the decoder stays failed: every later call raises the same error
    again (with no ``packets``).
    """

    def __init__(
        self, max_packet_size: int = 268_435_455, protocol_level: int | None = None
    ) -> None:
        if max_packet_size < 2:
            raise ValueError(f"max_packet_size must be at least 2, not {max_packet_size}")
        if protocol_level not in (None, 3, 4, 5):
            raise ValueError(f"protocol_level must be 3, 4, 5 or None, not {protocol_level}")
        self.max_packet_size = max_packet_size
        self.protocol_level: int | None = protocol_level
        self._buffer = bytearray()
        self._error: MalformedPacket | None = None

    @property
    def has_partial_packet(self) -> bool:
        """True while bytes of an incomplete packet are buffered."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return every packet they complete, in order.

        Raises :class:`MalformedPacket` at the first invalid packet; its ``packets`` attribute
        holds the packets completed before it in this call.
        """
        error = self._error
        if error is not None:
            raise MalformedPacket(error.reason_code, error.message, error.packet_type)
        buffer = self._buffer
        buffer += data
        packets: list[Packet] = []
        pos = 0
        size = len(buffer)
        try:
            while pos < size:
                header = self._fixed_header(buffer, pos, size)
                if header is None:
                    break
                packet_type, flags, body_start, body_end = header
                if body_end > size:
                    break
                with memoryview(buffer) as view:
                    body = view[body_start:body_end].tobytes()
                pos = body_end
                reader = _Reader(body, packet_type)
                if packet_type is PacketType.CONNECT:
                    connect = _decode_connect(reader)
                    self.protocol_level = connect.protocol_level
                    packets.append(connect)
                else:
                    packets.append(_DECODERS[packet_type](reader, flags, self.protocol_level == 5))
        except MalformedPacket as exc:
            exc.packets = packets
            self._error = exc
            self._buffer = bytearray()
            raise
        del buffer[:pos]
        return packets

    def _fixed_header(
        self, buffer: bytearray, pos: int, size: int
    ) -> tuple[PacketType, int, int, int] | None:
        """Check the fixed header at ``pos``; None while it is incomplete."""
        first = buffer[pos]
        packet_type = _TYPES[first >> 4]
        flags = first & 0x0F
        if packet_type is None:
            raise MalformedPacket(
                REASON_MALFORMED_PACKET, "packet type 0 is reserved and never valid"
            )
        level = self.protocol_level
        if level is None:
            if packet_type is not PacketType.CONNECT:
                raise MalformedPacket(
                    REASON_PROTOCOL_ERROR,
                    f"first packet must be CONNECT, not {packet_type.name}",
                    packet_type,
                )
        elif packet_type is PacketType.CONNECT:
            raise MalformedPacket(
                REASON_PROTOCOL_ERROR,
                "a second CONNECT on the same connection is a protocol error",
                packet_type,
            )
        elif packet_type is PacketType.AUTH and level != 5:
            raise MalformedPacket(
                REASON_MALFORMED_PACKET,
                "packet type 15 (AUTH) exists only in MQTT 5; it is reserved in MQTT 3.1.1",
                packet_type,
            )
        if packet_type is PacketType.PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise MalformedPacket(
                    REASON_MALFORMED_PACKET,
                    "both QoS bits are set (QoS 3); QoS must be 0, 1 or 2",
                    packet_type,
                )
            if qos == 0 and flags & 0x08 and level == 5:
                raise MalformedPacket(
                    REASON_PROTOCOL_ERROR,
                    "the DUP flag is set on a QoS 0 message; it must be 0",
                    packet_type,
                )
        elif flags != _REQUIRED_FLAGS[packet_type]:
            raise MalformedPacket(
                REASON_MALFORMED_PACKET,
                f"the fixed-header flags are 0b{flags:04b}; they must be "
                f"0b{_REQUIRED_FLAGS[packet_type]:04b}",
                packet_type,
            )
        remaining = 0
        index = pos + 1
        for shift in (0, 7, 14, 21):
            if index >= size:
                return None
            byte = buffer[index]
            index += 1
            remaining |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        else:
            raise MalformedPacket(
                REASON_MALFORMED_PACKET, "remaining length uses more than 4 bytes", packet_type
            )
        total = index - pos + remaining
        if total > self.max_packet_size:
            raise MalformedPacket(
                REASON_PACKET_TOO_LARGE,
                f"the packet is {total} bytes; the limit is {self.max_packet_size}",
                packet_type,
            )
        return packet_type, flags, index, index + remaining


# --------------------------------------------------------------------------------------------
# Encoding


def encode(packet: Packet, protocol_level: int) -> bytes:
    """Encode any packet for a connection speaking ``protocol_level`` (3, 4 or 5).

    For 3 and 4, what MQTT 3.1.1 cannot carry is left out: properties, reason codes of
    acknowledgements, UNSUBACK and DISCONNECT, and subscription options other than QoS.
    CONNACK and SUBACK failure codes are mapped to 3.1.1 return codes (see :class:`Connack`,
    :class:`Suback`). Raises ValueError or TypeError for a packet that cannot be encoded,
    such as AUTH below level 5 or a property not allowed in the packet.
    """
    if protocol_level not in (3, 4, 5):
        raise ValueError(f"protocol level must be 3, 4 or 5, not {protocol_level!r}")
    v5 = protocol_level == 5
    match packet:
        case Publish():
            return encode_publish(
                packet.topic,
                packet.payload,
                packet.qos,
                packet.packet_id,
                protocol_level,
                packet.retain,
                packet.dup,
                packet.properties,
            )
        case Puback():
            return _encode_ack(0x40, "PUBACK", packet, v5)
        case Pubrec():
            return _encode_ack(0x50, "PUBREC", packet, v5)
        case Pubrel():
            return _encode_ack(0x62, "PUBREL", packet, v5)
        case Pubcomp():
            return _encode_ack(0x70, "PUBCOMP", packet, v5)
        case Connect():
            return _encode_connect(packet, protocol_level)
        case Connack():
            reason = _int(packet.reason_code, 1, "reason code")[0]
            if not v5 and reason >= 0x80:
                reason = _CONNACK_V3_CODES.get(reason, 3)
            body = bytearray((1 if packet.session_present else 0, reason))
            if v5:
                body += _properties(packet.properties, "CONNACK")
            return _frame(0x20, body)
        case Subscribe():
            body = bytearray(_packet_id(packet.packet_id))
            if v5:
                body += _properties(packet.properties, "SUBSCRIBE")
            for topic_filter, options in packet.subscriptions:
                body += _utf8(topic_filter, "topic filter")
                body.append(_subscription_options(options, v5))
            return _frame(0x82, body)
        case Suback():
            body = bytearray(_packet_id(packet.packet_id))
            if v5:
                body += _properties(packet.properties, "SUBACK")
            for code in packet.reason_codes:
                body += _int(code, 1, "SUBACK reason code")
                if not v5 and code >= 0x80:
                    body[-1] = 0x80
            return _frame(0x90, body)
        case Unsubscribe():
            body = bytearray(_packet_id(packet.packet_id))
            if v5:
                body += _properties(packet.properties, "UNSUBSCRIBE")
            for topic_filter in packet.topic_filters:
                body += _utf8(topic_filter, "topic filter")
            return _frame(0xA2, body)
        case Unsuback():
            body = bytearray(_packet_id(packet.packet_id))
            if v5:
                body += _properties(packet.properties, "UNSUBACK")
                for code in packet.reason_codes:
                    body += _int(code, 1, "UNSUBACK reason code")
            return _frame(0xB0, body)
        case Pingreq():
            return b"\xc0\x00"
        case Pingresp():
            return b"\xd0\x00"
        case Disconnect():
            return _encode_reason_only(0xE0, "DISCONNECT", packet, v5)
        case Auth():
            if not v5:
                raise ValueError("AUTH exists only in MQTT 5")
            return _encode_reason_only(0xF0, "AUTH", packet, v5)
    raise TypeError(f"not an MQTT packet: {type(packet).__name__}")

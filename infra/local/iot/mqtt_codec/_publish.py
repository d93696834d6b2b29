"""PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL and PUBCOMP — their dataclasses,
decoders and encoders, including :func:`encode_publish`, the per-delivery fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.local.iot.mqtt_codec._primitives import (
    _SMALL_VARINTS,
    MAX_REMAINING_LENGTH,
    _frame,
    _int,
    _packet_id,
    _varint,
)
from infra.local.iot.mqtt_codec._properties import Properties, _properties
from infra.local.iot.mqtt_codec._reader import _Reader


@dataclass(slots=True)
class Publish:
    """PUBLISH. ``packet_id`` is ``None`` for QoS 0 (and ignored by encode if given)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Puback:
    """PUBACK: acknowledges a QoS 1 PUBLISH."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Pubrec:
    """PUBREC: first answer to a QoS 2 PUBLISH."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Pubrel:
    """PUBREL: the publisher's answer to PUBREC."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Pubcomp:
    """PUBCOMP: the last packet of the QoS 2 exchange."""

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Decoding


def _decode_publish(r: _Reader, flags: int, v5: bool) -> Publish:
    qos = (flags >> 1) & 0x03
    topic = r.utf8("topic name")
    packet_id = r.packet_id() if qos else None
    properties = r.properties("PUBLISH") if v5 else {}
    return Publish(
        topic, r.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id, properties
    )


def _decode_ack_fields(r: _Reader, context: str, v5: bool) -> tuple[int, int, Properties]:
    packet_id = r.packet_id()
    reason_code = 0
    properties: Properties = {}
    if v5 and not r.at_end():
        reason_code = r.byte("reason code")
        if not r.at_end():
            properties = r.properties(context)
    r.finish()
    return packet_id, reason_code, properties


def _decode_puback(r: _Reader, flags: int, v5: bool) -> Puback:
    return Puback(*_decode_ack_fields(r, "PUBACK", v5))


def _decode_pubrec(r: _Reader, flags: int, v5: bool) -> Pubrec:
    return Pubrec(*_decode_ack_fields(r, "PUBREC", v5))


def _decode_pubrel(r: _Reader, flags: int, v5: bool) -> Pubrel:
    return Pubrel(*_decode_ack_fields(r, "PUBREL", v5))


def _decode_pubcomp(r: _Reader, flags: int, v5: bool) -> Pubcomp:
    return Pubcomp(*_decode_ack_fields(r, "PUBCOMP", v5))


# --------------------------------------------------------------------------------------------
# Encoding


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int,
    packet_id: int | None,
    protocol_level: int,
    retain: bool = False,
    dup: bool = False,
    properties: Properties | None = None,
) -> bytes:
    """Encode a PUBLISH without building a :class:`Publish`: the per-delivery fast path.

    ``packet_id`` is required for QoS 1 and 2 and ignored for QoS 0; ``properties`` are
    written only for protocol level 5.
    """
    if "\x00" in topic:
        raise ValueError("the topic name contains U+0000, which MQTT forbids")
    topic_bytes = topic.encode("utf-8")
    topic_size = len(topic_bytes)
    if topic_size > 0xFFFF:
        raise ValueError(f"the topic name is {topic_size} bytes of UTF-8; at most 65535 fit")
    if qos == 0:
        id_bytes = b""
    elif qos == 1 or qos == 2:
        id_bytes = _packet_id(packet_id)
    else:
        raise ValueError(f"QoS is {qos!r}; it must be 0, 1 or 2")
    if protocol_level == 5:
        props = _properties(properties, "PUBLISH") if properties else b"\x00"
    elif protocol_level == 4 or protocol_level == 3:
        props = b""
    else:
        raise ValueError(f"protocol level must be 3, 4 or 5, not {protocol_level!r}")
    remaining = 2 + topic_size + len(id_bytes) + len(props) + len(payload)
    if remaining > MAX_REMAINING_LENGTH:
        raise ValueError(f"the packet body is {remaining} bytes; MQTT allows at most 268435455")
    first = 0x30 | qos << 1
    if retain:
        first |= 0x01
    if dup:
        first |= 0x08
    return b"".join(
        (
            _SMALL_VARINTS[first] if first < 0x80 else bytes((first,)),
            _varint(remaining),
            topic_size.to_bytes(2, "big"),
            topic_bytes,
            id_bytes,
            props,
            payload,
        )
    )


def _encode_ack(
    first: int, context: str, packet: Puback | Pubrec | Pubrel | Pubcomp, v5: bool
) -> bytes:
    body = _packet_id(packet.packet_id)
    if v5 and (packet.reason_code or packet.properties):
        body += _int(packet.reason_code, 1, "reason code")
        if packet.properties:
            body += _properties(packet.properties, context)
    return _frame(first, body)

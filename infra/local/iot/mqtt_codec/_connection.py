"""The packets of a connection's life: CONNECT (with its :class:`Will`), CONNACK, the PINGREQ and
PINGRESP keep-alive, DISCONNECT and AUTH — their dataclasses, decoders and encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from infra.local.iot.mqtt_codec._primitives import (
    REASON_UNSUPPORTED_PROTOCOL_VERSION,
    _binary,
    _frame,
    _int,
    _qos,
    _utf8,
)
from infra.local.iot.mqtt_codec._properties import _WILL, Properties, _properties
from infra.local.iot.mqtt_codec._reader import _Reader


@dataclass(slots=True)
class Will:
    """The message a CONNECT asks the broker to publish if the client vanishes."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    """CONNECT: the first packet a client sends.

    ``protocol_name``/``protocol_level`` are ``("MQIsdp", 3)``, ``("MQTT", 4)`` or
    ``("MQTT", 5)``. ``clean_start`` is MQTT 3.1.1's Clean Session flag.
    """

    protocol_name: str
    protocol_level: int
    client_id: str
    clean_start: bool
    keep_alive: int
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connack:
    """CONNACK. ``reason_code`` is the MQTT 5 reason code, or the 3.1.1 return code (0-5).

    Encoding for level 3/4 maps MQTT 5 failure codes (0x80 and up) to the nearest 3.1.1
    return code: 0x84 -> 1, 0x85 -> 2, 0x86/0x8C -> 4, 0x87/0x8A -> 5, any other -> 3.
    """

    session_present: bool
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Pingreq:
    """PINGREQ: the client's keep-alive."""


@dataclass(slots=True)
class Pingresp:
    """PINGRESP: the broker's answer to PINGREQ."""


@dataclass(slots=True)
class Disconnect:
    """DISCONNECT; reason code and properties exist on the wire only in MQTT 5."""

    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    """AUTH (MQTT 5 only): extended authentication exchange."""

    reason_code: int = 0
    properties: Properties = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Decoding

_PROTOCOLS: Final = frozenset({("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)})


def _decode_connect(r: _Reader) -> Connect:
    name = r.utf8("protocol name")
    level = r.byte("protocol level")
    if (name, level) not in _PROTOCOLS:
        raise r.fail(
            f"unsupported protocol {name!r} level {level}; this broker speaks MQTT 3.1 "
            "('MQIsdp' level 3), MQTT 3.1.1 ('MQTT' level 4) and MQTT 5 ('MQTT' level 5)",
            REASON_UNSUPPORTED_PROTOCOL_VERSION,
        )
    flags = r.byte("connect flags")
    if flags & 0x01:
        raise r.fail("the reserved bit 0 of the connect flags is set; it must be 0")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if will_qos == 3:
        raise r.fail("the will QoS is 3; it must be 0, 1 or 2")
    if not will_flag and will_qos:
        raise r.fail("the will QoS is set but the will flag is not")
    if not will_flag and will_retain:
        raise r.fail("the will retain flag is set but the will flag is not")
    if has_password and not has_username and level < 5:
        raise r.fail(
            "the password flag is set without the user name flag, which MQTT 3.1.1 forbids"
        )
    keep_alive = r.u16("keep alive")
    v5 = level == 5
    properties = r.properties("CONNECT") if v5 else {}
    client_id = r.utf8("client identifier")
    will = None
    if will_flag:
        will_properties = r.properties(_WILL) if v5 else {}
        will_topic = r.utf8("will topic")
        will_payload = r.binary("will payload")
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = r.utf8("user name") if has_username else None
    password = r.binary("password") if has_password else None
    r.finish()
    return Connect(
        name, level, client_id, bool(flags & 0x02), keep_alive, username, password, will, properties
    )


def _decode_connack(r: _Reader, flags: int, v5: bool) -> Connack:
    ack_flags = r.byte("connect acknowledge flags")
    if ack_flags & 0xFE:
        raise r.fail("reserved bits of the connect acknowledge flags are set; they must be 0")
    reason_code = r.byte("reason code")
    properties = r.properties("CONNACK") if v5 else {}
    r.finish()
    return Connack(bool(ack_flags), reason_code, properties)


def _decode_pingreq(r: _Reader, flags: int, v5: bool) -> Pingreq:
    r.finish()
    return Pingreq()


def _decode_pingresp(r: _Reader, flags: int, v5: bool) -> Pingresp:
    r.finish()
    return Pingresp()


def _decode_reason_and_properties(r: _Reader, context: str, v5: bool) -> tuple[int, Properties]:
    reason_code = 0
    properties: Properties = {}
    if v5 and not r.at_end():
        reason_code = r.byte("reason code")
        if not r.at_end():
            properties = r.properties(context)
    r.finish()
    return reason_code, properties


def _decode_disconnect(r: _Reader, flags: int, v5: bool) -> Disconnect:
    return Disconnect(*_decode_reason_and_properties(r, "DISCONNECT", v5))


def _decode_auth(r: _Reader, flags: int, v5: bool) -> Auth:
    return Auth(*_decode_reason_and_properties(r, "AUTH", v5))


# --------------------------------------------------------------------------------------------
# Encoding

_CONNACK_V3_CODES: Final = {0x84: 1, 0x85: 2, 0x86: 4, 0x8C: 4, 0x87: 5, 0x8A: 5}


def _encode_connect(packet: Connect, level: int) -> bytes:
    if packet.protocol_level != level:
        raise ValueError(
            f"the CONNECT says protocol level {packet.protocol_level}, "
            f"but encoding was asked for level {level}"
        )
    v5 = level == 5
    flags = 0x02 if packet.clean_start else 0
    will = packet.will
    if will is not None:
        flags |= 0x04 | _qos(will.qos, "will QoS") << 3 | (0x20 if will.retain else 0)
    if packet.password is not None:
        if packet.username is None and not v5:
            raise ValueError("MQTT 3.1.1 does not allow a password without a user name")
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    body = bytearray(_utf8(packet.protocol_name, "protocol name"))
    body += bytes((level, flags))
    body += _int(packet.keep_alive, 2, "keep alive")
    if v5:
        body += _properties(packet.properties, "CONNECT")
    body += _utf8(packet.client_id, "client identifier")
    if will is not None:
        if v5:
            body += _properties(will.properties, _WILL)
        body += _utf8(will.topic, "will topic")
        body += _binary(will.payload, "will payload")
    if packet.username is not None:
        body += _utf8(packet.username, "user name")
    if packet.password is not None:
        body += _binary(packet.password, "password")
    return _frame(0x10, body)


def _encode_reason_only(first: int, context: str, packet: Disconnect | Auth, v5: bool) -> bytes:
    body = b""
    if v5 and (packet.reason_code or packet.properties):
        body = _int(packet.reason_code, 1, "reason code")
        if packet.properties:
            body += _properties(packet.properties, context)
    return _frame(first, body)

"""MQTT 3.1, 3.1.1 and 5 packets: bytes to dataclasses and back, with no I/O.

The local broker gives every connection a :class:`PacketDecoder`, feeds it whatever the socket
returns and writes out what :func:`encode` (or, for deliveries, :func:`encode_publish`) returns.

The codec checks everything the wire format defines — lengths, fixed-header flags, reserved
bits, well-formed UTF-8, which MQTT 5 properties may appear in which packet and how often — and
reports any violation as :class:`MalformedPacket`, carrying the MQTT 5 reason code the broker
puts in its DISCONNECT (or CONNACK). It does not judge meaning: topic names and filters, which
QoS the broker supports, packet direction (a client sending CONNACK), topic aliases and session
state are the broker's business.

Error tree::

    Exception
     └── MalformedPacket   received bytes that are not a valid packet (.reason_code, .message)
    ValueError / TypeError  raised by encode() for a packet that cannot be put on the wire

Protocol levels: 3 is MQTT 3.1 (protocol name ``MQIsdp``), 4 is MQTT 3.1.1 and 5 is MQTT 5.
Levels 3 and 4 share one wire format here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "MAX_REMAINING_LENGTH",
    "PROP_ASSIGNED_CLIENT_ID",
    "PROP_AUTH_DATA",
    "PROP_AUTH_METHOD",
    "PROP_CONTENT_TYPE",
    "PROP_CORRELATION_DATA",
    "PROP_MAX_PACKET_SIZE",
    "PROP_MAX_QOS",
    "PROP_MESSAGE_EXPIRY",
    "PROP_PAYLOAD_FORMAT",
    "PROP_REASON_STRING",
    "PROP_RECEIVE_MAXIMUM",
    "PROP_REQUEST_PROBLEM_INFO",
    "PROP_REQUEST_RESPONSE_INFO",
    "PROP_RESPONSE_INFO",
    "PROP_RESPONSE_TOPIC",
    "PROP_RETAIN_AVAILABLE",
    "PROP_SERVER_KEEP_ALIVE",
    "PROP_SERVER_REFERENCE",
    "PROP_SESSION_EXPIRY",
    "PROP_SHARED_SUB_AVAILABLE",
    "PROP_SUBSCRIPTION_ID",
    "PROP_SUB_ID_AVAILABLE",
    "PROP_TOPIC_ALIAS",
    "PROP_TOPIC_ALIAS_MAX",
    "PROP_USER_PROPERTY",
    "PROP_WILDCARD_SUB_AVAILABLE",
    "PROP_WILL_DELAY",
    "REASON_MALFORMED_PACKET",
    "REASON_PACKET_TOO_LARGE",
    "REASON_PROTOCOL_ERROR",
    "REASON_UNSUPPORTED_PROTOCOL_VERSION",
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "MalformedPacket",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "SubscriptionOptions",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "encode",
    "encode_publish",
]


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
# MQTT 5 properties

Properties = dict[int, Any]
"""MQTT 5 property id -> value. Byte, integer and variable-byte properties are ``int``; strings
are ``str``; binary data is ``bytes``; User Property (0x26) is ``list[tuple[str, str]]`` and
Subscription Identifier (0x0B) is ``list[int]``, in wire order."""

PROP_PAYLOAD_FORMAT: Final = 0x01
PROP_MESSAGE_EXPIRY: Final = 0x02
PROP_CONTENT_TYPE: Final = 0x03
PROP_RESPONSE_TOPIC: Final = 0x08
PROP_CORRELATION_DATA: Final = 0x09
PROP_SUBSCRIPTION_ID: Final = 0x0B
PROP_SESSION_EXPIRY: Final = 0x11
PROP_ASSIGNED_CLIENT_ID: Final = 0x12
PROP_SERVER_KEEP_ALIVE: Final = 0x13
PROP_AUTH_METHOD: Final = 0x15
PROP_AUTH_DATA: Final = 0x16
PROP_REQUEST_PROBLEM_INFO: Final = 0x17
PROP_WILL_DELAY: Final = 0x18
PROP_REQUEST_RESPONSE_INFO: Final = 0x19
PROP_RESPONSE_INFO: Final = 0x1A
PROP_SERVER_REFERENCE: Final = 0x1C
PROP_REASON_STRING: Final = 0x1F
PROP_RECEIVE_MAXIMUM: Final = 0x21
PROP_TOPIC_ALIAS_MAX: Final = 0x22
PROP_TOPIC_ALIAS: Final = 0x23
PROP_MAX_QOS: Final = 0x24
PROP_RETAIN_AVAILABLE: Final = 0x25
PROP_USER_PROPERTY: Final = 0x26
PROP_MAX_PACKET_SIZE: Final = 0x27
PROP_WILDCARD_SUB_AVAILABLE: Final = 0x28
PROP_SUB_ID_AVAILABLE: Final = 0x29
PROP_SHARED_SUB_AVAILABLE: Final = 0x2A


class _Kind(enum.Enum):
    BYTE = "byte"
    TWO = "two-byte integer"
    FOUR = "four-byte integer"
    VARINT = "variable byte integer"
    UTF8 = "UTF-8 string"
    BINARY = "binary data"
    PAIR = "UTF-8 string pair"


# Where a property may appear: PacketType names, plus WILL for the will properties of CONNECT.
_WILL: Final = "WILL"
_ACKS: Final = frozenset({"PUBACK", "PUBREC", "PUBREL", "PUBCOMP"})


@dataclass(frozen=True, slots=True)
class _PropertySpec:
    name: str
    kind: _Kind
    contexts: frozenset[str]
    repeatable_in: frozenset[str] = frozenset()
    """Contexts where the property may appear more than once (its value is then a list)."""
    is_list: bool = False
    boolean: bool = False
    """Only 0 and 1 are valid values."""
    nonzero: bool = False
    """0 is not a valid value."""


def _ctx(*names: str) -> frozenset[str]:
    return frozenset(names)


_MESSAGE = _ctx("PUBLISH", _WILL)
_ALL_CONTEXTS = _ctx(
    *(t.name for t in PacketType if t not in (PacketType.PINGREQ, PacketType.PINGRESP)), _WILL
)

_PROPERTIES: Final[dict[int, _PropertySpec]] = {
    PROP_PAYLOAD_FORMAT: _PropertySpec(
        "Payload Format Indicator", _Kind.BYTE, _MESSAGE, boolean=True
    ),
    PROP_MESSAGE_EXPIRY: _PropertySpec("Message Expiry Interval", _Kind.FOUR, _MESSAGE),
    PROP_CONTENT_TYPE: _PropertySpec("Content Type", _Kind.UTF8, _MESSAGE),
    PROP_RESPONSE_TOPIC: _PropertySpec("Response Topic", _Kind.UTF8, _MESSAGE),
    PROP_CORRELATION_DATA: _PropertySpec("Correlation Data", _Kind.BINARY, _MESSAGE),
    PROP_SUBSCRIPTION_ID: _PropertySpec(
        "Subscription Identifier",
        _Kind.VARINT,
        _ctx("PUBLISH", "SUBSCRIBE"),
        repeatable_in=_ctx("PUBLISH"),
        is_list=True,
        nonzero=True,
    ),
    PROP_SESSION_EXPIRY: _PropertySpec(
        "Session Expiry Interval", _Kind.FOUR, _ctx("CONNECT", "CONNACK", "DISCONNECT")
    ),
    PROP_ASSIGNED_CLIENT_ID: _PropertySpec(
        "Assigned Client Identifier", _Kind.UTF8, _ctx("CONNACK")
    ),
    PROP_SERVER_KEEP_ALIVE: _PropertySpec("Server Keep Alive", _Kind.TWO, _ctx("CONNACK")),
    PROP_AUTH_METHOD: _PropertySpec(
        "Authentication Method", _Kind.UTF8, _ctx("CONNECT", "CONNACK", "AUTH")
    ),
    PROP_AUTH_DATA: _PropertySpec(
        "Authentication Data", _Kind.BINARY, _ctx("CONNECT", "CONNACK", "AUTH")
    ),
    PROP_REQUEST_PROBLEM_INFO: _PropertySpec(
        "Request Problem Information", _Kind.BYTE, _ctx("CONNECT"), boolean=True
    ),
    PROP_WILL_DELAY: _PropertySpec("Will Delay Interval", _Kind.FOUR, _ctx(_WILL)),
    PROP_REQUEST_RESPONSE_INFO: _PropertySpec(
        "Request Response Information", _Kind.BYTE, _ctx("CONNECT"), boolean=True
    ),
    PROP_RESPONSE_INFO: _PropertySpec("Response Information", _Kind.UTF8, _ctx("CONNACK")),
    PROP_SERVER_REFERENCE: _PropertySpec(
        "Server Reference", _Kind.UTF8, _ctx("CONNACK", "DISCONNECT")
    ),
    PROP_REASON_STRING: _PropertySpec(
        "Reason String",
        _Kind.UTF8,
        _ctx("CONNACK", "SUBACK", "UNSUBACK", "DISCONNECT", "AUTH") | _ACKS,
    ),
    PROP_RECEIVE_MAXIMUM: _PropertySpec(
        "Receive Maximum", _Kind.TWO, _ctx("CONNECT", "CONNACK"), nonzero=True
    ),
    PROP_TOPIC_ALIAS_MAX: _PropertySpec(
        "Topic Alias Maximum", _Kind.TWO, _ctx("CONNECT", "CONNACK")
    ),
    PROP_TOPIC_ALIAS: _PropertySpec("Topic Alias", _Kind.TWO, _ctx("PUBLISH"), nonzero=True),
    PROP_MAX_QOS: _PropertySpec("Maximum QoS", _Kind.BYTE, _ctx("CONNACK"), boolean=True),
    PROP_RETAIN_AVAILABLE: _PropertySpec(
        "Retain Available", _Kind.BYTE, _ctx("CONNACK"), boolean=True
    ),
    PROP_USER_PROPERTY: _PropertySpec(
        "User Property", _Kind.PAIR, _ALL_CONTEXTS, repeatable_in=_ALL_CONTEXTS, is_list=True
    ),
    PROP_MAX_PACKET_SIZE: _PropertySpec(
        "Maximum Packet Size", _Kind.FOUR, _ctx("CONNECT", "CONNACK"), nonzero=True
    ),
    PROP_WILDCARD_SUB_AVAILABLE: _PropertySpec(
        "Wildcard Subscription Available", _Kind.BYTE, _ctx("CONNACK"), boolean=True
    ),
    PROP_SUB_ID_AVAILABLE: _PropertySpec(
        "Subscription Identifier Available", _Kind.BYTE, _ctx("CONNACK"), boolean=True
    ),
    PROP_SHARED_SUB_AVAILABLE: _PropertySpec(
        "Shared Subscription Available", _Kind.BYTE, _ctx("CONNACK"), boolean=True
    ),
}


def _context_name(context: str) -> str:
    return "the will properties of CONNECT" if context == _WILL else context


# --------------------------------------------------------------------------------------------
# Packets


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


@dataclass(slots=True)
class SubscriptionOptions:
    """Options of one SUBSCRIBE entry; MQTT 3.1.1 carries only ``qos``."""

    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    """SUBSCRIBE: one or more topic filters with their options."""

    packet_id: int
    subscriptions: list[tuple[str, SubscriptionOptions]]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Suback:
    """SUBACK: one reason code per filter of the SUBSCRIBE.

    Encoding for level 3/4 writes any failure code (0x80 and up) as 0x80.
    """

    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: one or more topic filters."""

    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsuback:
    """UNSUBACK. ``reason_codes`` exist on the wire only in MQTT 5 (decoded as ``[]`` for 3.1.1)."""

    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
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

_PROTOCOLS: Final = frozenset({("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)})

_TYPES: Final[tuple[PacketType | None, ...]] = (None, *PacketType)

_REQUIRED_FLAGS: Final[dict[PacketType, int]] = {
    t: (0b0010 if t in (PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE) else 0)
    for t in PacketType
}


class _Reader:
    """Reads the variable header and payload of one packet, failing with MalformedPacket."""

    __slots__ = ("_data", "_end", "_pos", "_type", "_where")

    def __init__(self, data: bytes, packet_type: PacketType) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data)
        self._where = "packet"
        self._type = packet_type

    def fail(self, message: str, reason: int = REASON_MALFORMED_PACKET) -> MalformedPacket:
        return MalformedPacket(reason, message, self._type)

    def at_end(self) -> bool:
        return self._pos >= self._end

    def _take(self, size: int, what: str) -> int:
        start = self._pos
        end = start + size
        if end > self._end:
            raise self.fail(f"the {what} runs past the end of the {self._where}")
        self._pos = end
        return start

    def byte(self, what: str) -> int:
        return self._data[self._take(1, what)]

    def u16(self, what: str) -> int:
        start = self._take(2, what)
        return self._data[start] << 8 | self._data[start + 1]

    def u32(self, what: str) -> int:
        start = self._take(4, what)
        return int.from_bytes(self._data[start : start + 4], "big")

    def varint(self, what: str) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.byte(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise self.fail(f"the {what} uses more than 4 bytes")

    def binary(self, what: str) -> bytes:
        size = self.u16(f"length of the {what}")
        start = self._take(size, what)
        return self._data[start : start + size]

    def utf8(self, what: str) -> str:
        raw = self.binary(what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise self.fail(f"the {what} is not well-formed UTF-8") from None
            raise self.fail(
                f"the {what} contains a UTF-16 surrogate (U+D800-U+DFFF), which MQTT forbids"
            ) from None
        if "\x00" in text:
            raise self.fail(f"the {what} contains the null character U+0000, which MQTT forbids")
        return text

    def packet_id(self) -> int:
        packet_id = self.u16("packet identifier")
        if packet_id == 0:
            raise self.fail(
                "the packet identifier is 0; it must be 1 to 65535", REASON_PROTOCOL_ERROR
            )
        return packet_id

    def rest(self) -> bytes:
        start = self._pos
        self._pos = self._end
        return self._data[start : self._end]

    def finish(self) -> None:
        left = self._end - self._pos
        if left:
            raise self.fail(f"{left} unexpected byte(s) left at the end of the packet")

    def properties(self, context: str) -> Properties:
        length = self.varint("property length")
        end = self._pos + length
        if end > self._end:
            raise self.fail(f"the property length ({length}) runs past the end of the packet")
        packet_end, self._end, self._where = self._end, end, "property section"
        props: Properties = {}
        while self._pos < end:
            prop_id = self.varint("property identifier")
            spec = _PROPERTIES.get(prop_id)
            if spec is None:
                raise self.fail(f"0x{prop_id:02X} is not an MQTT 5 property identifier")
            if context not in spec.contexts:
                raise self.fail(
                    f"property {spec.name} (0x{prop_id:02X}) is not allowed in "
                    f"{_context_name(context)}"
                )
            value = self._property_value(spec)
            if prop_id in props:
                if context not in spec.repeatable_in:
                    raise self.fail(
                        f"property {spec.name} (0x{prop_id:02X}) appears more than once in "
                        f"{_context_name(context)}",
                        REASON_PROTOCOL_ERROR,
                    )
                props[prop_id].append(value)
            else:
                props[prop_id] = [value] if spec.is_list else value
        self._end, self._where = packet_end, "packet"
        return props

    def _property_value(self, spec: _PropertySpec) -> Any:
        what = f"property {spec.name}"
        kind = spec.kind
        value: Any
        if kind is _Kind.BYTE:
            value = self.byte(what)
        elif kind is _Kind.TWO:
            value = self.u16(what)
        elif kind is _Kind.FOUR:
            value = self.u32(what)
        elif kind is _Kind.VARINT:
            value = self.varint(what)
        elif kind is _Kind.UTF8:
            return self.utf8(what)
        elif kind is _Kind.BINARY:
            return self.binary(what)
        else:
            return (self.utf8(f"{spec.name} name"), self.utf8(f"{spec.name} value"))
        if spec.boolean and value > 1:
            raise self.fail(f"{what} is {value}; it must be 0 or 1", REASON_PROTOCOL_ERROR)
        if spec.nonzero and value == 0:
            raise self.fail(f"{what} is 0, which is not allowed", REASON_PROTOCOL_ERROR)
        return value


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


def _decode_subscribe(r: _Reader, flags: int, v5: bool) -> Subscribe:
    packet_id = r.packet_id()
    properties = r.properties("SUBSCRIBE") if v5 else {}
    subscriptions: list[tuple[str, SubscriptionOptions]] = []
    while not r.at_end():
        topic_filter = r.utf8("topic filter")
        options = r.byte("subscription options")
        qos = options & 0x03
        if qos == 3:
            raise r.fail(f"the requested QoS for {topic_filter!r} is 3; it must be 0, 1 or 2")
        if not v5:
            if options & 0xFC:
                raise r.fail(
                    f"the requested QoS byte for {topic_filter!r} is 0x{options:02X}; "
                    "its upper 6 bits are reserved and must be 0"
                )
            subscriptions.append((topic_filter, SubscriptionOptions(qos)))
            continue
        if options & 0xC0:
            raise r.fail(
                f"reserved bits 6-7 of the subscription options for {topic_filter!r} are set"
            )
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise r.fail(
                f"retain handling for {topic_filter!r} is 3; it must be 0, 1 or 2",
                REASON_PROTOCOL_ERROR,
            )
        subscriptions.append(
            (
                topic_filter,
                SubscriptionOptions(
                    qos, bool(options & 0x04), bool(options & 0x08), retain_handling
                ),
            )
        )
    if not subscriptions:
        raise r.fail(
            "SUBSCRIBE carries no topic filter; it needs at least one", REASON_PROTOCOL_ERROR
        )
    return Subscribe(packet_id, subscriptions, properties)


def _decode_suback(r: _Reader, flags: int, v5: bool) -> Suback:
    packet_id = r.packet_id()
    properties = r.properties("SUBACK") if v5 else {}
    codes = list(r.rest())
    if not codes:
        raise r.fail("SUBACK carries no reason code; it needs one per topic filter")
    return Suback(packet_id, codes, properties)


def _decode_unsubscribe(r: _Reader, flags: int, v5: bool) -> Unsubscribe:
    packet_id = r.packet_id()
    properties = r.properties("UNSUBSCRIBE") if v5 else {}
    filters: list[str] = []
    while not r.at_end():
        filters.append(r.utf8("topic filter"))
    if not filters:
        raise r.fail(
            "UNSUBSCRIBE carries no topic filter; it needs at least one", REASON_PROTOCOL_ERROR
        )
    return Unsubscribe(packet_id, filters, properties)


def _decode_unsuback(r: _Reader, flags: int, v5: bool) -> Unsuback:
    packet_id = r.packet_id()
    if not v5:
        r.finish()
        return Unsuback(packet_id, [], {})
    properties = r.properties("UNSUBACK")
    codes = list(r.rest())
    if not codes:
        raise r.fail("UNSUBACK carries no reason code; it needs one per topic filter")
    return Unsuback(packet_id, codes, properties)


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


def _properties(props: Properties | None, context: str) -> bytes:
    if not props:
        return b"\x00"
    out = bytearray()
    for prop_id, value in props.items():
        spec = _PROPERTIES.get(prop_id)
        if spec is None:
            raise ValueError(f"{prop_id!r} is not an MQTT 5 property identifier")
        if context not in spec.contexts:
            raise ValueError(
                f"property {spec.name} (0x{prop_id:02X}) is not allowed in {_context_name(context)}"
            )
        values = value if spec.is_list else [value]
        if spec.is_list:
            if not isinstance(value, list):
                raise TypeError(f"property {spec.name} must be a list, not {type(value).__name__}")
            if len(value) > 1 and context not in spec.repeatable_in:
                raise ValueError(f"property {spec.name} may appear only once in {context}")
        what = f"property {spec.name}"
        for item in values:
            out.append(prop_id)
            kind = spec.kind
            if kind is _Kind.BYTE:
                out += _int(item, 1, what)
            elif kind is _Kind.TWO:
                out += _int(item, 2, what)
            elif kind is _Kind.FOUR:
                out += _int(item, 4, what)
            elif kind is _Kind.VARINT:
                if not isinstance(item, int):
                    raise TypeError(f"{what} values must be int, not {type(item).__name__}")
                out += _varint(item)
            elif kind is _Kind.UTF8:
                out += _utf8(item, what)
            elif kind is _Kind.BINARY:
                out += _binary(item, what)
            else:
                name, text = item
                out += _utf8(name, f"{what} name")
                out += _utf8(text, f"{what} value")
    return _varint(len(out)) + out


def _frame(first: int, body: bytes | bytearray) -> bytes:
    if len(body) > MAX_REMAINING_LENGTH:
        raise ValueError(f"the packet body is {len(body)} bytes; MQTT allows at most 268435455")
    return bytes((first,)) + _varint(len(body)) + body


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


def _encode_ack(
    first: int, context: str, packet: Puback | Pubrec | Pubrel | Pubcomp, v5: bool
) -> bytes:
    body = _packet_id(packet.packet_id)
    if v5 and (packet.reason_code or packet.properties):
        body += _int(packet.reason_code, 1, "reason code")
        if packet.properties:
            body += _properties(packet.properties, context)
    return _frame(first, body)


def _encode_reason_only(first: int, context: str, packet: Disconnect | Auth, v5: bool) -> bytes:
    body = b""
    if v5 and (packet.reason_code or packet.properties):
        body = _int(packet.reason_code, 1, "reason code")
        if packet.properties:
            body += _properties(packet.properties, context)
    return _frame(first, body)


def _subscription_options(options: SubscriptionOptions, v5: bool) -> int:
    byte = _qos(options.qos, "subscription QoS")
    if not v5:
        return byte
    if options.retain_handling not in (0, 1, 2):
        raise ValueError(f"retain handling is {options.retain_handling!r}; it must be 0, 1 or 2")
    if options.no_local:
        byte |= 0x04
    if options.retain_as_published:
        byte |= 0x08
    return byte | options.retain_handling << 4


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

"""MQTT 5 properties: their identifiers, the table of what each holds and in which packets it may
appear (and how often), and their encoding. Decoding them is ``_Reader.properties``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from infra.local.iot.mqtt_codec._primitives import PacketType, _binary, _int, _utf8, _varint

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

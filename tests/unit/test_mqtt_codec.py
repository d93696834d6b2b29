"""MQTT 3.1.1 / 5 codec: known vectors, round trips, every validation rule, and fuzzing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.iot import mqtt_codec
from infra.local.iot.mqtt_codec import (
    PROP_ASSIGNED_CLIENT_ID,
    PROP_AUTH_DATA,
    PROP_AUTH_METHOD,
    PROP_CONTENT_TYPE,
    PROP_CORRELATION_DATA,
    PROP_MAX_PACKET_SIZE,
    PROP_MAX_QOS,
    PROP_MESSAGE_EXPIRY,
    PROP_PAYLOAD_FORMAT,
    PROP_REASON_STRING,
    PROP_RECEIVE_MAXIMUM,
    PROP_REQUEST_PROBLEM_INFO,
    PROP_REQUEST_RESPONSE_INFO,
    PROP_RESPONSE_INFO,
    PROP_RESPONSE_TOPIC,
    PROP_RETAIN_AVAILABLE,
    PROP_SERVER_KEEP_ALIVE,
    PROP_SERVER_REFERENCE,
    PROP_SESSION_EXPIRY,
    PROP_SHARED_SUB_AVAILABLE,
    PROP_SUB_ID_AVAILABLE,
    PROP_SUBSCRIPTION_ID,
    PROP_TOPIC_ALIAS,
    PROP_TOPIC_ALIAS_MAX,
    PROP_USER_PROPERTY,
    PROP_WILDCARD_SUB_AVAILABLE,
    PROP_WILL_DELAY,
    Auth,
    Connack,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketDecoder,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
    encode_publish,
)
from tests.support.fuzz import examples

MALFORMED, PROTOCOL_ERROR, UNSUPPORTED, TOO_LARGE = 0x81, 0x82, 0x84, 0x95
PACKET_CLASSES = (
    Connect,
    Connack,
    Publish,
    Puback,
    Pubrec,
    Pubrel,
    Pubcomp,
    Subscribe,
    Suback,
    Unsubscribe,
    Unsuback,
    Pingreq,
    Pingresp,
    Disconnect,
    Auth,
)


# --- byte builders, written from the spec independently of the codec ------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def raw(data: bytes) -> bytes:
    """Two-byte length prefix + data (UTF-8 string or binary data)."""
    return u16(len(data)) + data


def s(text: str) -> bytes:
    return raw(text.encode())


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return varint(len(body)) + body


def connect_body(level: int = 4, flags: int = 0x02, tail: bytes = b"", name: str = "") -> bytes:
    name = name or ("MQIsdp" if level == 3 else "MQTT")
    prop_section = b"\x00" if level == 5 else b""
    return s(name) + bytes([level, flags]) + u16(60) + prop_section + s("client") + tail


CONNECT_V4 = frame(0x10, connect_body(4))
CONNECT_V5 = frame(0x10, connect_body(5))


def decode(data: bytes, level: int | None = None) -> list[Packet]:
    return PacketDecoder(protocol_level=level).feed(data)


def reject(data: bytes, level: int | None = None) -> MalformedPacket:
    with pytest.raises(MalformedPacket) as info:
        PacketDecoder(protocol_level=level).feed(data)
    return info.value


# --- known vectors --------------------------------------------------------------------------


def test_ping_and_disconnect_vectors_3_1_1():
    assert encode(Pingreq(), 4) == b"\xc0\x00"
    assert encode(Pingresp(), 4) == b"\xd0\x00"
    assert encode(Disconnect(), 4) == b"\xe0\x00"
    assert decode(b"\xc0\x00\xd0\x00\xe0\x00", 4) == [Pingreq(), Pingresp(), Disconnect()]


def test_hand_built_connect_3_1_1():
    wire = (
        b"\x10\x1e"  # CONNECT, remaining length 30
        b"\x00\x04MQTT"  # protocol name
        b"\x04"  # protocol level 3.1.1
        b"\xee"  # user name, password, will retain, will QoS 1, will flag, clean session
        b"\x00\x3c"  # keep alive 60
        b"\x00\x03abc"  # client identifier
        b"\x00\x01w"  # will topic
        b"\x00\x03bye"  # will message
        b"\x00\x01u"  # user name
        b"\x00\x02pw"  # password
    )
    packet = Connect("MQTT", 4, "abc", True, 60, "u", b"pw", Will("w", b"bye", 1, True, {}))
    decoder = PacketDecoder()
    assert decoder.protocol_level is None
    assert decoder.feed(wire) == [packet]
    assert decoder.protocol_level == 4
    assert encode(packet, 4) == wire


def test_hand_built_connect_5_with_session_expiry():
    wire = (
        b"\x10\x14"
        b"\x00\x04MQTT\x05"
        b"\x02"  # clean start
        b"\x00\x0a"  # keep alive 10
        b"\x05\x11\x00\x00\x00\x0a"  # properties: Session Expiry Interval 10
        b"\x00\x02id"
    )
    packet = Connect("MQTT", 5, "id", True, 10, properties={PROP_SESSION_EXPIRY: 10})
    decoder = PacketDecoder()
    assert decoder.feed(wire) == [packet]
    assert decoder.protocol_level == 5
    assert encode(packet, 5) == wire


def test_connect_mqtt_3_1_mqisdp():
    wire = frame(0x10, s("MQIsdp") + b"\x03\x02" + u16(30) + s("old"))
    decoder = PacketDecoder()
    assert decoder.feed(wire) == [Connect("MQIsdp", 3, "old", True, 30)]
    assert decoder.protocol_level == 3
    assert encode(Connect("MQIsdp", 3, "old", True, 30), 3) == wire


def test_suback_subscribe_publish_vectors_3_1_1():
    suback = b"\x90\x05\x00\x0a\x00\x01\x80"
    assert decode(suback, 4) == [Suback(10, [0, 1, 0x80])]
    assert encode(Suback(10, [0, 1, 0x80]), 4) == suback

    subscribe = b"\x82\x0c\x00\x01\x00\x03a/b\x01\x00\x01#\x00"
    packet = Subscribe(1, [("a/b", SubscriptionOptions(1)), ("#", SubscriptionOptions(0))])
    assert decode(subscribe, 4) == [packet]
    assert encode(packet, 4) == subscribe

    publish = b"\x32\x09\x00\x03a/b\x00\x07hi"
    assert decode(publish, 4) == [Publish("a/b", b"hi", 1, packet_id=7)]
    assert encode_publish("a/b", b"hi", 1, 7, 4) == publish


def test_short_forms_of_mqtt5_acks():
    assert decode(b"\x40\x02\x00\x01", 5) == [Puback(1)]
    assert decode(b"\x40\x03\x00\x01\x10", 5) == [Puback(1, 0x10)]
    assert encode(Puback(1), 5) == b"\x40\x02\x00\x01"
    assert encode(Puback(1, 0x10), 5) == b"\x40\x03\x00\x01\x10"
    assert encode(Pubrel(3), 5) == b"\x62\x02\x00\x03"
    assert decode(b"\xe0\x00", 5) == [Disconnect()]
    assert decode(b"\xe0\x01\x04", 5) == [Disconnect(0x04)]
    assert encode(Disconnect(0x8E), 5) == b"\xe0\x01\x8e"
    assert encode(Auth(), 5) == b"\xf0\x00"
    assert decode(b"\xf0\x00", 5) == [Auth()]


def test_connack_vectors():
    assert encode(Connack(True, 0), 4) == b"\x20\x02\x01\x00"
    assert decode(b"\x20\x02\x00\x05", 4) == [Connack(False, 5)]
    assert encode(Connack(False, 0), 5) == b"\x20\x03\x00\x00\x00"
    wire = b"\x20\x08\x00\x00\x05\x22\x00\x0a\x24\x01"
    assert decode(wire, 5) == [Connack(False, 0, {PROP_TOPIC_ALIAS_MAX: 10, PROP_MAX_QOS: 1})]


@pytest.mark.parametrize(
    ("remaining", "header"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
    ],
)
def test_remaining_length_encoding(remaining, header):
    if remaining == 0:
        assert encode(Pingreq(), 4)[1:] == header
        return
    payload = b"x" * (remaining - 3)  # topic "t" takes 3 bytes
    wire = encode_publish("t", payload, 0, None, 4)
    assert wire[1 : 1 + len(header)] == header
    assert len(wire) == 1 + len(header) + remaining
    assert decode(wire, 4) == [Publish("t", payload)]


def test_largest_remaining_length_is_parsed_from_the_header_alone():
    decoder = PacketDecoder(max_packet_size=1000, protocol_level=4)
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(b"\x30\xff\xff\xff\x7f")
    assert info.value.reason_code == TOO_LARGE
    assert "268435460 bytes" in info.value.message


# --- round trips of every packet type -------------------------------------------------------

ALL_PROPERTIES_PUBLISH = {
    PROP_PAYLOAD_FORMAT: 1,
    PROP_MESSAGE_EXPIRY: 3600,
    PROP_CONTENT_TYPE: "application/json",
    PROP_RESPONSE_TOPIC: "reply/here",
    PROP_CORRELATION_DATA: b"\x00\x01\xff",
    PROP_SUBSCRIPTION_ID: [1, 268_435_455],
    PROP_TOPIC_ALIAS: 7,
    PROP_USER_PROPERTY: [("k", "v"), ("k", "v2"), ("ünï", "çødé")],
}
CONNECT_PROPERTIES = {
    PROP_SESSION_EXPIRY: 0xFFFFFFFF,
    PROP_RECEIVE_MAXIMUM: 20,
    PROP_MAX_PACKET_SIZE: 131_072,
    PROP_TOPIC_ALIAS_MAX: 8,
    PROP_REQUEST_RESPONSE_INFO: 1,
    PROP_REQUEST_PROBLEM_INFO: 0,
    PROP_AUTH_METHOD: "SCRAM-SHA-1",
    PROP_AUTH_DATA: b"client-first",
    PROP_USER_PROPERTY: [("a", "b")],
}
WILL_PROPERTIES = {
    PROP_WILL_DELAY: 30,
    PROP_PAYLOAD_FORMAT: 0,
    PROP_MESSAGE_EXPIRY: 10,
    PROP_CONTENT_TYPE: "text/plain",
    PROP_RESPONSE_TOPIC: "r",
    PROP_CORRELATION_DATA: b"c",
    PROP_USER_PROPERTY: [("w", "x")],
}
CONNACK_PROPERTIES = {
    PROP_SESSION_EXPIRY: 60,
    PROP_RECEIVE_MAXIMUM: 100,
    PROP_MAX_QOS: 1,
    PROP_RETAIN_AVAILABLE: 1,
    PROP_MAX_PACKET_SIZE: 146_000,
    PROP_ASSIGNED_CLIENT_ID: "auto-123",
    PROP_TOPIC_ALIAS_MAX: 8,
    PROP_REASON_STRING: "ok",
    PROP_USER_PROPERTY: [("x", "y")],
    PROP_WILDCARD_SUB_AVAILABLE: 1,
    PROP_SUB_ID_AVAILABLE: 0,
    PROP_SHARED_SUB_AVAILABLE: 0,
    PROP_SERVER_KEEP_ALIVE: 1200,
    PROP_RESPONSE_INFO: "resp/",
    PROP_SERVER_REFERENCE: "other.example",
    PROP_AUTH_METHOD: "SCRAM-SHA-1",
    PROP_AUTH_DATA: b"server-final",
}
ACK_PROPERTIES = {PROP_REASON_STRING: "why", PROP_USER_PROPERTY: [("a", "1"), ("b", "2")]}

ROUND_TRIP_V4: list[Packet] = [
    Connack(True, 0),
    Connack(False, 5),
    Publish("a/b", b"", 0),
    Publish("a/b", b"\x00\xff" * 100, 1, retain=True, dup=True, packet_id=65535),
    Publish("", b"p", 2, packet_id=1),
    Publish("t", b"dup at QoS 0 is tolerated in 3.1.1", 0, dup=True),
    Puback(1),
    Pubrec(2),
    Pubrel(3),
    Pubcomp(4),
    Subscribe(5, [("a/+", SubscriptionOptions(0)), ("b/#", SubscriptionOptions(2))]),
    Suback(5, [0, 2, 0x80]),
    Unsubscribe(6, ["a/+", "b/#"]),
    Unsuback(6),
    Pingreq(),
    Pingresp(),
    Disconnect(),
]
ROUND_TRIP_V5: list[Packet] = [
    Connack(True, 0, CONNACK_PROPERTIES),
    Connack(False, 0x87),
    Publish("a/b", b"", 0),
    Publish(
        "a/b", b"payload", 1, retain=True, dup=True, packet_id=9, properties=ALL_PROPERTIES_PUBLISH
    ),
    Publish("", b"aliased", 0, properties={PROP_TOPIC_ALIAS: 3}),
    Puback(1),
    Puback(1, 0x10),
    Puback(1, 0x80, ACK_PROPERTIES),
    Pubrec(2, 0x92, ACK_PROPERTIES),
    Pubrel(3, 0, ACK_PROPERTIES),
    Pubcomp(4, 0x92),
    Subscribe(
        5,
        [
            ("a/+", SubscriptionOptions(1, no_local=True)),
            ("b/#", SubscriptionOptions(2, retain_as_published=True, retain_handling=2)),
            ("$share/g/c", SubscriptionOptions(0, retain_handling=1)),
        ],
        {PROP_SUBSCRIPTION_ID: [42], PROP_USER_PROPERTY: [("s", "t")]},
    ),
    Suback(5, [0, 1, 2, 0x87, 0x8F], ACK_PROPERTIES),
    Unsubscribe(6, ["a/+"], {PROP_USER_PROPERTY: [("u", "v")]}),
    Unsuback(6, [0, 0x11], ACK_PROPERTIES),
    Pingreq(),
    Pingresp(),
    Disconnect(),
    Disconnect(0x04),
    Disconnect(
        0x9C,
        {
            PROP_SESSION_EXPIRY: 0,
            PROP_REASON_STRING: "moved",
            PROP_SERVER_REFERENCE: "b",
            PROP_USER_PROPERTY: [("k", "v")],
        },
    ),
    Auth(),
    Auth(0x18, {PROP_AUTH_METHOD: "SCRAM-SHA-1", PROP_AUTH_DATA: b"\x01", **ACK_PROPERTIES}),
]


@pytest.mark.parametrize("packet", ROUND_TRIP_V4, ids=repr)
def test_round_trip_3_1_1(packet):
    assert decode(encode(packet, 4), 4) == [packet]
    assert decode(encode(packet, 3), 3) == [packet]


@pytest.mark.parametrize("packet", ROUND_TRIP_V5, ids=repr)
def test_round_trip_5(packet):
    assert decode(encode(packet, 5), 5) == [packet]


@pytest.mark.parametrize(
    "packet",
    [
        Connect("MQTT", 4, "c", False, 0),
        Connect("MQTT", 4, "", True, 65535, "user", b"", Will("t", b"", 2, False, {})),
        Connect("MQIsdp", 3, "c", True, 10, "u", b"p"),
        Connect("MQTT", 5, "c", False, 0),
        Connect(
            "MQTT",
            5,
            "c",
            True,
            30,
            "u",
            b"\x00pw",
            Will("last/will", b"gone", 1, True, WILL_PROPERTIES),
            CONNECT_PROPERTIES,
        ),
        Connect("MQTT", 5, "c", True, 30, None, b"token-without-user-name"),
    ],
    ids=repr,
)
def test_round_trip_connect(packet):
    decoder = PacketDecoder()
    assert decoder.feed(encode(packet, packet.protocol_level)) == [packet]
    assert decoder.protocol_level == packet.protocol_level


def test_encode_drops_what_3_1_1_cannot_carry():
    assert encode(Puback(1, 0x10, ACK_PROPERTIES), 4) == b"\x40\x02\x00\x01"
    assert encode(Unsuback(1, [0x11]), 4) == b"\xb0\x02\x00\x01"
    assert encode(Disconnect(0x8E, {PROP_REASON_STRING: "x"}), 4) == b"\xe0\x00"
    assert encode(Publish("t", b"", properties={PROP_TOPIC_ALIAS: 1}), 4) == b"\x30\x03\x00\x01t"
    options = SubscriptionOptions(1, no_local=True, retain_as_published=True, retain_handling=2)
    assert encode(Subscribe(1, [("t", options)]), 4) == b"\x82\x06\x00\x01\x00\x01t\x01"


def test_encode_maps_mqtt5_failure_codes_for_3_1_1():
    assert encode(Connack(False, 0x87), 4) == b"\x20\x02\x00\x05"  # not authorized
    assert encode(Connack(False, 0x86), 4) == b"\x20\x02\x00\x04"  # bad user name or password
    assert encode(Connack(False, 0x84), 4) == b"\x20\x02\x00\x01"  # unacceptable protocol
    assert encode(Connack(False, 0x85), 4) == b"\x20\x02\x00\x02"  # identifier rejected
    assert encode(Connack(False, 0x97), 4) == b"\x20\x02\x00\x03"  # server unavailable
    assert encode(Suback(1, [1, 0x87, 0x97]), 4) == b"\x90\x05\x00\x01\x01\x80\x80"


def test_encode_publish_matches_encode_and_ignores_packet_id_at_qos_0():
    props = {PROP_MESSAGE_EXPIRY: 5, PROP_USER_PROPERTY: [("a", "b")]}
    for level in (4, 5):
        for qos, pid in ((0, None), (1, 5), (2, 65535)):
            packet = Publish("x/y", b"data", qos, True, qos > 0, pid, props if level == 5 else {})
            assert encode_publish("x/y", b"data", qos, pid, level, True, qos > 0, props) == encode(
                packet, level
            )
    assert encode_publish("t", b"", 0, 99, 4) == b"\x30\x03\x00\x01t"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: encode(Auth(), 4), ValueError),
        (lambda: encode(Pingreq(), 6), ValueError),
        (lambda: encode(Puback(0), 4), ValueError),
        (lambda: encode(Puback(70_000), 4), ValueError),
        (lambda: encode_publish("t", b"", 1, None, 4), ValueError),
        (lambda: encode_publish("t", b"", 3, 1, 4), ValueError),
        (lambda: encode_publish("a\x00b", b"", 0, None, 4), ValueError),
        (lambda: encode_publish("\ud800", b"", 0, None, 4), ValueError),
        (lambda: encode_publish("t" * 65536, b"", 0, None, 4), ValueError),
        (lambda: encode(Publish("t", b"", properties={PROP_SESSION_EXPIRY: 1}), 5), ValueError),
        (lambda: encode(Publish("t", b"", properties={0x7F: 1}), 5), ValueError),
        (lambda: encode(Publish("t", b"", properties={PROP_TOPIC_ALIAS: 70_000}), 5), ValueError),
        (lambda: encode(Publish("t", b"", properties={PROP_CONTENT_TYPE: 5}), 5), TypeError),
        (lambda: encode(Publish("t", b"", properties={PROP_SUBSCRIPTION_ID: 5}), 5), TypeError),
        (
            lambda: encode(
                Subscribe(1, [("t", SubscriptionOptions(0))], {PROP_SUBSCRIPTION_ID: [1, 2]}), 5
            ),
            ValueError,
        ),
        (lambda: encode(Subscribe(1, [("t", SubscriptionOptions(3))]), 5), ValueError),
        (
            lambda: encode(Subscribe(1, [("t", SubscriptionOptions(0, retain_handling=3))]), 5),
            ValueError,
        ),
        (lambda: encode(Connect("MQTT", 4, "c", True, 0, None, b"pw"), 4), ValueError),
        (lambda: encode(Connect("MQTT", 4, "c", True, 0), 5), ValueError),
        (lambda: encode(Connect("MQTT", 4, "c", True, 70_000), 4), ValueError),
        (lambda: encode("not a packet", 4), TypeError),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_what_cannot_go_on_the_wire(call, error):
    with pytest.raises(error):
        call()


# --- validation rules -----------------------------------------------------------------------

# (level of an already connected decoder or None, bytes, reason code, words of the message)
REJECTED = {
    # fixed header
    "remaining length of 5 bytes": (4, b"\x30\xff\xff\xff\xff\x7f", MALFORMED, "more than 4 bytes"),
    "remaining length of 5 bytes before CONNECT": (
        None,
        b"\x10\x80\x80\x80\x80\x01",
        MALFORMED,
        "more than 4 bytes",
    ),
    "packet type 0": (4, b"\x00\x00", MALFORMED, "packet type 0"),
    "packet type 0 before CONNECT": (None, b"\x00\x00", MALFORMED, "packet type 0"),
    "AUTH in 3.1.1": (4, b"\xf0\x00", MALFORMED, "only in MQTT 5"),
    "first packet is not CONNECT": (
        None,
        b"\xc0\x00",
        PROTOCOL_ERROR,
        "first packet must be CONNECT",
    ),
    "first packet is PUBLISH": (
        None,
        frame(0x30, s("t")),
        PROTOCOL_ERROR,
        "first packet must be CONNECT",
    ),
    "second CONNECT": (4, CONNECT_V4, PROTOCOL_ERROR, "second CONNECT"),
    "second CONNECT in one stream": (
        None,
        CONNECT_V5 + CONNECT_V5,
        PROTOCOL_ERROR,
        "second CONNECT",
    ),
    "PUBLISH QoS 3": (4, frame(0x36, s("t") + u16(1)), MALFORMED, "QoS 3"),
    "PUBLISH QoS 3 in MQTT 5": (5, frame(0x36, s("t") + u16(1) + b"\x00"), MALFORMED, "QoS 3"),
    "QoS 0 PUBLISH with DUP in MQTT 5": (
        5,
        frame(0x38, s("t") + b"\x00"),
        PROTOCOL_ERROR,
        "DUP flag",
    ),
    # packet identifiers
    "PUBLISH QoS 1 packet id 0": (
        4,
        frame(0x32, s("t") + u16(0) + b"x"),
        PROTOCOL_ERROR,
        "packet identifier is 0",
    ),
    "PUBLISH QoS 2 packet id 0": (
        5,
        frame(0x34, s("t") + u16(0) + b"\x00"),
        PROTOCOL_ERROR,
        "packet identifier is 0",
    ),
    "PUBACK packet id 0": (4, frame(0x40, u16(0)), PROTOCOL_ERROR, "packet identifier is 0"),
    "PUBREC packet id 0": (5, frame(0x50, u16(0)), PROTOCOL_ERROR, "packet identifier is 0"),
    "PUBREL packet id 0": (4, frame(0x62, u16(0)), PROTOCOL_ERROR, "packet identifier is 0"),
    "PUBCOMP packet id 0": (5, frame(0x70, u16(0)), PROTOCOL_ERROR, "packet identifier is 0"),
    "SUBSCRIBE packet id 0": (
        4,
        frame(0x82, u16(0) + s("t") + b"\x00"),
        PROTOCOL_ERROR,
        "packet identifier is 0",
    ),
    "SUBACK packet id 0": (
        4,
        frame(0x90, u16(0) + b"\x00"),
        PROTOCOL_ERROR,
        "packet identifier is 0",
    ),
    "UNSUBSCRIBE packet id 0": (
        5,
        frame(0xA2, u16(0) + b"\x00" + s("t")),
        PROTOCOL_ERROR,
        "packet identifier is 0",
    ),
    "UNSUBACK packet id 0": (4, frame(0xB0, u16(0)), PROTOCOL_ERROR, "packet identifier is 0"),
    # UTF-8
    "topic with invalid byte": (4, frame(0x30, raw(b"a\xffb")), MALFORMED, "not well-formed UTF-8"),
    "topic with overlong encoding": (
        4,
        frame(0x30, raw(b"\xc0\xaf")),
        MALFORMED,
        "not well-formed UTF-8",
    ),
    "topic with overlong null": (
        4,
        frame(0x30, raw(b"\xc0\x80")),
        MALFORMED,
        "not well-formed UTF-8",
    ),
    "topic with truncated sequence": (
        4,
        frame(0x30, raw(b"\xe2\x82")),
        MALFORMED,
        "not well-formed UTF-8",
    ),
    "topic above U+10FFFF": (
        4,
        frame(0x30, raw(b"\xf4\x90\x80\x80")),
        MALFORMED,
        "not well-formed UTF-8",
    ),
    "topic with surrogate": (4, frame(0x30, raw(b"a\xed\xa0\x80")), MALFORMED, "surrogate"),
    "topic with low surrogate": (
        5,
        frame(0x30, raw(b"\xed\xbf\xbf") + b"\x00"),
        MALFORMED,
        "surrogate",
    ),
    "topic with U+0000": (4, frame(0x30, raw(b"a\x00b")), MALFORMED, "U+0000"),
    "client id with U+0000": (
        None,
        frame(0x10, s("MQTT") + b"\x04\x02" + u16(0) + raw(b"\x00")),
        MALFORMED,
        "U+0000",
    ),
    "client id not UTF-8": (
        None,
        frame(0x10, s("MQTT") + b"\x04\x02" + u16(0) + raw(b"\x80")),
        MALFORMED,
        "UTF-8",
    ),
    "user name with surrogate": (
        None,
        frame(0x10, connect_body(4, 0x82, raw(b"\xed\xa0\x80"))),
        MALFORMED,
        "surrogate",
    ),
    "topic filter not UTF-8": (4, frame(0x82, u16(1) + raw(b"\xfe") + b"\x00"), MALFORMED, "UTF-8"),
    "unsubscribe filter with U+0000": (4, frame(0xA2, u16(1) + raw(b"\x00")), MALFORMED, "U+0000"),
    "user property name not UTF-8": (
        5,
        frame(0x30, s("t") + props(b"\x26" + raw(b"\xff") + s("v"))),
        MALFORMED,
        "User Property name is not well-formed UTF-8",
    ),
    "user property value with U+0000": (
        5,
        frame(0x30, s("t") + props(b"\x26" + s("k") + raw(b"\x00"))),
        MALFORMED,
        "U+0000",
    ),
    "content type with surrogate": (
        5,
        frame(0x30, s("t") + props(b"\x03" + raw(b"\xed\xb0\x80"))),
        MALFORMED,
        "surrogate",
    ),
    # lengths running past the end
    "topic length past the packet": (
        4,
        frame(0x30, u16(10) + b"abc"),
        MALFORMED,
        "topic name runs past",
    ),
    "topic length cut in half": (
        4,
        frame(0x30, b"\x00"),
        MALFORMED,
        "length of the topic name runs past",
    ),
    "PUBLISH QoS 1 without packet id": (
        4,
        frame(0x32, s("t") + b"\x00"),
        MALFORMED,
        "packet identifier runs past",
    ),
    "PUBACK without packet id": (4, frame(0x40, b""), MALFORMED, "packet identifier runs past"),
    "CONNECT cut after protocol name": (
        None,
        frame(0x10, s("MQTT")),
        MALFORMED,
        "protocol level runs past",
    ),
    "CONNECT without keep alive": (
        None,
        frame(0x10, s("MQTT") + b"\x04\x02\x00"),
        MALFORMED,
        "keep alive runs past",
    ),
    "CONNECT will payload past the end": (
        None,
        frame(0x10, s("MQTT") + b"\x04\x06" + u16(0) + s("c") + s("w") + u16(5) + b"ab"),
        MALFORMED,
        "will payload runs past",
    ),
    "CONNECT password past the end": (
        None,
        frame(0x10, connect_body(4, 0xC2, s("u") + u16(9) + b"p")),
        MALFORMED,
        "password runs past",
    ),
    "CONNECT missing user name": (
        None,
        frame(0x10, connect_body(4, 0x82)),
        MALFORMED,
        "user name runs past",
    ),
    "CONNACK too short": (4, frame(0x20, b"\x00"), MALFORMED, "reason code runs past"),
    "SUBSCRIBE without options byte": (
        4,
        frame(0x82, u16(1) + s("t")),
        MALFORMED,
        "subscription options runs past",
    ),
    # trailing bytes
    "PINGREQ with a body": (4, b"\xc0\x01\x00", MALFORMED, "unexpected byte"),
    "PINGRESP with a body": (5, b"\xd0\x01\x00", MALFORMED, "unexpected byte"),
    "3.1.1 DISCONNECT with a body": (4, b"\xe0\x01\x00", MALFORMED, "unexpected byte"),
    "3.1.1 PUBACK with a reason code": (
        4,
        frame(0x40, u16(1) + b"\x00"),
        MALFORMED,
        "unexpected byte",
    ),
    "3.1.1 PUBREL with a reason code": (
        4,
        frame(0x62, u16(1) + b"\x00"),
        MALFORMED,
        "unexpected byte",
    ),
    "3.1.1 UNSUBACK with reason codes": (
        4,
        frame(0xB0, u16(1) + b"\x00"),
        MALFORMED,
        "unexpected byte",
    ),
    "3.1.1 CONNACK with 3 bytes": (4, frame(0x20, b"\x00\x00\x00"), MALFORMED, "unexpected byte"),
    "CONNECT with a trailing byte": (
        None,
        frame(0x10, connect_body(4, tail=b"\x00")),
        MALFORMED,
        "unexpected byte",
    ),
    "MQTT 5 PUBACK after properties": (
        5,
        frame(0x40, u16(1) + b"\x00\x00\x00"),
        MALFORMED,
        "unexpected byte",
    ),
    "MQTT 5 DISCONNECT after properties": (
        5,
        frame(0xE0, b"\x00\x00\x01"),
        MALFORMED,
        "unexpected byte",
    ),
    "MQTT 5 AUTH after properties": (5, frame(0xF0, b"\x18\x00\x01"), MALFORMED, "unexpected byte"),
    # CONNECT
    "protocol MQTT level 3": (
        None,
        frame(0x10, connect_body(3, name="MQTT")),
        UNSUPPORTED,
        "unsupported protocol",
    ),
    "protocol MQIsdp level 4": (
        None,
        frame(0x10, connect_body(4, name="MQIsdp")),
        UNSUPPORTED,
        "unsupported protocol",
    ),
    "protocol MQTT level 6": (
        None,
        frame(0x10, connect_body(6, name="MQTT")),
        UNSUPPORTED,
        "unsupported protocol",
    ),
    "protocol MQTT level 0": (
        None,
        frame(0x10, connect_body(0, name="MQTT")),
        UNSUPPORTED,
        "unsupported protocol",
    ),
    "protocol name mqtt": (
        None,
        frame(0x10, connect_body(4, name="mqtt")),
        UNSUPPORTED,
        "unsupported protocol",
    ),
    "CONNECT reserved flag": (
        None,
        frame(0x10, connect_body(4, 0x03)),
        MALFORMED,
        "reserved bit 0",
    ),
    "will QoS without will flag": (
        None,
        frame(0x10, connect_body(4, 0x0A)),
        MALFORMED,
        "will QoS is set",
    ),
    "will QoS 2 without will flag": (
        None,
        frame(0x10, connect_body(5, 0x12)),
        MALFORMED,
        "will QoS is set",
    ),
    "will retain without will flag": (
        None,
        frame(0x10, connect_body(4, 0x22)),
        MALFORMED,
        "will retain",
    ),
    "will QoS 3": (
        None,
        frame(0x10, connect_body(4, 0x1E, s("w") + s("m"))),
        MALFORMED,
        "will QoS is 3",
    ),
    "3.1.1 password without user name": (
        None,
        frame(0x10, connect_body(4, 0x42, s("pw"))),
        MALFORMED,
        "without the user name",
    ),
    "3.1 password without user name": (
        None,
        frame(0x10, connect_body(3, 0x42, s("pw"))),
        MALFORMED,
        "without the user name",
    ),
    # CONNACK
    "CONNACK reserved acknowledge flags": (4, frame(0x20, b"\x02\x00"), MALFORMED, "reserved bits"),
    "MQTT 5 CONNACK reserved acknowledge flags": (
        5,
        frame(0x20, b"\x80\x00\x00"),
        MALFORMED,
        "reserved bits",
    ),
    # SUBSCRIBE / UNSUBSCRIBE / acks
    "3.1.1 SUBSCRIBE without filters": (4, frame(0x82, u16(1)), PROTOCOL_ERROR, "no topic filter"),
    "MQTT 5 SUBSCRIBE without filters": (
        5,
        frame(0x82, u16(1) + b"\x00"),
        PROTOCOL_ERROR,
        "no topic filter",
    ),
    "3.1.1 UNSUBSCRIBE without filters": (
        4,
        frame(0xA2, u16(1)),
        PROTOCOL_ERROR,
        "no topic filter",
    ),
    "MQTT 5 UNSUBSCRIBE without filters": (
        5,
        frame(0xA2, u16(1) + b"\x00"),
        PROTOCOL_ERROR,
        "no topic filter",
    ),
    "SUBACK without reason codes": (4, frame(0x90, u16(1)), MALFORMED, "no reason code"),
    "MQTT 5 UNSUBACK without reason codes": (
        5,
        frame(0xB0, u16(1) + b"\x00"),
        MALFORMED,
        "no reason code",
    ),
    "3.1.1 subscription QoS 3": (
        4,
        frame(0x82, u16(1) + s("t") + b"\x03"),
        MALFORMED,
        "QoS for 't' is 3",
    ),
    "3.1.1 subscription byte with bit 2": (
        4,
        frame(0x82, u16(1) + s("t") + b"\x04"),
        MALFORMED,
        "upper 6 bits",
    ),
    "3.1.1 subscription byte with bit 7": (
        4,
        frame(0x82, u16(1) + s("t") + b"\x81"),
        MALFORMED,
        "upper 6 bits",
    ),
    "3.1.1 second subscription bad": (
        4,
        frame(0x82, u16(1) + s("a") + b"\x00" + s("b") + b"\x10"),
        MALFORMED,
        "upper 6 bits",
    ),
    "MQTT 5 subscription QoS 3": (
        5,
        frame(0x82, u16(1) + b"\x00" + s("t") + b"\x03"),
        MALFORMED,
        "QoS for 't' is 3",
    ),
    "MQTT 5 subscription bit 6": (
        5,
        frame(0x82, u16(1) + b"\x00" + s("t") + b"\x40"),
        MALFORMED,
        "reserved bits 6-7",
    ),
    "MQTT 5 subscription bit 7": (
        5,
        frame(0x82, u16(1) + b"\x00" + s("t") + b"\x81"),
        MALFORMED,
        "reserved bits 6-7",
    ),
    "MQTT 5 retain handling 3": (
        5,
        frame(0x82, u16(1) + b"\x00" + s("t") + b"\x31"),
        PROTOCOL_ERROR,
        "retain handling",
    ),
    # properties
    "Topic Alias in CONNECT": (
        None,
        frame(0x10, s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x23" + u16(1)) + s("c")),
        MALFORMED,
        "Topic Alias (0x23) is not allowed in CONNECT",
    ),
    "Will Delay in CONNECT": (
        None,
        frame(0x10, s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x18" + u32(1)) + s("c")),
        MALFORMED,
        "Will Delay Interval (0x18) is not allowed in CONNECT",
    ),
    "Session Expiry in will properties": (
        None,
        frame(
            0x10,
            s("MQTT")
            + b"\x05\x06"
            + u16(0)
            + b"\x00"
            + s("c")
            + props(b"\x11" + u32(1))
            + s("w")
            + s("m"),
        ),
        MALFORMED,
        "not allowed in the will properties",
    ),
    "Session Expiry in PUBLISH": (
        5,
        frame(0x30, s("t") + props(b"\x11" + u32(1))),
        MALFORMED,
        "not allowed in PUBLISH",
    ),
    "Reason String in PUBLISH": (
        5,
        frame(0x30, s("t") + props(b"\x1f" + s("r"))),
        MALFORMED,
        "not allowed in PUBLISH",
    ),
    "Content Type in PUBACK": (
        5,
        frame(0x40, u16(1) + b"\x00" + props(b"\x03" + s("c"))),
        MALFORMED,
        "not allowed in PUBACK",
    ),
    "Topic Alias in SUBSCRIBE": (
        5,
        frame(0x82, u16(1) + props(b"\x23" + u16(1)) + s("t") + b"\x00"),
        MALFORMED,
        "not allowed in SUBSCRIBE",
    ),
    "Subscription Identifier in UNSUBSCRIBE": (
        5,
        frame(0xA2, u16(1) + props(b"\x0b\x01") + s("t")),
        MALFORMED,
        "not allowed in UNSUBSCRIBE",
    ),
    "Maximum QoS in DISCONNECT": (
        5,
        frame(0xE0, b"\x00" + props(b"\x24\x01")),
        MALFORMED,
        "not allowed in DISCONNECT",
    ),
    "Session Expiry in AUTH": (
        5,
        frame(0xF0, b"\x18" + props(b"\x11" + u32(1))),
        MALFORMED,
        "not allowed in AUTH",
    ),
    "unknown property id": (
        5,
        frame(0x30, s("t") + props(b"\x7f\x00")),
        MALFORMED,
        "0x7F is not an MQTT 5 property",
    ),
    "property id 0": (
        5,
        frame(0x30, s("t") + props(b"\x00")),
        MALFORMED,
        "0x00 is not an MQTT 5 property",
    ),
    "property id of 5 bytes": (
        5,
        frame(0x30, s("t") + props(b"\x80\x80\x80\x80\x01")),
        MALFORMED,
        "more than 4 bytes",
    ),
    "Session Expiry twice": (
        None,
        frame(
            0x10,
            s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x11" + u32(1), b"\x11" + u32(2)) + s("c"),
        ),
        PROTOCOL_ERROR,
        "appears more than once",
    ),
    "Topic Alias twice": (
        5,
        frame(0x30, s("t") + props(b"\x23" + u16(1), b"\x23" + u16(2))),
        PROTOCOL_ERROR,
        "appears more than once",
    ),
    "Reason String twice": (
        5,
        frame(0x40, u16(1) + b"\x00" + props(b"\x1f" + s("a"), b"\x1f" + s("b"))),
        PROTOCOL_ERROR,
        "appears more than once",
    ),
    "Subscription Identifier twice in SUBSCRIBE": (
        5,
        frame(0x82, u16(1) + props(b"\x0b\x01", b"\x0b\x02") + s("t") + b"\x00"),
        PROTOCOL_ERROR,
        "appears more than once",
    ),
    "property length past the packet": (
        5,
        frame(0x30, s("t") + b"\x0a\x01\x01"),
        MALFORMED,
        "property length (10)",
    ),
    "property length of 5 bytes": (
        5,
        frame(0x30, s("t") + b"\xff\xff\xff\xff\x01"),
        MALFORMED,
        "more than 4 bytes",
    ),
    "property value past the property section": (
        5,
        frame(0x30, s("t") + b"\x03\x02\x00\x00" + b"\x00\x00"),
        MALFORMED,
        "Message Expiry Interval runs past the end of the property section",
    ),
    "string property past the property section": (
        5,
        frame(0x30, s("t") + b"\x03\x03\x00\x03" + b"abc"),
        MALFORMED,
        "property section",
    ),
    "Subscription Identifier of 5 bytes": (
        5,
        frame(0x30, s("t") + props(b"\x0b\xff\xff\xff\xff\x01")),
        MALFORMED,
        "more than 4 bytes",
    ),
    "Subscription Identifier 0": (
        5,
        frame(0x30, s("t") + props(b"\x0b\x00")),
        PROTOCOL_ERROR,
        "is 0",
    ),
    "Topic Alias 0": (5, frame(0x30, s("t") + props(b"\x23" + u16(0))), PROTOCOL_ERROR, "is 0"),
    "Payload Format Indicator 2": (
        5,
        frame(0x30, s("t") + props(b"\x01\x02")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Receive Maximum 0": (
        None,
        frame(0x10, s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x21" + u16(0)) + s("c")),
        PROTOCOL_ERROR,
        "is 0",
    ),
    "Maximum Packet Size 0": (
        None,
        frame(0x10, s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x27" + u32(0)) + s("c")),
        PROTOCOL_ERROR,
        "is 0",
    ),
    "Request Problem Information 2": (
        None,
        frame(0x10, s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x17\x02") + s("c")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Request Response Information 7": (
        None,
        frame(0x10, s("MQTT") + b"\x05\x02" + u16(0) + props(b"\x19\x07") + s("c")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Maximum QoS 2": (
        5,
        frame(0x20, b"\x00\x00" + props(b"\x24\x02")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Retain Available 2": (
        5,
        frame(0x20, b"\x00\x00" + props(b"\x25\x02")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Wildcard Subscription Available 2": (
        5,
        frame(0x20, b"\x00\x00" + props(b"\x28\x02")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Subscription Identifier Available 2": (
        5,
        frame(0x20, b"\x00\x00" + props(b"\x29\x02")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
    "Shared Subscription Available 2": (
        5,
        frame(0x20, b"\x00\x00" + props(b"\x2a\xff")),
        PROTOCOL_ERROR,
        "must be 0 or 1",
    ),
}


@pytest.mark.parametrize(
    ("level", "data", "reason", "words"), REJECTED.values(), ids=REJECTED.keys()
)
def test_decoder_rejects(level, data, reason, words):
    error = reject(data, level)
    assert error.reason_code == reason, error.message
    assert words in error.message
    assert str(error).endswith(error.message)


# The valid packet each fixed-header test starts from, and the connection level it needs.
VALID_FOR_FLAGS = {
    PacketType.CONNECT: (None, CONNECT_V4),
    PacketType.CONNACK: (4, encode(Connack(False, 0), 4)),
    PacketType.PUBACK: (4, encode(Puback(1), 4)),
    PacketType.PUBREC: (4, encode(Pubrec(1), 4)),
    PacketType.PUBREL: (4, encode(Pubrel(1), 4)),
    PacketType.PUBCOMP: (4, encode(Pubcomp(1), 4)),
    PacketType.SUBSCRIBE: (4, encode(Subscribe(1, [("t", SubscriptionOptions(0))]), 4)),
    PacketType.SUBACK: (4, encode(Suback(1, [0]), 4)),
    PacketType.UNSUBSCRIBE: (4, encode(Unsubscribe(1, ["t"]), 4)),
    PacketType.UNSUBACK: (4, encode(Unsuback(1), 4)),
    PacketType.PINGREQ: (4, encode(Pingreq(), 4)),
    PacketType.PINGRESP: (4, encode(Pingresp(), 4)),
    PacketType.DISCONNECT: (4, encode(Disconnect(), 4)),
    PacketType.AUTH: (5, encode(Auth(), 5)),
}


@pytest.mark.parametrize("packet_type", list(VALID_FOR_FLAGS), ids=lambda t: t.name)
@pytest.mark.parametrize("flags", range(16))
def test_fixed_header_flags_must_be_exact(packet_type, flags):
    level, wire = VALID_FOR_FLAGS[packet_type]
    required = wire[0] & 0x0F
    altered = bytes([(packet_type << 4) | flags]) + wire[1:]
    if flags == required:
        assert len(decode(altered, level)) == 1
        return
    error = reject(altered, level)
    assert error.reason_code == MALFORMED
    assert error.packet_type is packet_type
    assert f"flags are 0b{flags:04b}" in error.message


def test_qos_0_dup_is_tolerated_in_3_1_1():
    assert decode(frame(0x38, s("t") + b"x"), 4) == [Publish("t", b"x", 0, dup=True)]


def test_qos_2_publish_is_decoded_for_the_broker_to_judge():
    assert decode(frame(0x34, s("t") + u16(9) + b"x"), 4) == [Publish("t", b"x", 2, packet_id=9)]


def test_password_without_user_name_is_allowed_in_mqtt_5():
    wire = frame(0x10, connect_body(5, 0x42, s("token")))
    assert decode(wire) == [Connect("MQTT", 5, "client", True, 60, password=b"token")]


def test_topics_are_not_validated_semantically():
    for topic in ("a/+/#", "", "/", "$SYS/x", "a//b", "#/+", "x" * 300):
        assert decode(encode(Publish(topic, b""), 4), 4) == [Publish(topic, b"")]


def test_repeatable_properties_collect_into_lists():
    wire = frame(
        0x30,
        s("t")
        + props(b"\x0b\x01", b"\x26" + s("a") + s("1"), b"\x0b\x7f", b"\x26" + s("a") + s("2")),
    )
    [packet] = decode(wire, 5)
    assert packet == Publish(
        "t",
        b"",
        properties={PROP_SUBSCRIPTION_ID: [1, 127], PROP_USER_PROPERTY: [("a", "1"), ("a", "2")]},
    )


def test_packet_size_limit_counts_the_whole_packet():
    fits = encode_publish("t", b"x" * 95, 0, None, 4)  # 1 + 1 + 98 bytes
    assert len(fits) == 100
    assert len(PacketDecoder(max_packet_size=100, protocol_level=4).feed(fits)) == 1
    decoder = PacketDecoder(max_packet_size=99, protocol_level=4)
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(fits[:2])  # only the fixed header: no body is waited for
    assert info.value.reason_code == TOO_LARGE
    assert info.value.packet_type is PacketType.PUBLISH
    assert "100 bytes" in info.value.message


def test_oversized_connect_is_refused_before_its_body():
    decoder = PacketDecoder(max_packet_size=1024)
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(b"\x10\xff\xff\x7f")
    assert info.value.reason_code == TOO_LARGE


def test_unsupported_protocol_leaves_the_level_unknown():
    decoder = PacketDecoder()
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(frame(0x10, connect_body(6, name="MQTT")))
    assert info.value.packet_type is PacketType.CONNECT
    assert decoder.protocol_level is None


def test_errors_carry_earlier_packets_and_stick():
    decoder = PacketDecoder()
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(CONNECT_V4 + b"\xc0\x00" + b"\xc0\x01\x00")
    assert [type(p) for p in info.value.packets] == [Connect, Pingreq]
    with pytest.raises(MalformedPacket) as again:
        decoder.feed(b"\xc0\x00")
    assert (again.value.reason_code, again.value.message) == (MALFORMED, info.value.message)
    assert again.value.packets == []


def test_incomplete_packets_wait_for_more_bytes():
    decoder = PacketDecoder()
    wire = CONNECT_V5 + encode(Publish("a", b"b" * 300, 1, packet_id=2), 5) + b"\xc0\x00"
    collected: list[Packet] = []
    for i in range(len(wire)):
        collected += decoder.feed(wire[i : i + 1])
    assert [type(p) for p in collected] == [Connect, Publish, Pingreq]
    assert decoder.feed(b"") == []


def test_a_large_packet_fed_one_byte_at_a_time_decodes_whole():
    # how its time grows with the size is measured in bench/micro.py
    decoder = PacketDecoder(protocol_level=4)
    wire = encode_publish("t", b"z" * 60_000, 0, None, 4)
    packets: list[Packet] = []
    for i in range(len(wire)):
        packets += decoder.feed(wire[i : i + 1])
    assert packets == [Publish("t", b"z" * 60_000)]


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError):
        PacketDecoder(protocol_level=6)
    with pytest.raises(ValueError):
        PacketDecoder(max_packet_size=0)


def test_public_surface():
    """Every public name the codec's modules define is exported by the package, and only those."""
    import ast

    for name in mqtt_codec.__all__:
        assert hasattr(mqtt_codec, name), name
    defined: set[str] = set()
    for source in Path(mqtt_codec.__file__).parent.glob("_*.py"):
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined |= {target.id for target in node.targets if isinstance(target, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
    public = {name for name in defined if not name.startswith("_")}
    assert "Publish" in public, "the check looks in the wrong place"
    assert public == set(mqtt_codec.__all__), public ^ set(mqtt_codec.__all__)


# --- property-based tests -------------------------------------------------------------------

# Generating whole packets is slower than generating bytes: fewer examples for those tests.
FUZZ = settings(
    max_examples=examples(500), deadline=1000, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ_PACKETS = settings(FUZZ, max_examples=examples(300))

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
binary = st.binary(max_size=24)
flag = st.integers(0, 1)
pairs = st.lists(st.tuples(text, text), min_size=1, max_size=3)

# MQTT 5 table 2-4, written out again here so the codec's own table is checked against it.
VALUE = {
    PROP_PAYLOAD_FORMAT: flag,
    PROP_MESSAGE_EXPIRY: st.integers(0, 0xFFFFFFFF),
    PROP_CONTENT_TYPE: text,
    PROP_RESPONSE_TOPIC: text,
    PROP_CORRELATION_DATA: binary,
    PROP_SUBSCRIPTION_ID: st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
    PROP_SESSION_EXPIRY: st.integers(0, 0xFFFFFFFF),
    PROP_ASSIGNED_CLIENT_ID: text,
    PROP_SERVER_KEEP_ALIVE: st.integers(0, 0xFFFF),
    PROP_AUTH_METHOD: text,
    PROP_AUTH_DATA: binary,
    PROP_REQUEST_PROBLEM_INFO: flag,
    PROP_WILL_DELAY: st.integers(0, 0xFFFFFFFF),
    PROP_REQUEST_RESPONSE_INFO: flag,
    PROP_RESPONSE_INFO: text,
    PROP_SERVER_REFERENCE: text,
    PROP_REASON_STRING: text,
    PROP_RECEIVE_MAXIMUM: st.integers(1, 0xFFFF),
    PROP_TOPIC_ALIAS_MAX: st.integers(0, 0xFFFF),
    PROP_TOPIC_ALIAS: st.integers(1, 0xFFFF),
    PROP_MAX_QOS: flag,
    PROP_RETAIN_AVAILABLE: flag,
    PROP_USER_PROPERTY: pairs,
    PROP_MAX_PACKET_SIZE: st.integers(1, 0xFFFFFFFF),
    PROP_WILDCARD_SUB_AVAILABLE: flag,
    PROP_SUB_ID_AVAILABLE: flag,
    PROP_SHARED_SUB_AVAILABLE: flag,
}
MESSAGE = [PROP_PAYLOAD_FORMAT, PROP_MESSAGE_EXPIRY, PROP_CONTENT_TYPE, PROP_RESPONSE_TOPIC]
MESSAGE += [PROP_CORRELATION_DATA, PROP_USER_PROPERTY]
ACK = [PROP_REASON_STRING, PROP_USER_PROPERTY]
ALLOWED = {
    "CONNECT": [
        PROP_SESSION_EXPIRY,
        PROP_AUTH_METHOD,
        PROP_AUTH_DATA,
        PROP_REQUEST_PROBLEM_INFO,
        PROP_REQUEST_RESPONSE_INFO,
        PROP_RECEIVE_MAXIMUM,
        PROP_TOPIC_ALIAS_MAX,
        PROP_USER_PROPERTY,
        PROP_MAX_PACKET_SIZE,
    ],
    "WILL": [*MESSAGE, PROP_WILL_DELAY],
    "CONNACK": [
        PROP_SESSION_EXPIRY,
        PROP_ASSIGNED_CLIENT_ID,
        PROP_SERVER_KEEP_ALIVE,
        PROP_AUTH_METHOD,
        PROP_AUTH_DATA,
        PROP_RESPONSE_INFO,
        PROP_SERVER_REFERENCE,
        PROP_REASON_STRING,
        PROP_RECEIVE_MAXIMUM,
        PROP_TOPIC_ALIAS_MAX,
        PROP_MAX_QOS,
        PROP_RETAIN_AVAILABLE,
        PROP_USER_PROPERTY,
        PROP_MAX_PACKET_SIZE,
        PROP_WILDCARD_SUB_AVAILABLE,
        PROP_SUB_ID_AVAILABLE,
        PROP_SHARED_SUB_AVAILABLE,
    ],
    "PUBLISH": [*MESSAGE, PROP_TOPIC_ALIAS, PROP_SUBSCRIPTION_ID],
    "ACK": ACK,
    "SUBSCRIBE": [PROP_SUBSCRIPTION_ID, PROP_USER_PROPERTY],
    "UNSUBSCRIBE": [PROP_USER_PROPERTY],
    "DISCONNECT": [*ACK, PROP_SESSION_EXPIRY, PROP_SERVER_REFERENCE],
    "AUTH": [*ACK, PROP_AUTH_METHOD, PROP_AUTH_DATA],
}


def properties(context: str, level: int) -> st.SearchStrategy[dict[int, Any]]:
    if level != 5:
        return st.just({})
    optional = {prop: VALUE[prop] for prop in ALLOWED[context]}
    if context == "SUBSCRIBE":
        optional[PROP_SUBSCRIPTION_ID] = st.builds(lambda n: [n], st.integers(1, 268_435_455))
    return st.fixed_dictionaries({}, optional=optional)


packet_id = st.integers(1, 0xFFFF)
byte = st.integers(0, 255)


def connects(level: int) -> st.SearchStrategy[Connect]:
    name = "MQIsdp" if level == 3 else "MQTT"
    wills = st.none() | st.builds(
        Will, text, binary, st.integers(0, 2), st.booleans(), properties("WILL", level)
    )
    return st.builds(
        lambda client_id, clean, keep_alive, username, password, will, props: Connect(
            name,
            level,
            client_id,
            clean,
            keep_alive,
            username,
            password if (username is not None or level == 5) else None,
            will,
            props,
        ),
        text,
        st.booleans(),
        st.integers(0, 0xFFFF),
        st.none() | text,
        st.none() | binary,
        wills,
        properties("CONNECT", level),
    )


def publishes(level: int) -> st.SearchStrategy[Publish]:
    def build(topic, payload, qos, retain, dup, pid, props):
        return Publish(
            topic,
            payload,
            qos,
            retain,
            dup and (qos > 0 or level != 5),
            pid if qos else None,
            props,
        )

    return st.builds(
        build,
        text,
        binary,
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
        packet_id,
        properties("PUBLISH", level),
    )


def packets(level: int) -> st.SearchStrategy[Packet]:
    v5 = level == 5
    reason = byte if v5 else st.just(0)
    if v5:
        options = st.builds(
            SubscriptionOptions, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2)
        )
    else:
        options = st.builds(SubscriptionOptions, st.integers(0, 2))
    ack_codes = st.lists(byte, min_size=1, max_size=4)
    suback_codes = (
        ack_codes if v5 else st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4)
    )
    choices: list[st.SearchStrategy[Packet]] = [
        st.builds(
            Connack, st.booleans(), byte if v5 else st.integers(0, 5), properties("CONNACK", level)
        ),
        publishes(level),
        st.builds(Puback, packet_id, reason, properties("ACK", level)),
        st.builds(Pubrec, packet_id, reason, properties("ACK", level)),
        st.builds(Pubrel, packet_id, reason, properties("ACK", level)),
        st.builds(Pubcomp, packet_id, reason, properties("ACK", level)),
        st.builds(
            Subscribe,
            packet_id,
            st.lists(st.tuples(text, options), min_size=1, max_size=4),
            properties("SUBSCRIBE", level),
        ),
        st.builds(Suback, packet_id, suback_codes, properties("ACK", level)),
        st.builds(
            Unsubscribe,
            packet_id,
            st.lists(text, min_size=1, max_size=4),
            properties("UNSUBSCRIBE", level),
        ),
        st.builds(Unsuback, packet_id, ack_codes if v5 else st.just([]), properties("ACK", level)),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(Disconnect, reason, properties("DISCONNECT", level)),
    ]
    if v5:
        choices.append(st.builds(Auth, reason, properties("AUTH", level)))
    return st.one_of(choices)


levels = st.sampled_from([3, 4, 5])


@st.composite
def streams(draw) -> tuple[list[Packet], bytes]:
    level = draw(levels)
    stream: list[Packet] = [draw(connects(level)), *draw(st.lists(packets(level), max_size=6))]
    return stream, b"".join(encode(packet, level) for packet in stream)


def assert_only_packets_or_malformed(decoder: PacketDecoder, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            for packet in decoder.feed(chunk):
                assert isinstance(packet, PACKET_CLASSES)
    except MalformedPacket as error:
        assert error.reason_code in (MALFORMED, PROTOCOL_ERROR, UNSUPPORTED, TOO_LARGE)
        assert error.message


@FUZZ_PACKETS
@given(st.data())
def test_generated_packets_round_trip(data):
    level = data.draw(levels)
    packet = data.draw(packets(level))
    assert decode(encode(packet, level), level) == [packet]
    connect = data.draw(connects(level))
    assert decode(encode(connect, level)) == [connect]


@FUZZ_PACKETS
@given(streams(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_yields_the_same_packets(stream, cuts):
    expected, wire = stream
    assert PacketDecoder().feed(wire) == expected
    points = sorted({cut % (len(wire) + 1) for cut in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    decoder = PacketDecoder()
    assert [packet for chunk in chunks for packet in decoder.feed(chunk)] == expected


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([None, CONNECT_V4, CONNECT_V5, b"\x10"]))
def test_arbitrary_bytes_only_ever_raise_malformed_packet(noise, prefix):
    if prefix == b"\x10":  # a CONNECT header followed by a random body
        wire = frame(0x10, s("MQTT") + bytes([5 if len(noise) % 2 else 4]) + noise)
    else:
        wire = (prefix or b"") + noise
    assert_only_packets_or_malformed(PacketDecoder(), [wire])
    assert_only_packets_or_malformed(PacketDecoder(max_packet_size=64), [wire[:7], wire[7:]])


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([3, 4, 5]))
def test_arbitrary_bytes_on_a_connected_decoder(noise, level):
    assert_only_packets_or_malformed(PacketDecoder(protocol_level=level), [noise])


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "set"]), st.integers(0, 10_000), byte
)


@FUZZ_PACKETS
@given(streams(), st.lists(mutation, min_size=1, max_size=4), st.integers(1, 64))
def test_mutated_packets_only_ever_raise_malformed_packet(stream, mutations, chunk_size):
    wire = bytearray(stream[1])
    for op, where, value in mutations:
        at = where % (len(wire) + 1)
        if op == "insert":
            wire[at:at] = bytes([value])
        elif wire and op == "delete":
            del wire[at % len(wire)]
        elif wire and op == "flip":
            wire[at % len(wire)] ^= 1 << (value % 8)
        elif wire:
            wire[at % len(wire)] = value
    data = bytes(wire)
    assert_only_packets_or_malformed(PacketDecoder(), [data])
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    assert_only_packets_or_malformed(PacketDecoder(max_packet_size=128), chunks)

"""The web client's MQTT 5 codec (client_sdk/web/src/mqtt.js) against the local broker's.

``node`` runs ``client_sdk/web/test/mqtt-cli.mjs`` once for the module; every job goes through
that one process, a JSON line each way. Both directions are checked against
:mod:`infra.local.iot.mqtt_codec`:

- what the web client sends (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PUBACK, PINGREQ,
  DISCONNECT), encoded in JavaScript, decodes in Python to the same fields, and re-encodes in
  Python to the same bytes;
- what a server sends (CONNACK, SUBACK, UNSUBACK, PUBLISH with properties, PUBACK, PINGRESP,
  DISCONNECT), encoded in Python, decodes in JavaScript to the same fields;
- seeded random batches of publishes (unicode topics, payloads of 0 to 70000 bytes) both ways;
- malformed server packets are refused by both, with the same reason code.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
    Connack,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketDecoder,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Publish,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    encode,
)

ROOT = Path(__file__).resolve().parents[2]
MQTT_CLI = ROOT / "client_sdk" / "web" / "test" / "mqtt-cli.mjs"
SEED = 20240501
BATCH = 300

PROPERTY_NAMES: dict[int, str] = {
    PROP_PAYLOAD_FORMAT: "payloadFormatIndicator",
    PROP_MESSAGE_EXPIRY: "messageExpiryInterval",
    PROP_CONTENT_TYPE: "contentType",
    PROP_RESPONSE_TOPIC: "responseTopic",
    PROP_CORRELATION_DATA: "correlationData",
    PROP_SUBSCRIPTION_ID: "subscriptionIdentifier",
    PROP_SESSION_EXPIRY: "sessionExpiryInterval",
    PROP_ASSIGNED_CLIENT_ID: "assignedClientIdentifier",
    PROP_SERVER_KEEP_ALIVE: "serverKeepAlive",
    PROP_AUTH_METHOD: "authenticationMethod",
    PROP_AUTH_DATA: "authenticationData",
    PROP_REQUEST_PROBLEM_INFO: "requestProblemInformation",
    PROP_WILL_DELAY: "willDelayInterval",
    PROP_REQUEST_RESPONSE_INFO: "requestResponseInformation",
    PROP_RESPONSE_INFO: "responseInformation",
    PROP_SERVER_REFERENCE: "serverReference",
    PROP_REASON_STRING: "reasonString",
    PROP_RECEIVE_MAXIMUM: "receiveMaximum",
    PROP_TOPIC_ALIAS_MAX: "topicAliasMaximum",
    PROP_TOPIC_ALIAS: "topicAlias",
    PROP_MAX_QOS: "maximumQos",
    PROP_RETAIN_AVAILABLE: "retainAvailable",
    PROP_USER_PROPERTY: "userProperties",
    PROP_MAX_PACKET_SIZE: "maximumPacketSize",
    PROP_WILDCARD_SUB_AVAILABLE: "wildcardSubscriptionAvailable",
    PROP_SUB_ID_AVAILABLE: "subscriptionIdentifiersAvailable",
    PROP_SHARED_SUB_AVAILABLE: "sharedSubscriptionAvailable",
}


# --------------------------------------------------------------------------------------------
# The CLI


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not on PATH: the web client's tests need Node.js 20 or later "
            "(see client_sdk/web/README.md)"
        )
    return node


class CodecCli:
    """One ``node mqtt-cli.mjs`` process: a JSON job in, a JSON result out, line by line."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [_node(), str(MQTT_CLI)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def call(self, job: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(job) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            self._process.kill()
            _, stderr = self._process.communicate(timeout=10)
            pytest.fail(f"mqtt-cli.mjs stopped:\n{stderr}")
        result: dict[str, Any] = json.loads(line)
        return result

    def encode(self, packet: dict[str, Any]) -> bytes:
        result = self.call({"op": "encode", "packet": packet})
        assert "hex" in result, f"the JavaScript encoder refused {packet}: {result}"
        return bytes.fromhex(result["hex"])

    def decode(self, data: bytes) -> list[dict[str, Any]]:
        result = self.call({"op": "decode", "hex": data.hex()})
        assert "packets" in result, f"the JavaScript decoder refused {data.hex()}: {result}"
        packets: list[dict[str, Any]] = result["packets"]
        return packets

    def close(self) -> None:
        process = self._process
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def cli() -> Iterator[CodecCli]:
    codec = CodecCli()
    yield codec
    codec.close()


def _python_decode(data: bytes, max_packet_size: int = 268_435_455) -> list[Packet]:
    return PacketDecoder(max_packet_size=max_packet_size, protocol_level=5).feed(data)


# --------------------------------------------------------------------------------------------
# Python packets as the JavaScript decoder shows them


def _js_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_js_value(item) for item in value]
    return value


def _js_properties(properties: Properties) -> dict[str, Any]:
    return {PROPERTY_NAMES[key]: _js_value(value) for key, value in properties.items()}


def _as_js(packet: Packet) -> dict[str, Any]:
    match packet:
        case Connack():
            return {
                "type": "connack",
                "sessionPresent": packet.session_present,
                "reasonCode": packet.reason_code,
                "properties": _js_properties(packet.properties),
            }
        case Publish():
            shown: dict[str, Any] = {
                "type": "publish",
                "topic": packet.topic,
                "payload": packet.payload.hex(),
                "qos": packet.qos,
                "dup": packet.dup,
                "retain": packet.retain,
                "properties": _js_properties(packet.properties),
            }
            if packet.qos:
                shown["packetId"] = packet.packet_id
            return shown
        case Puback():
            return {
                "type": "puback",
                "packetId": packet.packet_id,
                "reasonCode": packet.reason_code,
                "properties": _js_properties(packet.properties),
            }
        case Suback() | Unsuback():
            return {
                "type": "suback" if isinstance(packet, Suback) else "unsuback",
                "packetId": packet.packet_id,
                "reasonCodes": packet.reason_codes,
                "properties": _js_properties(packet.properties),
            }
        case Pingresp():
            return {"type": "pingresp"}
        case Disconnect():
            return {
                "type": "disconnect",
                "reasonCode": packet.reason_code,
                "properties": _js_properties(packet.properties),
            }
    raise AssertionError(f"a server does not send {packet!r}")


# --------------------------------------------------------------------------------------------
# Random inputs

_EXCLUDED = {0, ord("+"), ord("#"), ord("/")}


def _random_char(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        code = rng.randint(0x20, 0x7E)
    elif roll < 0.7:
        code = rng.randint(0x80, 0x7FF)
    elif roll < 0.9:
        code = rng.choice([rng.randint(0x800, 0xD7FF), rng.randint(0xE000, 0xFFFF), 0xFEFF])
    else:
        code = rng.randint(0x10000, 0x10FFFF)
    return "x" if code in _EXCLUDED else chr(code)


def _random_text(rng: random.Random, longest: int = 12) -> str:
    return "".join(_random_char(rng) for _ in range(rng.randint(0, longest)))


def _random_topic(rng: random.Random) -> str:
    topic = "/".join(_random_text(rng, 8) for _ in range(rng.randint(1, 5)))
    return topic or "t"


def _random_payload(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        size = 0
    elif roll < 0.7:
        size = rng.randint(1, 300)
    else:
        size = rng.randint(300, 70_000)
    return rng.randbytes(size)


def _random_publish_properties(rng: random.Random) -> Properties:
    choices: dict[int, Any] = {
        PROP_PAYLOAD_FORMAT: rng.randint(0, 1),
        PROP_MESSAGE_EXPIRY: rng.randint(0, 0xFFFF_FFFF),
        PROP_CONTENT_TYPE: _random_text(rng),
        PROP_RESPONSE_TOPIC: _random_topic(rng),
        PROP_CORRELATION_DATA: rng.randbytes(rng.randint(0, 64)),
        PROP_SUBSCRIPTION_ID: [rng.randint(1, 268_435_455) for _ in range(rng.randint(1, 3))],
        PROP_TOPIC_ALIAS: rng.randint(1, 0xFFFF),
        PROP_USER_PROPERTY: [
            (_random_text(rng), _random_text(rng)) for _ in range(rng.randint(1, 3))
        ],
    }
    return {key: value for key, value in choices.items() if rng.random() < 0.4}


# --------------------------------------------------------------------------------------------
# What the web client sends, encoded in JavaScript, decoded in Python

CONNECTS: dict[str, tuple[dict[str, Any], Connect]] = {
    "the defaults": (
        {"clientId": "web-1", "keepAlive": 60},
        Connect("MQTT", 5, "web-1", True, 60),
    ),
    "every option": (
        {
            "clientId": "us-east-1:0f0e-ü",
            "keepAlive": 1200,
            "cleanStart": False,
            "sessionExpiryInterval": 3600,
            "receiveMaximum": 100,
            "maximumPacketSize": 131_072,
            "username": "user?SDK=tidings",
            "password": {"hex": "00ff10"},
        },
        Connect(
            "MQTT",
            5,
            "us-east-1:0f0e-ü",
            False,
            1200,
            "user?SDK=tidings",
            b"\x00\xff\x10",
            None,
            {PROP_SESSION_EXPIRY: 3600, PROP_RECEIVE_MAXIMUM: 100, PROP_MAX_PACKET_SIZE: 131_072},
        ),
    ),
    "an empty client id, a text password, no keep-alive": (
        {"clientId": "", "keepAlive": 0, "password": "sëcret"},
        Connect("MQTT", 5, "", True, 0, None, "sëcret".encode()),
    ),
}


@pytest.mark.parametrize("name", CONNECTS)
def test_connect_from_javascript_decodes_in_python(cli: CodecCli, name: str) -> None:
    options, expected = CONNECTS[name]
    data = cli.encode({"type": "connect", **options})
    assert _python_decode_connect(data) == expected
    assert encode(expected, 5) == data


def _python_decode_connect(data: bytes) -> Connect:
    packets = PacketDecoder().feed(data)  # no protocol level given: the stream opens with CONNECT
    assert len(packets) == 1
    connect = packets[0]
    assert isinstance(connect, Connect)
    return connect


CLIENT_PACKETS: dict[str, tuple[dict[str, Any], Packet]] = {
    "SUBSCRIBE": (
        {
            "type": "subscribe",
            "packetId": 1,
            "subscriptions": [
                {"topicFilter": "users/+/todos", "qos": 1},
                {"topicFilter": "news/#", "qos": 0},
                {"topicFilter": "频道/😀", "qos": 1},
            ],
        },
        Subscribe(
            1,
            [
                ("users/+/todos", SubscriptionOptions(1)),
                ("news/#", SubscriptionOptions(0)),
                ("频道/😀", SubscriptionOptions(1)),
            ],
        ),
    ),
    "UNSUBSCRIBE": (
        {"type": "unsubscribe", "packetId": 65535, "topicFilters": ["users/+/todos", "#"]},
        Unsubscribe(65535, ["users/+/todos", "#"]),
    ),
    "PUBLISH at QoS 0, retained": (
        {"type": "publish", "topic": "a/b", "payload": "hello", "retain": True},
        Publish("a/b", b"hello", 0, True),
    ),
    "PUBLISH at QoS 1, a duplicate, bytes": (
        {
            "type": "publish",
            "topic": "\ufeffé/中",
            "payload": {"hex": "00010203"},
            "qos": 1,
            "packetId": 77,
            "dup": True,
        },
        Publish("\ufeffé/中", b"\x00\x01\x02\x03", 1, False, True, 77),
    ),
    "PUBACK, success": ({"type": "puback", "packetId": 4660}, Puback(4660)),
    "PUBACK with a reason code": (
        {"type": "puback", "packetId": 9, "reasonCode": 0x80},
        Puback(9, 0x80),
    ),
    "PINGREQ": ({"type": "pingreq"}, Pingreq()),
    "DISCONNECT, normal": ({"type": "disconnect"}, Disconnect()),
    "DISCONNECT with a reason code": ({"type": "disconnect", "reasonCode": 4}, Disconnect(4)),
}


@pytest.mark.parametrize("name", CLIENT_PACKETS)
def test_client_packet_from_javascript_decodes_in_python(cli: CodecCli, name: str) -> None:
    packet, expected = CLIENT_PACKETS[name]
    data = cli.encode(packet)
    assert _python_decode(data) == [expected]
    assert encode(expected, 5) == data


def test_random_publishes_from_javascript_decode_in_python(cli: CodecCli) -> None:
    rng = random.Random(SEED)
    for _ in range(BATCH):
        qos = rng.randint(0, 1)
        packet_id = rng.randint(1, 0xFFFF) if qos else None
        expected = Publish(
            topic=_random_topic(rng),
            payload=_random_payload(rng),
            qos=qos,
            retain=rng.random() < 0.3,
            dup=qos == 1 and rng.random() < 0.3,
            packet_id=packet_id,
        )
        data = cli.encode(
            {
                "type": "publish",
                "topic": expected.topic,
                "payload": {"hex": expected.payload.hex()},
                "qos": qos,
                "packetId": packet_id,
                "retain": expected.retain,
                "dup": expected.dup,
            }
        )
        assert _python_decode(data) == [expected], expected.topic
        assert encode(expected, 5) == data


def test_javascript_refuses_what_python_would_not_send_either(cli: CodecCli) -> None:
    for packet in (
        {"type": "publish", "topic": "a/+", "payload": ""},
        {"type": "publish", "topic": "a\u0000", "payload": ""},
        {"type": "publish", "topic": "t", "payload": "", "qos": 1},
        {"type": "subscribe", "packetId": 0, "subscriptions": [{"topicFilter": "a", "qos": 0}]},
        {"type": "connect", "clientId": "x" * 65_536, "keepAlive": 1},
    ):
        result = cli.call({"op": "encode", "packet": packet})
        assert result.get("name") in ("RangeError", "TypeError"), (packet, result)


# --------------------------------------------------------------------------------------------
# What a server sends, encoded in Python, decoded in JavaScript

SERVER_PACKETS: dict[str, Packet] = {
    "CONNACK, new session": Connack(False),
    "CONNACK with AWS IoT's properties and more": Connack(
        True,
        0,
        {
            PROP_RECEIVE_MAXIMUM: 100,
            PROP_MAX_QOS: 1,
            PROP_RETAIN_AVAILABLE: 1,
            PROP_MAX_PACKET_SIZE: 149_504,
            PROP_TOPIC_ALIAS_MAX: 8,
            PROP_WILDCARD_SUB_AVAILABLE: 1,
            PROP_SUB_ID_AVAILABLE: 0,
            PROP_SHARED_SUB_AVAILABLE: 1,
            PROP_SERVER_KEEP_ALIVE: 1200,
            PROP_SESSION_EXPIRY: 0xFFFF_FFFF,
            PROP_ASSIGNED_CLIENT_ID: "assigned-ü",
            PROP_RESPONSE_INFO: "resp/",
            PROP_SERVER_REFERENCE: "other.example",
            PROP_REASON_STRING: "welcome ✓",
            PROP_AUTH_METHOD: "SCRAM-SHA-1",
            PROP_AUTH_DATA: b"\x00\x01",
            PROP_USER_PROPERTY: [("k", "v1"), ("k", "v2"), ("", "")],
        },
    ),
    "CONNACK, not authorized": Connack(False, 0x87, {PROP_REASON_STRING: "denied"}),
    "SUBACK": Suback(1, [0, 1, 0x87]),
    "SUBACK with a reason string": Suback(
        65535, [0x80], {PROP_REASON_STRING: "no", PROP_USER_PROPERTY: [("a", "b")]}
    ),
    "UNSUBACK": Unsuback(2, [0, 0x11]),
    "PUBLISH at QoS 0": Publish("orders/42", b'{"seq":1}'),
    "PUBLISH at QoS 1 with every message property": Publish(
        "orders/42/é",
        b"\x00" * 1000,
        1,
        True,
        True,
        65535,
        {
            PROP_PAYLOAD_FORMAT: 1,
            PROP_MESSAGE_EXPIRY: 3600,
            PROP_CONTENT_TYPE: "application/json",
            PROP_RESPONSE_TOPIC: "reply/to",
            PROP_CORRELATION_DATA: b"\x09\x08",
            PROP_SUBSCRIPTION_ID: [1, 127, 128, 16_383, 16_384, 268_435_455],
            PROP_TOPIC_ALIAS: 3,
            PROP_USER_PROPERTY: [("k", "😀")],
        },
    ),
    "PUBLISH at QoS 1, topic alias only": Publish(
        "", b"x", 1, False, False, 1, {PROP_TOPIC_ALIAS: 2}
    ),
    "PUBACK, success": Puback(10),
    "PUBACK with a reason string": Puback(10, 0x10, {PROP_REASON_STRING: "no subscribers"}),
    "PINGRESP": Pingresp(),
    "DISCONNECT, normal": Disconnect(),
    "DISCONNECT with a reason code": Disconnect(0x8E),
    "DISCONNECT with properties": Disconnect(
        0x9C,
        {
            PROP_SERVER_REFERENCE: "b.example",
            PROP_REASON_STRING: "moved",
            PROP_SESSION_EXPIRY: 0,
            PROP_USER_PROPERTY: [("why", "maintenance")],
        },
    ),
}


@pytest.mark.parametrize("name", SERVER_PACKETS)
def test_server_packet_from_python_decodes_in_javascript(cli: CodecCli, name: str) -> None:
    packet = SERVER_PACKETS[name]
    assert cli.decode(encode(packet, 5)) == [_as_js(packet)]


def test_a_stream_of_server_packets_decodes_in_javascript(cli: CodecCli) -> None:
    packets = list(SERVER_PACKETS.values())
    data = b"".join(encode(packet, 5) for packet in packets)
    assert cli.decode(data) == [_as_js(packet) for packet in packets]


def test_random_publishes_from_python_decode_in_javascript(cli: CodecCli) -> None:
    rng = random.Random(SEED + 1)
    for _ in range(BATCH):
        qos = rng.randint(0, 1)
        packet = Publish(
            topic=_random_topic(rng),
            payload=_random_payload(rng),
            qos=qos,
            retain=rng.random() < 0.3,
            dup=qos == 1 and rng.random() < 0.3,
            packet_id=rng.randint(1, 0xFFFF) if qos else None,
            properties=_random_publish_properties(rng),
        )
        assert cli.decode(encode(packet, 5)) == [_as_js(packet)], packet.topic


# --------------------------------------------------------------------------------------------
# Malformed server packets: both codecs refuse them, with the same reason code

MALFORMED: dict[str, tuple[str, int]] = {
    "CONNACK with fixed-header flags": ("2103 00 00 00", 0x81),
    "CONNACK with reserved acknowledge flags": ("2003 02 00 00", 0x81),
    "PINGRESP with a body": ("d001 00", 0x81),
    "a remaining length of 5 bytes": ("30 ff ff ff ff 7f", 0x81),
    "an unknown property": ("2005 00 00 02 05 00", 0x81),
    "a property not allowed in CONNACK": ("2006 00 00 03 23 00 01", 0x81),
    "a property appearing twice": ("2009 00 00 06 21 00 01 21 00 02", 0x82),
    "Maximum QoS 2": ("2005 00 00 02 24 02", 0x82),
    "Receive Maximum 0": ("2006 00 00 03 21 00 00", 0x82),
    "a topic that is not UTF-8": ("3004 0001 ff 00", 0x81),
    "a UTF-8 encoded surrogate": ("3006 0003 eda080 00", 0x81),
    "a topic with U+0000": ("3004 0001 00 00", 0x81),
    "PUBLISH at QoS 3": ("3604 0001 61 00", 0x81),
    "PUBLISH at QoS 1 with packet id 0": ("3206 0001 61 0000 00", 0x82),
    "DUP on a QoS 0 PUBLISH": ("3804 0001 61 00", 0x82),
    "SUBACK without reason codes": ("9003 0001 00", 0x81),
    "UNSUBACK without reason codes": ("b003 0001 00", 0x81),
    "PUBACK with a byte too many": ("4005 0001 00 00 00", 0x81),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_both_codecs_refuse_a_malformed_packet(cli: CodecCli, name: str) -> None:
    hex_text, reason_code = MALFORMED[name]
    data = bytes.fromhex(hex_text.replace(" ", ""))
    with pytest.raises(MalformedPacket) as refused:
        _python_decode(data)
    assert refused.value.reason_code == reason_code
    result = cli.call({"op": "decode", "hex": data.hex()})
    assert (result.get("name"), result.get("reasonCode")) == ("MqttProtocolError", reason_code)


def test_both_codecs_refuse_an_oversized_packet_from_its_fixed_header(cli: CodecCli) -> None:
    header = encode(Publish("t", b"\x00" * 1000), 5)[:3]  # the fixed header alone
    with pytest.raises(MalformedPacket) as refused:
        _python_decode(header, max_packet_size=1000)
    assert refused.value.reason_code == 0x95
    result = cli.call({"op": "decode", "hex": header.hex(), "maxPacketSize": 1000})
    assert (result.get("name"), result.get("reasonCode")) == ("MqttProtocolError", 0x95)

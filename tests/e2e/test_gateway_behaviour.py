"""AWS IoT Core behaviours of the gateway, checked on the wire with exact reason codes."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.iot import mqtt_codec as mq
from infra.local.iot.broker import BrokerConfig
from infra.local.iot.gateway import Gateway, GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread
from tests.support.identities import Identity, new_identity, new_monitor, new_publisher
from tests.support.raw_mqtt import RawClient, mask_frame
from tests.support.real_clients import iot_data_client


def raw(gateway: Gateway, identity: Identity, level: int = 5, **kwargs) -> RawClient:
    client = RawClient(gateway.port, gateway.ca_file, identity, protocol_level=level, **kwargs)
    assert client.status == 101, client.response_head
    return client


def connected(
    gateway: Gateway, level: int = 5, suffix: str = "a", identity: Identity | None = None, **kwargs
) -> tuple[RawClient, Identity]:
    identity = identity or new_identity(gateway.credentials)
    client = raw(gateway, identity, level)
    ack = client.connect(f"{identity.identity_id}-{suffix}", **kwargs)
    assert ack.reason_code == 0
    return client, identity


@pytest.fixture(scope="module")
def fast_gateway(state_dir: Path) -> Iterator[Gateway]:
    """A gateway with short timers: keep-alive floor 1 s, 2 s connection lifetime, 5 pub/s."""
    config = GatewayConfig(
        port=0,
        state_dir=state_dir,
        handshake_timeout_s=1.0,
        broker=BrokerConfig(
            keepalive_min_s=1, max_connection_s=3.0, publish_rate_per_s=5.0, connect_timeout_s=1.0
        ),
    )
    with GatewayThread(config, CredentialStore()) as running:
        assert running.gateway is not None
        yield running.gateway


# ------------------------------------------------------------------ authorisation outcomes
def test_unauthorized_publish_v5_qos1_gets_puback_0x87_and_stays_connected(gateway: Gateway):
    client, me = connected(gateway)
    other = new_identity(gateway.credentials)
    client.publish(other.topic(), b"x", qos=1, packet_id=7)
    puback = client.recv_until(mq.Puback)
    assert isinstance(puback, mq.Puback) and puback.reason_code == 0x87
    client.publish(me.topic(), b"ok", qos=1, packet_id=8)
    puback = client.recv_until(mq.Puback)
    assert isinstance(puback, mq.Puback) and puback.packet_id == 8 and puback.reason_code == 0


def test_unauthorized_publish_v311_disconnects(gateway: Gateway):
    client, _ = connected(gateway, level=4)
    other = new_identity(gateway.credentials)
    client.publish(other.topic(), b"x", qos=1, packet_id=1)
    assert client.is_closed()


def test_refused_subscription_codes(gateway: Gateway):
    v5, _ = connected(gateway, suffix="v5")
    v3, _ = connected(gateway, level=4, suffix="v3")
    stranger = new_identity(gateway.credentials).topic()
    assert v5.subscribe(stranger).reason_codes == [0x87]
    assert v3.subscribe(stranger).reason_codes == [0x80]


# ------------------------------------------------------------------ QoS, wildcards, retained
def test_qos2_refused(gateway: Gateway):
    v5, me = connected(gateway, suffix="q5")
    v5.publish(me.topic(), b"x", qos=2, packet_id=3)
    disconnect = v5.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x9B
    v3, me3 = connected(gateway, level=4, suffix="q3")
    assert v3.subscribe(me3.topic(), qos=2).reason_codes == [1]  # granted QoS 1, not 2
    v3.publish(me3.topic(), b"x", qos=2, packet_id=3)
    assert v3.is_closed()


def test_wildcards_and_retained(gateway: Gateway):
    client, me = connected(gateway)
    base = f"tidings/dev/users/{me.identity_id}"
    client.publish(f"{base}/retained", b"kept", qos=1, packet_id=1, retain=True)
    assert client.recv_until(mq.Puback) is not None
    assert client.subscribe(f"{base}/+").reason_codes == [1]
    exact, _ = connected(gateway, suffix="b", identity=me)
    assert exact.subscribe(f"{base}/retained").reason_codes == [1]
    retained = exact.recv_until(mq.Publish)
    assert isinstance(retained, mq.Publish) and retained.payload == b"kept" and retained.retain
    # the wildcard subscription got no retained message: the next PUBLISH is the live one
    client.publish(f"{base}/live", b"live", qos=0)
    got = client.recv_until(mq.Publish)
    assert isinstance(got, mq.Publish) and got.topic == f"{base}/live"
    hash_client, _ = connected(gateway, suffix="c", identity=me)
    assert hash_client.subscribe(f"{base}/#").reason_codes == [1]
    client.publish(f"{base}/deep/er", b"d", qos=0)
    got = hash_client.recv_until(mq.Publish)
    assert isinstance(got, mq.Publish) and got.topic == f"{base}/deep/er"


def test_persistent_session_keeps_qos1_messages_while_offline(gateway: Gateway):
    me = new_identity(gateway.credentials)
    client, _ = connected(gateway, level=4, identity=me, suffix="p", clean=False)
    assert client.subscribe(me.topic()).reason_codes == [1]
    client.send(mq.Disconnect())
    client.close()
    publisher = iot_data_client(gateway.port, gateway.ca_file, new_publisher(gateway.credentials))
    for n in range(3):
        publisher.publish(topic=me.topic(), qos=1, payload=f"offline-{n}".encode())
    again = raw(gateway, me, level=4)
    ack = again.connect(f"{me.identity_id}-p", clean=False)
    assert ack.session_present
    payloads = []
    for _ in range(3):
        message = again.recv_until(mq.Publish)
        assert isinstance(message, mq.Publish)
        payloads.append(message.payload)
        again.send(mq.Puback(message.packet_id or 0))
    assert payloads == [b"offline-0", b"offline-1", b"offline-2"]


def test_unacknowledged_qos1_is_redelivered_with_dup_on_reconnect(gateway: Gateway):
    me = new_identity(gateway.credentials)
    client, _ = connected(gateway, level=4, identity=me, suffix="r", clean=False)
    assert client.subscribe(me.topic()).reason_codes == [1]
    publisher = iot_data_client(gateway.port, gateway.ca_file, new_publisher(gateway.credentials))
    publisher.publish(topic=me.topic(), qos=1, payload=b"ack me")
    first = client.recv_until(mq.Publish)
    assert isinstance(first, mq.Publish) and not first.dup
    client.close()  # no PUBACK
    time.sleep(0.2)
    again = raw(gateway, me, level=4)
    assert again.connect(f"{me.identity_id}-r", clean=False).session_present
    redelivered = again.recv_until(mq.Publish)
    assert isinstance(redelivered, mq.Publish)
    assert redelivered.payload == b"ack me" and redelivered.dup
    assert redelivered.packet_id == first.packet_id


# ------------------------------------------------------------------ limits
def test_topic_and_subscription_limits(gateway: Gateway):
    client, me = connected(gateway)
    base = f"tidings/dev/users/{me.identity_id}"
    too_deep = base + "/a/b/c/d/e"
    assert client.subscribe(too_deep).reason_codes == [0x8F]
    assert client.subscribe(base + "/" + "x" * 300).reason_codes == [0x8F]
    assert client.subscribe(base + "/a#").reason_codes == [0x8F]
    nine = [f"{base}/f{n}" for n in range(9)]
    assert client.subscribe(*nine, packet_id=2).reason_codes == [1] * 8 + [0x97]
    codes = []
    for start in range(0, 48, 8):
        batch = [f"{base}/h{n}" for n in range(start, start + 8)]
        codes += client.subscribe(*batch, packet_id=3 + start).reason_codes
    # 8 from before + 42 granted = 50; the rest are refused with Quota exceeded
    assert codes.count(1) == 42 and codes.count(0x97) == 6
    client.publish(base + "/a/b/c/d/e", b"x", qos=0)
    disconnect = client.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x90


def test_oversized_payload_disconnects(gateway: Gateway):
    client, me = connected(gateway)
    client.publish(me.topic(), b"x" * (128 * 1024 + 1), qos=0)
    disconnect = client.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x95


def test_client_id_longer_than_128_bytes_refused(gateway: Gateway):
    identity = new_identity(gateway.credentials)
    client = raw(gateway, identity)
    ack = client.connect(identity.identity_id + "-" + "x" * 128)
    assert ack.reason_code == 0x85


def test_keepalive_is_clamped_and_enforced(fast_gateway: Gateway, gateway: Gateway):
    _client, _ = connected(gateway, keep_alive=5)
    assert gateway.broker.config.keepalive_min_s == 30
    # the default gateway raised 5 s to AWS IoT's 30 s floor and told the client
    # (CONNACK Server Keep Alive) - checked through the broker's record of the connection
    assert any(c.keep_alive == 30 for c in gateway.broker.connections)
    quiet, _ = connected(fast_gateway, keep_alive=1)
    started = time.time()
    disconnect = quiet.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x8D
    assert time.time() - started >= 1.4


def test_server_keep_alive_property_sent(gateway: Gateway):
    identity = new_identity(gateway.credentials)
    client = raw(gateway, identity)
    ack = client.connect(f"{identity.identity_id}-k", keep_alive=5)
    assert ack.properties[mq.PROP_SERVER_KEEP_ALIVE] == 30
    assert ack.properties[mq.PROP_MAX_QOS] == 1


def test_connection_lifetime_limit(fast_gateway: Gateway):
    client, _ = connected(fast_gateway, keep_alive=60)
    deadline = time.time() + 10
    while time.time() < deadline:
        client.send(mq.Pingreq())
        packet = client.recv()
        if isinstance(packet, mq.Disconnect):
            assert packet.reason_code == 0xA0
            return
        time.sleep(0.3)
    pytest.fail("connection outlived max_connection_s")


def test_publish_rate_limit(fast_gateway: Gateway):
    client, me = connected(fast_gateway)
    codes = []
    for n in range(1, 13):
        client.publish(me.topic(), b"x", qos=1, packet_id=n)
    while len(codes) < 12:
        packet = client.recv_until(mq.Puback)
        assert isinstance(packet, mq.Puback)
        codes.append(packet.reason_code)
    assert codes.count(0) <= 6 and codes.count(0x97) >= 6


# ------------------------------------------------------------------ takeover, lifecycle
def test_client_id_takeover_and_lifecycle_events(gateway: Gateway):
    monitor = raw(gateway, new_monitor(gateway.credentials))
    assert monitor.connect("monitor-1").reason_code == 0
    assert monitor.subscribe(
        "$aws/events/presence/+/+", "$aws/events/subscriptions/+/+"
    ).reason_codes == [1, 1]
    me = new_identity(gateway.credentials)
    first, _ = connected(gateway, identity=me, suffix="same")
    second, _ = connected(gateway, identity=me, suffix="same")
    disconnect = first.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x8E
    second.subscribe(me.topic())
    events = []
    deadline = time.time() + 5
    while time.time() < deadline and len(events) < 4:
        packet = monitor.recv_until(mq.Publish)
        assert isinstance(packet, mq.Publish)
        body = json.loads(packet.payload)
        if body.get("clientId") == f"{me.identity_id}-same":
            events.append((packet.topic, body))
            monitor.send(mq.Puback(packet.packet_id or 0))
    kinds = [body["eventType"] for _, body in events]
    assert kinds == ["connected", "connected", "disconnected", "subscribed"] or kinds == [
        "connected",
        "disconnected",
        "connected",
        "subscribed",
    ]
    dropped = next(body for _, body in events if body["eventType"] == "disconnected")
    assert dropped["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert dropped["clientInitiatedDisconnect"] is False
    for _, body in events:
        assert {
            "clientId",
            "timestamp",
            "eventType",
            "sessionIdentifier",
            "principalIdentifier",
        } <= set(body)
    connects = [body for _, body in events if body["eventType"] == "connected"]
    assert connects[0]["versionNumber"] < connects[1]["versionNumber"]
    assert events[-1][1]["topics"] == [me.topic()]


def test_will_message_published_when_connection_drops(gateway: Gateway):
    me = new_identity(gateway.credentials)
    watcher, _ = connected(gateway, identity=me, suffix="watch")
    assert watcher.subscribe(me.topic("status")).reason_codes == [1]
    will = mq.Will(me.topic("status"), b"gone", 1, False, {})
    dying, _ = connected(gateway, level=4, identity=me, suffix="dying", will=will)
    dying.sock.close()  # no DISCONNECT: the will must go out
    message = watcher.recv_until(mq.Publish)
    assert isinstance(message, mq.Publish) and message.payload == b"gone"


# ------------------------------------------------------------------ bad input
def _healthy_pair(gateway: Gateway) -> tuple[RawClient, Identity]:
    client, me = connected(gateway, suffix="healthy")
    assert client.subscribe(me.topic()).reason_codes == [1]
    return client, me


def _still_served(gateway: Gateway, client: RawClient, me: Identity, n: int) -> None:
    publisher = iot_data_client(gateway.port, gateway.ca_file, new_publisher(gateway.credentials))
    publisher.publish(topic=me.topic(), qos=0, payload=f"still-{n}".encode())
    message = client.recv_until(mq.Publish)
    assert isinstance(message, mq.Publish) and message.payload == f"still-{n}".encode()


BAD_STREAMS = {
    "first packet not CONNECT": b"\xc0\x00",
    "remaining length over 4 bytes": b"\x10\xff\xff\xff\xff\x7f",
    "truncated CONNECT then garbage flags": b"\x10\x02\x00",
    "reserved packet type 0": b"\x00\x00",
}


@pytest.mark.parametrize("name", sorted(BAD_STREAMS))
def test_malformed_first_packets_close_only_that_connection(gateway: Gateway, name: str):
    healthy, me = _healthy_pair(gateway)
    bad = raw(gateway, new_identity(gateway.credentials))
    bad.send_bytes(BAD_STREAMS[name])
    if name == "truncated CONNECT then garbage flags":
        bad.send_bytes(b"\xff" * 8)
    assert bad.is_closed()
    _still_served(gateway, healthy, me, 1)


def test_malformed_packets_after_connect(gateway: Gateway):
    healthy, me = _healthy_pair(gateway)
    cases = [
        b"\x30\x05\x00\x02\xc3\x28x",  # PUBLISH whose topic is not UTF-8
        b"\x82\x03\x00\x01\x00",  # SUBSCRIBE without a filter
        b"\x32\x04\x00\x01a\x00\x00",  # PUBLISH QoS 1 with packet id 0
        b"\x10\x00",  # a second CONNECT
    ]
    for n, data in enumerate(cases):
        client, _ = connected(gateway, level=4, suffix=f"bad{n}")
        client.send_bytes(data)
        assert client.is_closed(), data
    _still_served(gateway, healthy, me, 2)


def test_text_frame_and_unmasked_frame_close_the_websocket(gateway: Gateway):
    client, _ = connected(gateway, suffix="text")
    client.sock.sendall(mask_frame(b"hello", opcode=0x1))
    assert client.is_closed() and client.close_code == 1003
    other, _ = connected(gateway, suffix="unmasked")
    other.sock.sendall(b"\x82\x02\xc0\x00")
    assert other.is_closed() and other.close_code == 1002


def test_half_open_flood_does_not_stop_service(fast_gateway: Gateway):
    healthy, me = _healthy_pair(fast_gateway)
    sockets = []
    for n in range(200):
        s = socket.create_connection(("127.0.0.1", fast_gateway.port))
        if n % 2:
            s.sendall(b"\x16\x03\x01\x00\x05")  # a TLS record header and no more
        sockets.append(s)
    _still_served(fast_gateway, healthy, me, 3)
    time.sleep(2.0)  # handshake timeout is 1 s here
    closed = 0
    for s in sockets:
        s.settimeout(2)
        try:
            if s.recv(1) == b"":
                closed += 1
        except ConnectionResetError:
            closed += 1
        except TimeoutError:
            pass  # still open: counted as not closed
        s.close()
    assert closed == 200
    _still_served(fast_gateway, healthy, me, 4)


def test_http_errors_are_json(gateway: Gateway):
    context = ssl.create_default_context(cafile=str(gateway.ca_file))

    def request(text: str) -> tuple[int, dict]:
        with (
            socket.create_connection(("127.0.0.1", gateway.port)) as raw_sock,
            context.wrap_socket(raw_sock, server_hostname="localhost") as tls,
        ):
            tls.sendall(text.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            while len(body) < length:
                body += tls.recv(4096)
            return int(head.split(b" ")[1]), json.loads(body)

    status, body = request("GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == 404 and body["error"] == "not_found" and body["message"]
    status, body = request("GARBAGE\r\n\r\n")
    assert status == 400 and "request line" in body["message"]
    status, body = request(
        "POST /topics/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    assert status == 403 and body["error"] == "malformed"


def test_iot_data_bad_requests(gateway: Gateway):
    from botocore.exceptions import ClientError

    publisher = iot_data_client(gateway.port, gateway.ca_file, new_publisher(gateway.credentials))
    with pytest.raises(ClientError) as too_big:
        publisher.publish(topic="tidings/dev/public/x", qos=0, payload=b"x" * (128 * 1024 + 1))
    assert too_big.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    with pytest.raises(ClientError) as bad_topic:
        publisher.publish(topic="tidings/dev/public/a/b/c/d/e/f", qos=0, payload=b"x")
    assert bad_topic.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

"""The local Greengrass nucleus against awsiotsdk's own IPC client, over a real Unix socket.

An in-memory bridge stands for IoT Core in most tests; the last ones bridge through
:class:`MqttBridge` to the local gateway's mTLS port with the core device's certificate.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from awsiot.eventstreamrpc import AccessDeniedError
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS, IoTCoreMessage, ServiceError, UnauthorizedError

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.awsauth.devices import DeviceCA
from infra.local.greengrass import eventstream as es
from infra.local.greengrass.mqtt_bridge import MqttBridge
from infra.local.greengrass.nucleus import LocalNucleus, OnMessage, filter_covers, topic_matches
from infra.local.iot.gateway import GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread
from tests.support.devices import MemoryDeviceDirectory, issue_device

PUMP = "com.example.Pump"
PUMP_SVCUID = "pump-svcuid-0123456789"
ALLOWED = "tidings/dev/things/pump-1/#"
ACCESS = {
    "aws.greengrass.ipc.mqttproxy": {
        "com.example.Pump:mqttproxy:1": {
            "policyDescription": "the pump's own topics",
            "operations": ["aws.greengrass#SubscribeToIoTCore", "aws.greengrass#PublishToIoTCore"],
            "resources": [ALLOWED],
        }
    }
}


class InMemoryBridge:
    """The nucleus's IoT Core connection, in memory: records calls, delivers on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: list[tuple[str, int, OnMessage]] = []
        self.published: list[tuple[str, bytes, int]] = []
        self.changed = threading.Condition(self.lock)

    def subscribe(self, topic_filter: str, qos: int, on_message: OnMessage) -> None:
        with self.changed:
            self.subscriptions.append((topic_filter, qos, on_message))
            self.changed.notify_all()

    def unsubscribe(self, topic_filter: str, on_message: OnMessage) -> None:
        with self.changed:
            self.subscriptions = [
                entry
                for entry in self.subscriptions
                if not (entry[0] == topic_filter and entry[2] == on_message)
            ]
            self.changed.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        with self.changed:
            self.published.append((topic, payload, qos))
            self.changed.notify_all()

    def deliver(self, topic: str, payload: bytes) -> int:
        with self.lock:
            targets = [entry[2] for entry in self.subscriptions if topic_matches(entry[0], topic)]
        for on_message in targets:
            on_message(topic, payload)
        return len(targets)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="gg-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bridge() -> InMemoryBridge:
    return InMemoryBridge()


@pytest.fixture
def nucleus(socket_dir: str, bridge: InMemoryBridge) -> Iterator[LocalNucleus]:
    path = os.path.join(socket_dir, "ipc.socket")
    with LocalNucleus(path, {PUMP: (PUMP_SVCUID, ACCESS)}, bridge) as running:
        yield running


def connect(
    nucleus: LocalNucleus, monkeypatch: pytest.MonkeyPatch, svcuid: str = PUMP_SVCUID
) -> GreengrassCoreIPCClientV2:
    """The component's client, built as a component builds it: from the nucleus's variables."""
    for name, value in nucleus.component_environment(PUMP).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SVCUID", svcuid)
    # executor=None: events are handled on the connection's thread, in order
    return GreengrassCoreIPCClientV2(executor=None)


@pytest.fixture
def ipc(
    nucleus: LocalNucleus, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GreengrassCoreIPCClientV2]:
    client = connect(nucleus, monkeypatch)
    yield client
    client.close()


def test_subscribe_receives_the_bridges_messages_in_order(
    ipc: GreengrassCoreIPCClientV2, bridge: InMemoryBridge
) -> None:
    received: list[IoTCoreMessage] = []
    done = threading.Event()

    def on_event(event: IoTCoreMessage) -> None:
        received.append(event)
        if len(received) == 100:
            done.set()

    topic = "tidings/dev/things/pump-1/speed"
    _, operation = ipc.subscribe_to_iot_core(
        topic_name="tidings/dev/things/pump-1/+", qos=QOS.AT_LEAST_ONCE, on_stream_event=on_event
    )
    assert [(f, q) for f, q, _ in bridge.subscriptions] == [("tidings/dev/things/pump-1/+", 1)]
    for index in range(100):
        assert bridge.deliver(topic, f"speed {index}".encode()) == 1
    assert done.wait(10)
    assert [event.message.topic_name for event in received] == [topic] * 100
    assert [event.message.payload for event in received] == [
        f"speed {index}".encode() for index in range(100)
    ]
    operation.close()


def test_a_component_that_stops_reading_holds_up_nobody_else(
    socket_dir: str, bridge: InMemoryBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(socket_dir, "ipc.socket")
    topic = "tidings/dev/things/pump-1/speed"
    count, payload = 3000, b"x" * 4096  # 12 MB: more than a stalled socket's buffers hold
    release = threading.Event()
    received: list[bytes] = []
    all_in = threading.Event()

    def stuck(_event: IoTCoreMessage) -> None:
        release.wait(120)  # executor=None: the stalled component reads nothing meanwhile

    def on_event(event: IoTCoreMessage) -> None:
        received.append(event.message.payload)
        if len(received) == count:
            all_in.set()

    with LocalNucleus(path, {PUMP: (PUMP_SVCUID, ACCESS)}, bridge, max_queued_messages=1000) as n:
        slow, fast = connect(n, monkeypatch), connect(n, monkeypatch)
        try:
            slow.subscribe_to_iot_core(
                topic_name=topic, qos=QOS.AT_LEAST_ONCE, on_stream_event=stuck
            )
            fast.subscribe_to_iot_core(
                topic_name=topic, qos=QOS.AT_LEAST_ONCE, on_stream_event=on_event
            )

            def deliver() -> None:
                for index in range(count):
                    bridge.deliver(topic, payload)
                    if index % 25 == 24:
                        time.sleep(0.025)  # ~1,000/s, so the reading one keeps up even on a
                        # loaded machine (its outbox holds 1,000)

            delivering = threading.Thread(target=deliver)
            delivering.start()
            delivering.join(60)
            assert not delivering.is_alive(), "the bridge's thread was held up by one component"
            assert all_in.wait(60), len(received)
            assert received == [payload] * count
            assert n.dropped_events() > 0  # the stalled one's events beyond its outbox
        finally:
            release.set()
            slow.close()
            fast.close()


def test_publish_reaches_the_bridge(ipc: GreengrassCoreIPCClientV2, bridge: InMemoryBridge) -> None:
    ipc.publish_to_iot_core(
        topic_name="tidings/dev/things/pump-1/state", qos=QOS.AT_MOST_ONCE, payload=b"\x00on\xff"
    )
    assert bridge.published == [("tidings/dev/things/pump-1/state", b"\x00on\xff", 0)]


@pytest.mark.parametrize(
    "topic",
    ["tidings/dev/things/pump-2/#", "tidings/dev/things/#", "#", "tidings/dev/things/+/speed"],
)
def test_subscribe_outside_the_access_control_is_unauthorized(
    ipc: GreengrassCoreIPCClientV2, bridge: InMemoryBridge, topic: str
) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        ipc.subscribe_to_iot_core(topic_name=topic, qos=QOS.AT_MOST_ONCE, on_stream_event=print)
    assert caught.value.message == (
        f"Principal {PUMP} is not authorized to perform "
        f"aws.greengrass.ipc.mqttproxy:aws.greengrass#SubscribeToIoTCore on resource {topic}"
    )
    assert bridge.subscriptions == []


def test_publish_outside_the_access_control_is_unauthorized(
    ipc: GreengrassCoreIPCClientV2, bridge: InMemoryBridge
) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        ipc.publish_to_iot_core(topic_name="tidings/dev/x", qos=QOS.AT_MOST_ONCE, payload=b"1")
    assert caught.value.message.endswith("PublishToIoTCore on resource tidings/dev/x")
    assert bridge.published == []
    # the connection still serves
    ipc.publish_to_iot_core(topic_name="tidings/dev/things/pump-1/a", payload=b"2")
    assert [topic for topic, _, _ in bridge.published] == ["tidings/dev/things/pump-1/a"]


def test_an_operation_outside_the_policy_is_unauthorized(
    socket_dir: str, bridge: InMemoryBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = {
        "aws.greengrass.ipc.mqttproxy": {
            "p": {"operations": ["aws.greengrass#SubscribeToIoTCore"], "resources": [ALLOWED]}
        }
    }
    path = os.path.join(socket_dir, "ipc.socket")
    with LocalNucleus(path, {PUMP: (PUMP_SVCUID, access)}, bridge) as nucleus:
        client = connect(nucleus, monkeypatch)
        try:
            with pytest.raises(UnauthorizedError):
                client.publish_to_iot_core(topic_name="tidings/dev/things/pump-1/a", payload=b"")
        finally:
            client.close()


def test_a_wrong_svcuid_is_refused(nucleus: LocalNucleus, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AccessDeniedError):
        connect(nucleus, monkeypatch, svcuid="not-the-pump")


def test_closing_the_stream_unsubscribes(
    ipc: GreengrassCoreIPCClientV2, bridge: InMemoryBridge
) -> None:
    _, operation = ipc.subscribe_to_iot_core(topic_name=ALLOWED, on_stream_event=print)
    assert len(bridge.subscriptions) == 1
    operation.close().result(5)
    assert bridge.wait_for(lambda: bridge.subscriptions == [])


def test_closing_the_connection_unsubscribes(
    nucleus: LocalNucleus, bridge: InMemoryBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(nucleus, monkeypatch)
    client.subscribe_to_iot_core(topic_name=ALLOWED, on_stream_event=print)
    assert len(bridge.subscriptions) == 1
    client.close()
    assert bridge.wait_for(lambda: bridge.subscriptions == [])


def _raw_connect(nucleus: LocalNucleus) -> socket.socket:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(nucleus.socket_path)
    return raw


def _read_until_closed(raw: socket.socket) -> bytes:
    data = b""
    while chunk := raw.recv(65536):
        data += chunk
    return data


def _read_message(raw: socket.socket) -> es.Message:
    decoder = es.Decoder()
    while True:
        chunk = raw.recv(65536)
        assert chunk, "the nucleus closed before answering"
        if messages := decoder.feed(chunk):
            return messages[0]


def _connect_message(token: str) -> bytes:
    return es.encode(
        es.rpc_message(
            es.MessageType.CONNECT,
            headers=[es.Header.string(es.VERSION, es.VERSION_STRING)],
            payload=f'{{"authToken": "{token}"}}'.encode(),
        )
    )


def _bad_crc() -> bytes:
    data = bytearray(_connect_message(PUMP_SVCUID))
    data[-1] ^= 0xFF
    return bytes(data)


def _oversized() -> bytes:
    return es.encode(es.Message(payload=b"x" * 4096), max_size=1 << 20)


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\n\r\n" * 4, _bad_crc(), _oversized()],
    ids=["garbage", "bad-crc", "oversized"],
)
def test_a_malformed_message_closes_only_that_connection(
    socket_dir: str, bridge: InMemoryBridge, monkeypatch: pytest.MonkeyPatch, garbage: bytes
) -> None:
    path = os.path.join(socket_dir, "ipc.socket")
    components = {PUMP: (PUMP_SVCUID, ACCESS)}
    with LocalNucleus(path, components, bridge, max_message_size=1024) as nucleus:
        client = connect(nucleus, monkeypatch)
        try:
            with _raw_connect(nucleus) as raw:
                raw.sendall(garbage)
                reply = _read_until_closed(raw)
            if reply:  # a best-effort PROTOCOL_ERROR, then the close
                message = es.decode(reply)
                assert es.rpc_fields(message).message_type is es.MessageType.PROTOCOL_ERROR
            client.publish_to_iot_core(topic_name="tidings/dev/things/pump-1/a", payload=b"ok")
            assert bridge.published == [("tidings/dev/things/pump-1/a", b"ok", 0)]
        finally:
            client.close()


def test_a_raw_connect_with_an_unknown_token_gets_a_refusing_ack(nucleus: LocalNucleus) -> None:
    with _raw_connect(nucleus) as raw:
        raw.sendall(_connect_message("nope"))
        fields = es.rpc_fields(_read_message(raw))
    assert fields.message_type is es.MessageType.CONNECT_ACK
    assert not fields.flags & es.MessageFlag.CONNECTION_ACCEPTED


def test_stop_closes_connections_and_removes_the_socket(
    nucleus: LocalNucleus, bridge: InMemoryBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(nucleus, monkeypatch)
    client.subscribe_to_iot_core(topic_name=ALLOWED, on_stream_event=print)
    nucleus.stop()
    try:
        assert bridge.wait_for(lambda: bridge.subscriptions == [])
        assert not os.path.exists(nucleus.socket_path)
        assert bridge.deliver("tidings/dev/things/pump-1/late", b"late") == 0
    finally:
        client.close()


@pytest.mark.parametrize(
    ("resource", "requested", "allowed"),
    [
        ("a/b/#", "a/b/c", True),
        ("a/b/#", "a/b", True),
        ("a/b/#", "a/b/+/d", True),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a/+/c", True),
        ("a/+/c", "a/#", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("*", "anything/#", True),
    ],
)
def test_filter_covers(resource: str, requested: str, allowed: bool) -> None:
    assert filter_covers(resource, requested) is allowed


def test_iot_core_message_payload_is_base64_on_the_wire() -> None:
    # the shape awsiotsdk's IoTCoreMessage._from_payload reads
    event = IoTCoreMessage._from_payload(
        {"message": {"topicName": "t", "payload": base64.b64encode(b"\x01").decode()}}
    )
    assert event.message.payload == b"\x01"


def test_a_served_socket_path_is_busy(nucleus: LocalNucleus, bridge: InMemoryBridge) -> None:
    second = LocalNucleus(nucleus.socket_path, {}, bridge)
    with pytest.raises(OSError, match="served by another"):
        second.start()
    assert os.path.exists(nucleus.socket_path)
    assert not second.ready


def test_through_the_gateway_with_the_core_devices_certificate(
    socket_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Component -> IPC -> nucleus -> MQTT over mTLS -> gateway, and back."""
    device_ca = DeviceCA.load_or_create(tmp_path / "device-ca")
    directory = MemoryDeviceDirectory()
    core = issue_device(device_ca, tmp_path / "devices", "core-1", registry=directory)
    config = GatewayConfig(
        port=0, state_dir=tmp_path, mtls_port=0, device_ca_file=device_ca.cert_file
    )
    access = {
        "aws.greengrass.ipc.mqttproxy": {
            "p": {
                "operations": [
                    "aws.greengrass#SubscribeToIoTCore",
                    "aws.greengrass#PublishToIoTCore",
                ],
                "resources": ["things/#"],
            }
        }
    }
    with GatewayThread(config, CredentialStore(), directory) as runner:
        assert runner.gateway is not None and runner.mtls_port is not None
        gateway = runner.gateway
        bridge = MqttBridge(
            "localhost",
            runner.mtls_port,
            client_id="core-1",
            ca_file=gateway.ca_file,
            cert_file=core.cert_file,
            key_file=core.key_file,
        )
        path = os.path.join(socket_dir, "ipc.socket")
        with bridge, LocalNucleus(path, {PUMP: (PUMP_SVCUID, access)}, bridge) as nucleus:
            client = connect(nucleus, monkeypatch)
            try:
                received: list[tuple[str, bytes]] = []
                arrived = threading.Event()

                def on_event(event: IoTCoreMessage) -> None:
                    received.append((event.message.topic_name, event.message.payload))
                    if len(received) == 2:
                        arrived.set()

                client.subscribe_to_iot_core(
                    topic_name="things/core-1/#", qos=QOS.AT_LEAST_ONCE, on_stream_event=on_event
                )

                async def publish() -> None:
                    gateway.broker.publish("things/core-1/from-cloud", b"down", 1)

                runner.run(publish())
                # the component's own publish comes back through its subscription
                client.publish_to_iot_core(
                    topic_name="things/core-1/from-edge", qos=QOS.AT_LEAST_ONCE, payload=b"up"
                )
                assert arrived.wait(10)
                assert sorted(received) == [
                    ("things/core-1/from-cloud", b"down"),
                    ("things/core-1/from-edge", b"up"),
                ]
                # the recipe allows things/#, but IoT Core's policy for the core device
                # refuses another thing's topics: the nucleus answers a ServiceError
                with pytest.raises(ServiceError) as refused:
                    client.subscribe_to_iot_core(
                        topic_name="things/core-2/#", on_stream_event=print
                    )
                assert "refused the subscription to things/core-2/#" in refused.value.message
            finally:
                client.close()


def test_the_bridge_refuses_a_certificate_the_gateway_does_not_know(
    tmp_path: Path,
) -> None:
    device_ca = DeviceCA.load_or_create(tmp_path / "device-ca")
    unknown = issue_device(device_ca, tmp_path / "devices", "core-9")
    config = GatewayConfig(
        port=0, state_dir=tmp_path, mtls_port=0, device_ca_file=device_ca.cert_file
    )
    with GatewayThread(config, CredentialStore(), MemoryDeviceDirectory()) as runner:
        assert runner.gateway is not None and runner.mtls_port is not None
        bridge = MqttBridge(
            "localhost",
            runner.mtls_port,
            client_id="core-9",
            ca_file=runner.gateway.ca_file,
            cert_file=unknown.cert_file,
            key_file=unknown.key_file,
            timeout=3,
        )
        with pytest.raises(ConnectionError):
            bridge.start()

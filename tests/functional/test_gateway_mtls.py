"""The gateway speaks MQTT over mutual TLS to X.509 devices, as AWS IoT Core does.

A gateway with a device CA and an in-memory device directory: MQTT 3.1.1 and 5 straight over
TLS on the mTLS port and, with ALPN ``x-amzn-mqtt-ca``, on the main (WebSocket) port; the
certificate's IoT policies authorise what the device does; a certificate that is not
registered or not ACTIVE gets no CONNACK; one made INACTIVE loses its live connections; bad
TLS input costs only its own connection, logged once.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.awsauth.devices import DeviceCA
from infra.local.iot import mqtt_codec as mq
from infra.local.iot.device_tls import offered_alpn
from infra.local.iot.gateway import Gateway, GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread
from tests.support.devices import (
    DeviceClient,
    DeviceFiles,
    MemoryDeviceDirectory,
    issue_device,
    other_ca,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mtls")


@pytest.fixture(scope="module")
def device_ca(state: Path) -> DeviceCA:
    return DeviceCA.load_or_create(state / "device-ca")


@pytest.fixture(scope="module")
def directory() -> MemoryDeviceDirectory:
    return MemoryDeviceDirectory()


@pytest.fixture(scope="module")
def runner(
    state: Path, device_ca: DeviceCA, directory: MemoryDeviceDirectory
) -> Iterator[GatewayThread]:
    config = GatewayConfig(port=0, state_dir=state, mtls_port=0, device_ca_file=device_ca.cert_file)
    with GatewayThread(config, CredentialStore(), directory) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(runner: GatewayThread) -> Gateway:
    assert runner.gateway is not None
    return runner.gateway


@pytest.fixture()
def device(
    state: Path,
    device_ca: DeviceCA,
    directory: MemoryDeviceDirectory,
) -> DeviceFiles:
    """A registered ACTIVE certificate for a thing of its own."""
    thing = f"thing-{uuid.uuid4().hex[:12]}"
    return issue_device(device_ca, state / "devices", thing, registry=directory)


def _ports(runner: GatewayThread) -> dict[str, tuple[int, bool]]:
    assert runner.mtls_port is not None
    return {"mtls": (runner.mtls_port, False), "alpn": (runner.port, True)}


def _publish(runner: GatewayThread, gateway: Gateway, topic: str, payload: bytes) -> None:
    async def publish() -> None:
        gateway.broker.publish(topic, payload, 1)

    runner.run(publish())


@pytest.mark.parametrize("level", [4, 5])
@pytest.mark.parametrize("where", ["mtls", "alpn"])
def test_a_device_connects_subscribes_to_its_topics_and_receives(
    runner: GatewayThread, gateway: Gateway, device: DeviceFiles, where: str, level: int
) -> None:
    port, alpn = _ports(runner)[where]
    thing = device.device.things[0]
    client = DeviceClient(port, gateway.ca_file, device, alpn=alpn, protocol_level=level)
    try:
        if alpn:
            assert client.alpn == "x-amzn-mqtt-ca"
        connack = client.connect(thing)
        assert isinstance(connack, mq.Connack) and connack.reason_code == 0
        assert client.subscribe(f"things/{thing}/#").reason_codes == [1]
        refused = client.subscribe("things/someone-else/#", packet_id=2)
        assert refused.reason_codes == [0x87 if level == 5 else 0x80]
        _publish(runner, gateway, f"things/{thing}/news", b"hello")
        message = client.recv_until(mq.Publish)
        assert (message.topic, message.payload) == (f"things/{thing}/news", b"hello")
        assert client.ping()
    finally:
        client.close()


@pytest.mark.parametrize("level", [4, 5])
def test_a_client_id_that_is_not_the_attached_thing_is_not_authorised(
    runner: GatewayThread, gateway: Gateway, device: DeviceFiles, level: int
) -> None:
    assert runner.mtls_port is not None
    client = DeviceClient(runner.mtls_port, gateway.ca_file, device, protocol_level=level)
    try:
        connack = client.connect("not-my-thing")
        assert isinstance(connack, mq.Connack)
        # the thing-name variable is unset, so iot:Connect on client/${...ThingName} denies
        assert connack.reason_code == (0x87 if level == 5 else 5)
        assert client.is_closed()
    finally:
        client.close()


@pytest.mark.parametrize("where", ["mtls", "alpn"])
def test_an_unregistered_certificate_gets_no_connack(
    runner: GatewayThread, gateway: Gateway, state: Path, device_ca: DeviceCA, where: str
) -> None:
    port, alpn = _ports(runner)[where]
    stranger = issue_device(device_ca, state / "unregistered", f"stranger-{where}")
    client = DeviceClient(port, gateway.ca_file, stranger, alpn=alpn)
    try:
        assert client.connect(stranger.device.things[0]) is None
    finally:
        client.close()


def test_an_inactive_certificate_loses_its_connection_and_cannot_reconnect(
    runner: GatewayThread,
    gateway: Gateway,
    device: DeviceFiles,
    directory: MemoryDeviceDirectory,
) -> None:
    assert runner.mtls_port is not None
    thing = device.device.things[0]
    live = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    over_alpn = DeviceClient(runner.port, gateway.ca_file, device, alpn=True, protocol_level=4)
    try:
        assert live.connect(thing).reason_code == 0
        assert over_alpn.connect(thing + "-other").reason_code == 5  # not its thing
        directory.set_status(device.certificate_id, "INACTIVE")
        assert live.recv() is None, "AWS IoT hangs up, no DISCONNECT"
        again = DeviceClient(runner.mtls_port, gateway.ca_file, device)
        try:
            assert again.connect(thing) is None
        finally:
            again.close()
        directory.set_status(device.certificate_id, "ACTIVE")
        back = DeviceClient(runner.mtls_port, gateway.ca_file, device)
        try:
            assert back.connect(thing).reason_code == 0
        finally:
            back.close()
    finally:
        live.close()
        over_alpn.close()


def test_new_policies_apply_to_a_live_connection(
    runner: GatewayThread,
    gateway: Gateway,
    device: DeviceFiles,
    directory: MemoryDeviceDirectory,
) -> None:
    import dataclasses

    assert runner.mtls_port is not None
    thing = device.device.things[0]
    client = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    try:
        assert client.connect(thing).reason_code == 0
        assert client.subscribe("shared/news").reason_codes == [0x87]
        wider = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
        }
        policies = (*device.device.policies, wider)
        directory.register(dataclasses.replace(device.device, policies=policies))
        deadline = time.monotonic() + 5
        while client.subscribe("shared/news", packet_id=2).reason_codes != [1]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        client.close()


def test_devices_follow_drop_clients_but_not_block_mqtt(
    runner: GatewayThread, gateway: Gateway, device: DeviceFiles
) -> None:
    assert runner.mtls_port is not None
    thing = device.device.things[0]
    client = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    try:
        assert client.connect(thing).reason_code == 0
        runner.call(gateway.block_mqtt)
        try:
            assert client.ping()
        finally:
            runner.call(gateway.unblock_mqtt)
        assert runner.call(gateway.drop_clients, thing) == 1
        assert client.recv() is None
    finally:
        client.close()


def test_https_clients_are_not_asked_for_a_certificate(
    runner: GatewayThread, gateway: Gateway
) -> None:
    context = ssl.create_default_context(cafile=str(gateway.ca_file))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", runner.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() is None  # as before: the gateway offers none
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_failing_directory_refuses_only_that_device(
    runner: GatewayThread,
    gateway: Gateway,
    device: DeviceFiles,
    state: Path,
    device_ca: DeviceCA,
    directory: MemoryDeviceDirectory,
) -> None:
    assert runner.mtls_port is not None
    thing = device.device.things[0]
    unlucky = issue_device(device_ca, state / "devices", f"unlucky-{thing}", registry=directory)
    directory.failures[unlucky.certificate_id] = ConnectionError("control plane unreachable")
    good = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    try:
        assert good.connect(thing).reason_code == 0
        refused = DeviceClient(runner.mtls_port, gateway.ca_file, unlucky)
        try:
            assert refused.connect(unlucky.device.things[0]) is None
        finally:
            refused.close()
        assert good.ping()
    finally:
        good.close()


def test_a_slow_directory_does_not_hold_up_other_devices(
    runner: GatewayThread,
    gateway: Gateway,
    device: DeviceFiles,
    state: Path,
    device_ca: DeviceCA,
    directory: MemoryDeviceDirectory,
) -> None:
    assert runner.mtls_port is not None
    thing = device.device.things[0]
    slow = issue_device(device_ca, state / "devices", f"slow-{thing}", registry=directory)
    directory.delays[slow.certificate_id] = 2.0
    good = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    patient = DeviceClient(runner.mtls_port, gateway.ca_file, slow)
    try:
        assert good.connect(thing).reason_code == 0
        patient.send(mq.Connect("MQTT", 5, slow.device.things[0], True, 60))
        started = time.monotonic()
        assert good.ping()
        assert time.monotonic() - started < 1.0, "the lookup blocked the gateway"
        connack = patient.recv()
        assert isinstance(connack, mq.Connack) and connack.reason_code == 0
    finally:
        good.close()
        patient.close()


# ----------------------------------------------------------------- bad input
def _tls_refused(port: int, server_ca: Path, files: DeviceFiles | None, alpn: bool) -> int | None:
    """Try a device connection that TLS must refuse; the local port it used (None when the
    handshake failed on the client's side already)."""
    try:
        client = DeviceClient(port, server_ca, files, alpn=alpn)
    except (ssl.SSLError, OSError):
        return None
    try:
        assert client.connect("anything") is None  # TLS 1.3: the alert arrives on read
    finally:
        client.close()
    return int(client.local_port)


def _raw_bytes(port: int, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        local_port = int(raw.getsockname()[1])
        raw.sendall(data)
        raw.settimeout(10)
        try:
            while raw.recv(4096):
                pass
        except OSError:
            pass
    return local_port


def _bad_input(case: str, runner: GatewayThread, gateway: Gateway, state: Path) -> int | None:
    """Run one bad-input case; the local port it used when known."""
    assert runner.mtls_port is not None
    port, ca = runner.mtls_port, gateway.ca_file
    if case == "random-bytes":
        return _raw_bytes(port, os.urandom(2048))
    if case == "plaintext-connect":
        return _raw_bytes(port, mq.encode(mq.Connect("MQTT", 4, "plain", True, 60), 4))
    if case == "client-hello-garbage-alpn":
        return _raw_bytes(runner.port, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff")
    files: DeviceFiles | None
    alpn = case.endswith("-alpn")
    if case.startswith("other-ca"):
        files = issue_device(other_ca(state), state / "foreign", f"foreign-{case}")
    elif case.startswith("expired"):
        files = issue_device(
            DeviceCA.load_or_create(state / "device-ca"), state / "expired", case, days=-1
        )
    else:
        files = None
    return _tls_refused(runner.port if alpn else port, ca, files, alpn)


BAD_INPUTS = [
    "other-ca",
    "other-ca-alpn",
    "expired",
    "expired-alpn",
    "no-certificate",
    "no-certificate-alpn",
    "random-bytes",
    "plaintext-connect",
    "client-hello-garbage-alpn",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_costs_only_its_own_connection_and_is_logged_once(
    runner: GatewayThread,
    gateway: Gateway,
    device: DeviceFiles,
    state: Path,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert runner.mtls_port is not None
    thing = device.device.things[0]
    good = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    try:
        assert good.connect(thing).reason_code == 0
        assert good.subscribe(f"things/{thing}/news").reason_codes == [1]
        with caplog.at_level(logging.INFO, logger="tidings.gateway"):
            local_port = _bad_input(case, runner, gateway, state)
            time.sleep(0.3)
        assert good.ping()
        _publish(runner, gateway, f"things/{thing}/news", b"still here")
        assert good.recv_until(mq.Publish).payload == b"still here"
        assert local_port is not None, "TLS 1.3: the client's side of the handshake completes"
        mine = [
            r.getMessage() for r in caplog.records if f"127.0.0.1:{local_port}" in r.getMessage()
        ]
        assert len(mine) == 1, mine
    finally:
        good.close()
    # the gateway still accepts new devices
    again = DeviceClient(runner.mtls_port, gateway.ca_file, device)
    try:
        assert again.connect(thing).reason_code == 0
    finally:
        again.close()


# ----------------------------------------------------------------- ClientHello
def test_offered_alpn_reads_a_real_client_hello() -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    context.set_alpn_protocols(["x-amzn-mqtt-ca", "http/1.1"])
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert offered_alpn(hello) == ("x-amzn-mqtt-ca", "http/1.1")
    assert offered_alpn(hello[:10]) is None
    assert offered_alpn(hello[:3]) is None
    assert offered_alpn(b"GET / HTTP/1.1\r\n") == ()
    assert offered_alpn(b"\x16\x03\x01\x00\x00") == ()

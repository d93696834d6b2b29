"""X.509 devices for tests: an in-memory device directory and certificates on disk.

:class:`MemoryDeviceDirectory` is a :class:`~infra.local.awsauth.devices.DeviceDirectory` that
tests fill and change directly (``register``, ``set_status``), telling listeners as the IoT
control plane would. :func:`issue_device` issues a certificate with a
:class:`~infra.local.awsauth.devices.DeviceCA` and writes it and its key to files that real
clients load.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from infra.local.awsauth.devices import ACTIVE, Device, DeviceCA, certificate_id

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROOT = Path(__file__).resolve().parents[2]


def devices_command(stack: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``tidings devices ARGS`` against ``stack`` (a running LocalStack), as a subprocess."""
    command = [sys.executable, "-m", "infra.cli", "devices", *args]
    command += ["--state-dir", str(stack.config.state_dir)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def thing_policy(region: str = REGION, account: str = ACCOUNT) -> dict[str, Any]:
    """AWS's usual thing policy: connect as the thing, subscribe to and receive its topics."""
    prefix = f"arn:aws:iot:{region}:{account}"
    thing = "${iot:Connection.Thing.ThingName}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{prefix}:client/{thing}"},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": f"{prefix}:topicfilter/things/{thing}/*",
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": f"{prefix}:topic/things/{thing}/*",
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"{prefix}:topic/things/{thing}/*",
            },
        ],
    }


class MemoryDeviceDirectory:
    """Registered certificates by id; thread-safe; listeners told of every change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, Device] = {}
        self._listeners: list[Callable[[str], None]] = []
        self.failures: dict[str, Exception] = {}
        """Certificate id -> what its lookup raises (the control plane unreachable)."""
        self.delays: dict[str, float] = {}
        """Certificate id -> seconds its lookup takes (a slow control plane)."""

    def lookup(self, der: bytes) -> Device | None:
        cert_id = certificate_id(der)
        delay = self.delays.get(cert_id)
        if delay:
            time.sleep(delay)
        failure = self.failures.get(cert_id)
        if failure is not None:
            raise failure
        with self._lock:
            return self._devices.get(cert_id)

    def peek(self, der: bytes) -> tuple[bool, Device | None]:
        """Known at once, unless a delay or a failure is set for the certificate (then the
        gateway asks :meth:`lookup` off its loop, as for a slow control plane)."""
        cert_id = certificate_id(der)
        if self.delays.get(cert_id) or cert_id in self.failures:
            return False, None
        with self._lock:
            return True, self._devices.get(cert_id)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def register(self, device: Device) -> None:
        """Add or replace a certificate's record and tell the listeners."""
        with self._lock:
            self._devices[device.certificate_id] = device
        self._changed(device.certificate_id)

    def set_status(self, cert_id: str, status: str) -> None:
        """``UpdateCertificate``: change a certificate's status."""
        with self._lock:
            self._devices[cert_id] = replace(self._devices[cert_id], status=status)
        self._changed(cert_id)

    def delete(self, cert_id: str) -> None:
        """``DeleteCertificate``."""
        with self._lock:
            self._devices.pop(cert_id, None)
        self._changed(cert_id)

    def _changed(self, cert_id: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(cert_id)


@dataclass(frozen=True)
class DeviceFiles:
    """One device's certificate and key on disk, and its record."""

    cert_file: Path
    key_file: Path
    device: Device

    @property
    def certificate_id(self) -> str:
        return self.device.certificate_id


def issue_device(
    ca: DeviceCA,
    directory: Path,
    thing: str,
    *,
    days: float = 365,
    status: str = ACTIVE,
    policies: tuple[Mapping[str, Any], ...] | None = None,
    registry: MemoryDeviceDirectory | None = None,
) -> DeviceFiles:
    """Issue a certificate for ``thing`` (its CN), write ``<thing>.cert.pem`` and
    ``<thing>.key.pem`` under ``directory``; register it (thing attached, ``policies``, by
    default :func:`thing_policy`) in ``registry`` when given."""
    cert_pem, key_pem = ca.issue(thing, days=days)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{thing}.cert.pem"
    key_file = directory / f"{thing}.key.pem"
    cert_file.write_text(cert_pem)
    key_file.write_text(key_pem)
    cert_id = certificate_id(ssl.PEM_cert_to_DER_cert(cert_pem))
    device = Device(
        certificate_id=cert_id,
        certificate_arn=f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/{cert_id}",
        status=status,
        things=(thing,),
        policies=policies if policies is not None else (thing_policy(),),
        common_name=thing,
    )
    if registry is not None:
        registry.register(device)
    return DeviceFiles(cert_file, key_file, device)


def other_ca(directory: Path) -> DeviceCA:
    """A CA the gateway does not trust (a device certificate from another account's CA)."""
    return DeviceCA.load_or_create(directory / "other-ca")


class DeviceClient:
    """A raw MQTT client over mutual TLS (the gateway's mTLS port, or ALPN on its main one).

    ``DeviceClient(port, server_ca, files)``; ``files=None`` presents no certificate. The TLS
    handshake itself may fail (:class:`ssl.SSLError` from the constructor); with TLS 1.3 a
    refused client certificate shows only on the first read, as ``recv()`` returning None.
    """

    def __init__(
        self,
        port: int,
        server_ca: Path,
        files: DeviceFiles | None,
        *,
        alpn: bool = False,
        protocol_level: int = 5,
        timeout: float = 10.0,
    ) -> None:
        import socket

        from infra.local.iot import mqtt_codec as mq

        self._mq = mq
        self.protocol_level = protocol_level
        context = ssl.create_default_context(cafile=str(server_ca))
        if files is not None:
            context.load_cert_chain(files.cert_file, files.key_file)
        if alpn:
            context.set_alpn_protocols(["x-amzn-mqtt-ca"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        try:
            self.sock = context.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.decoder = mq.PacketDecoder(protocol_level=protocol_level)
        self._packets: list[Any] = []

    @property
    def alpn(self) -> str | None:
        """The ALPN protocol the server selected."""
        return self.sock.selected_alpn_protocol()

    def send(self, packet: Any) -> None:
        self.sock.sendall(self._mq.encode(packet, self.protocol_level))

    def connect(self, client_id: str, *, keep_alive: int = 60, clean: bool = True) -> Any:
        """CONNECT; the CONNACK, or None when the server closed the connection instead."""
        mq = self._mq
        with contextlib.suppress(OSError):
            self.send(mq.Connect("MQTT", self.protocol_level, client_id, clean, keep_alive))
        return self.recv()

    def subscribe(self, topic_filter: str, packet_id: int = 1) -> Any:
        """SUBSCRIBE at QoS 1; the SUBACK (or None: closed)."""
        mq = self._mq
        self.send(mq.Subscribe(packet_id, [(topic_filter, mq.SubscriptionOptions(1))]))
        return self.recv_until(mq.Suback)

    def recv(self) -> Any:
        """The next MQTT packet, or None when the server closed the connection."""
        while not self._packets:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except (OSError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self._packets.extend(self.decoder.feed(chunk))
        return self._packets.pop(0)

    def recv_until(self, kind: type) -> Any:
        while True:
            packet = self.recv()
            if packet is None or isinstance(packet, kind):
                return packet

    def ping(self) -> bool:
        """PINGREQ answered with PINGRESP: the connection still works."""
        mq = self._mq
        try:
            self.send(mq.Pingreq())
        except OSError:
            return False
        return isinstance(self.recv_until(mq.Pingresp), mq.Pingresp)

    def is_closed(self) -> bool:
        """Read until the server closes (True) or the socket times out (False)."""
        try:
            while self.recv() is not None:
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

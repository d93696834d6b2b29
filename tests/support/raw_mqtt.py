"""A bare MQTT-over-WebSocket client for protocol-level tests of the gateway.

It speaks real TLS to the real gateway socket and signs its upgrade with botocore, but lets a
test send any bytes (malformed packets, QoS 2, oversized payloads) and read the exact reason
codes the gateway answers with.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
from pathlib import Path

from infra.local.iot import mqtt_codec as mq
from tests.support.identities import Identity
from tests.support.real_clients import presigned_mqtt_path


def mask_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A masked client WebSocket frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class RawClient:
    """Connect with ``RawClient(port, ca, identity)``; ``status`` is the HTTP answer."""

    def __init__(
        self,
        port: int,
        ca_file: Path,
        identity: Identity | None,
        *,
        path: str | None = None,
        protocol_level: int = 5,
        timeout: float = 10.0,
    ) -> None:
        self.protocol_level = protocol_level
        context = ssl.create_default_context(cafile=str(ca_file))
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(timeout)
        if path is None:
            assert identity is not None
            path = presigned_mqtt_path(identity, port)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        head_text, _, rest = head.partition(b"\r\n\r\n")
        self.status = int(head_text.split(b" ")[1]) if head_text else 0
        self.response_head = head_text.decode("latin-1")
        self.body = rest
        self._buffer = bytearray(rest if self.status == 101 else b"")
        self.decoder = mq.PacketDecoder(protocol_level=protocol_level)
        self.close_code: int | None = None

    # -- sending
    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(mask_frame(data))

    def send(self, packet: mq.Packet) -> None:
        self.send_bytes(mq.encode(packet, self.protocol_level))

    def connect(
        self,
        client_id: str,
        *,
        clean: bool = True,
        keep_alive: int = 60,
        properties: mq.Properties | None = None,
        will: mq.Will | None = None,
    ) -> mq.Connack:
        name, level = ("MQTT", self.protocol_level) if self.protocol_level >= 4 else ("MQIsdp", 3)
        self.send(
            mq.Connect(
                name, level, client_id, clean, keep_alive, will=will, properties=properties or {}
            )
        )
        packet = self.recv()
        assert isinstance(packet, mq.Connack), packet
        return packet

    def subscribe(self, *filters: str, packet_id: int = 1, qos: int = 1) -> mq.Suback:
        self.send(mq.Subscribe(packet_id, [(f, mq.SubscriptionOptions(qos)) for f in filters]))
        while True:
            packet = self.recv()
            if isinstance(packet, mq.Suback):
                return packet
            assert packet is not None, "connection closed before SUBACK"

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        packet_id: int | None = None,
        retain: bool = False,
    ) -> None:
        self.send(mq.Publish(topic, payload, qos, retain, False, packet_id))

    # -- receiving
    def _read_frame(self) -> tuple[int, bytes] | None:
        while True:
            if len(self._buffer) >= 2:
                opcode = self._buffer[0] & 0x0F
                length = self._buffer[1] & 0x7F
                offset = 2
                if length == 126 and len(self._buffer) >= 4:
                    length = struct.unpack_from("!H", self._buffer, 2)[0]
                    offset = 4
                elif length == 127 and len(self._buffer) >= 10:
                    length = struct.unpack_from("!Q", self._buffer, 2)[0]
                    offset = 10
                if (length < 126 or offset > 2) and len(self._buffer) >= offset + length:
                    payload = bytes(self._buffer[offset : offset + length])
                    del self._buffer[: offset + length]
                    return opcode, payload
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except (OSError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self._buffer += chunk

    def recv(self) -> mq.Packet | None:
        """The next MQTT packet, or None when the server closed the connection."""
        while True:
            frame = self._read_frame()
            if frame is None:
                return None
            opcode, payload = frame
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return None
            if opcode != 0x2:
                continue
            packets = self.decoder.feed(payload)
            if packets:
                assert len(packets) == 1, "one MQTT packet per WebSocket frame"
                return packets[0]

    def recv_until(self, kind: type) -> mq.Packet | None:
        """Skip packets until one of ``kind`` (or the end of the connection)."""
        while True:
            packet = self.recv()
            if packet is None or isinstance(packet, kind):
                return packet

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

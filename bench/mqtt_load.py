"""A lean MQTT 3.1.1 load client for the benchmarks: many connections, little CPU per message.

The point of a load client is to cost less than the broker it measures, so this one keeps
only what a benchmark needs: non-blocking sockets driven by the asyncio event loop
(``add_reader``), TLS through :class:`ssl.SSLSocket` directly (no asyncio SSL transport and
its 256 KiB buffers), a WebSocket client framing of a few lines, and a PUBLISH parser that
reads the benchmark payload in place. Three transports:

* ``wss``: TLS + WebSocket at a SigV4-presigned ``/mqtt`` path (the Tidings gateway);
* ``ws``: plain WebSocket (amqtt's listener);
* ``tcp``: plain MQTT over TCP (mosquitto).

The benchmark payload starts with a header :data:`PAYLOAD_HEADER` — sequence number,
``time.time_ns()`` at send, phase tag — and is padded to the payload size.

Worker entry points, each run in its own process by ``bench/fanout.py`` and driven through a
:class:`multiprocessing.connection.Connection` (command tuples in, result tuples out):

* :func:`subscriber_process` — N subscribers, latency and delivery accounting, and a shared
  *watermark* (highest sequence number every subscriber has reached) that the publisher uses as
  its flow-control window;
* :func:`publisher_process` — one publisher, at maximum rate within the window or paced;
* :func:`holder_process` — opens and holds many idle connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import socket
import ssl
import struct
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PAYLOAD_HEADER",
    "LeanClient",
    "Target",
    "connect",
    "holder_process",
    "percentiles_ms",
    "publisher_process",
    "raise_nofile_limit",
    "subscriber_process",
]

PAYLOAD_HEADER = struct.Struct(">qqB")
"""Sequence number, send time (ns since the epoch), phase tag."""

PHASE_WARMUP = 0
PHASE_MAX_RATE = 1
PHASE_LATENCY = 2

_RING = 1 << 16
_READ_SIZE = 262_144
_TLS_RECORD = 16_384
_SCRATCH = memoryview(bytearray(_READ_SIZE))
"""One receive buffer per process (each process runs one event-loop thread)."""
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)

# MQTT packet types (high nibble of the first byte).
_CONNACK = 2
_PUBLISH = 3
_PUBACK = 4
_SUBACK = 9
_PINGRESP = 13


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


@dataclass(frozen=True)
class Target:
    """Where and how a load client connects to a broker."""

    name: str
    transport: str
    """``wss`` (TLS WebSocket, SigV4-presigned), ``ws`` (plain WebSocket) or ``tcp``."""
    port: int
    host: str = "127.0.0.1"
    path: str = "/mqtt"
    ca_file: str | None = None
    server_hostname: str = "localhost"
    credentials: tuple[str, str, str] | None = None
    """``(access key id, secret, session token)`` to presign the upgrade with SigV4."""
    region: str = "us-east-1"

    @property
    def websocket(self) -> bool:
        """Whether MQTT travels inside WebSocket frames."""
        return self.transport in ("ws", "wss")

    @property
    def host_header(self) -> str:
        """The ``Host`` the upgrade request sends (the signed one for ``wss``)."""
        if self.transport == "wss":
            return f"{self.server_hostname}:{self.port}"
        return f"{self.host}:{self.port}"

    def request_path(self) -> str:
        """The upgrade path (SigV4-presigned for ``iotdevicegateway`` when credentials are set)."""
        if self.credentials is None:
            return self.path
        from botocore.auth import SigV4QueryAuth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method="GET", url=f"https://{self.host_header}{self.path}")
        SigV4QueryAuth(
            Credentials(*self.credentials), "iotdevicegateway", self.region, expires=300
        ).add_auth(request)
        url = str(request.url)
        return url[url.index(self.path) :]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (verifying the broker's certificate), or None for plain."""
        if self.transport != "wss":
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = True
        return context


class ConnectError(Exception):
    """A connection that did not reach CONNACK accepted (or SUBACK granted)."""


def _mask(payload: bytes, key: bytes) -> bytes:
    length = len(payload)
    repeated = (key * (length // 4 + 1))[:length]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")


def ws_client_frame(payload: bytes, key: bytes) -> bytes:
    """One final, masked, binary client frame (RFC 6455: clients must mask)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x82, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x82, 0xFE, length)
    else:
        header = struct.pack("!BBQ", 0x82, 0xFF, length)
    return header + key + _mask(payload, key)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def mqtt_connect(client_id: str, keepalive: int) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session and no credentials."""
    body = _utf8("MQTT") + bytes((4, 0x02)) + keepalive.to_bytes(2, "big") + _utf8(client_id)
    return b"\x10" + _varint(len(body)) + body


def mqtt_subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    """An MQTT SUBSCRIBE for one filter."""
    body = packet_id.to_bytes(2, "big") + _utf8(topic_filter) + bytes((qos,))
    return b"\x82" + _varint(len(body)) + body


def mqtt_publish(topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
    """An MQTT PUBLISH (``packet_id`` is ignored at QoS 0)."""
    body = _utf8(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes((0x30 | qos << 1,)) + _varint(len(body)) + body


class LeanClient:
    """One MQTT connection on a non-blocking socket, read by an event-loop reader callback.

    ``on_message(client, seq, sent_ns, phase, received_ns)`` is called for each benchmark
    PUBLISH; QoS 1 PUBLISHes are acknowledged after each read. ``on_puback(count)`` is called
    with the number of PUBACKs in each read. Other packets (CONNACK, SUBACK, PINGRESP) are kept
    for :meth:`expect`. ``after_read()`` runs once per read, after the messages.
    """

    def __init__(self, sock: socket.socket, target: Target, loop: asyncio.AbstractEventLoop):
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.websocket = target.websocket
        self.mask_key = os.urandom(4)
        self._mask_int = int.from_bytes(self.mask_key, "big")
        self._in = bytearray()
        self._stream = bytearray()
        self._out: deque[bytes] = deque()
        self._writing = False
        self._http_done = not self.websocket
        self._control: deque[tuple[int, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self.closed = False
        self.close_reason = ""
        self.on_message: Callable[[LeanClient, int, int, int, int], None] | None = None
        self.on_puback: Callable[[int], None] | None = None
        self.after_read: Callable[[], None] | None = None
        self.last_seq = 0
        self.received = 0
        self.gaps = 0
        self.reordered = 0
        self.latency_sum = 0
        self.latency_count = 0

    # ------------------------------------------------------------------ output
    def frame(self, packet: bytes) -> bytes:
        """``packet`` as it goes on the wire (inside a masked frame for WebSocket)."""
        return ws_client_frame(packet, self.mask_key) if self.websocket else packet

    def write(self, data: bytes) -> None:
        """Send bytes now if the socket takes them, else queue them until it is writable."""
        if self.closed:
            return
        if self._out:
            self._out.append(data)
            return
        try:
            sent = self.sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self._lost(f"send failed: {exc}")
            return
        if sent < len(data):
            self._out.append(data[sent:] if sent else data)
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        out = self._out
        while out:
            chunk = out[0]
            try:
                sent = self.sock.send(chunk)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(f"send failed: {exc}")
                return
            if sent < len(chunk):
                out[0] = chunk[sent:]
                return
            out.popleft()
        self._writing = False
        self.loop.remove_writer(self.fd)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    @property
    def backlog(self) -> int:
        """Bytes queued because the socket would block."""
        return sum(map(len, self._out))

    async def drained(self) -> None:
        """Wait until everything written has reached the socket."""
        if not self._out or self.closed:
            return
        self._drained = self.loop.create_future()
        await self._drained

    # ------------------------------------------------------------------ input
    def start_reading(self) -> None:
        """Register the reader callback with the event loop."""
        self.loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        sock = self.sock
        buffer = self._in
        scratch = _SCRATCH
        got = False
        while True:
            try:
                size = sock.recv_into(scratch)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                self._lost(f"receive failed: {exc}")
                break
            if not size:
                self._lost("closed by the broker")
                break
            buffer += scratch[:size]
            got = True
            # A short read means the socket is drained (plain) or this was the last TLS
            # record of the broker's write: stop instead of paying for an EAGAIN exception.
            # Level-triggered readiness brings us back if more arrived meanwhile.
            if size < (_READ_SIZE if not self.tls else _TLS_RECORD) and not (
                self.tls and sock.pending()  # type: ignore[attr-defined]
            ):
                break
        if not got:
            return
        now = time.time_ns()
        if not self._http_done and not self._read_http(buffer):
            return
        acks: list[int] = []
        if self.websocket:
            self._unframe(buffer, now, acks)
        else:
            consumed = self._parse(buffer, 0, len(buffer), now, acks)
            if consumed:
                del buffer[:consumed]
        if acks:
            self._send_pubacks(acks)
        if self.after_read is not None:
            self.after_read()

    def _read_http(self, buffer: bytearray) -> bool:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > 65536:
                self._fail("upgrade response headers too large")
            return False
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        status = head.split("\r\n", 1)[0]
        if " 101 " not in f"{status} ":
            body = bytes(buffer[:300]).decode("latin-1", "replace")
            self._fail(f"upgrade refused: {status} {body}".strip())
            return False
        self._http_done = True
        self._control.append((-1, b""))
        self._wake()
        return True

    def _unframe(self, buffer: bytearray, now: int, acks: list[int]) -> None:
        """Parse the WebSocket frames in ``buffer`` and the MQTT packets inside them.

        Fast path: while no partial packet is pending, packets are parsed where they lie in
        the frame (the gateway sends one packet per frame); only a frame that ends inside a
        packet has its tail copied into the stream buffer.
        """
        stream = self._stream
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            first = buffer[pos]
            length = buffer[pos + 1]
            if length & 0x80:
                self._fail("the broker masked a frame")
                return
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = buffer[pos + 2] << 8 | buffer[pos + 3]
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
                header = 10
            end = pos + header + length
            if end > size:
                break
            opcode = first & 0x0F
            if opcode <= 2:
                if stream:
                    stream += buffer[pos + header : end]
                    consumed = self._parse(stream, 0, len(stream), now, acks)
                    if consumed:
                        del stream[:consumed]
                else:
                    consumed = self._parse(buffer, pos + header, end, now, acks)
                    if consumed < end:
                        stream += buffer[consumed:end]
            elif opcode == 0x8:
                self._lost("WebSocket closed by the broker")
            elif opcode == 0x9:
                self.write(_pong(bytes(buffer[pos + header : end]), self.mask_key))
            pos = end
        if pos:
            del buffer[:pos]

    def _parse(self, data: bytearray, pos: int, size: int, now: int, acks: list[int]) -> int:
        """Handle the complete MQTT packets in ``data[pos:size]``; returns where they end."""
        pubacks = 0
        on_message = self.on_message
        unpack = PAYLOAD_HEADER.unpack_from
        header_size = PAYLOAD_HEADER.size
        while size - pos >= 2:
            first = data[pos]
            byte = data[pos + 1]
            if byte < 0x80:
                remaining = byte
                index = pos + 2
            else:
                index = pos + 1
                remaining = 0
                shift = 0
                while True:
                    if index >= size:
                        remaining = -1
                        break
                    byte = data[index]
                    index += 1
                    remaining |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                if remaining < 0:
                    break
            end = index + remaining
            if end > size:
                break
            kind = first >> 4
            if kind == _PUBLISH:
                start = index + 2 + (data[index] << 8 | data[index + 1])
                if first & 0x06:
                    acks.append(data[start] << 8 | data[start + 1])
                    start += 2
                if on_message is not None and end - start >= header_size:
                    seq, sent, phase = unpack(data, start)
                    on_message(self, seq, sent, phase, now)
            elif kind == _PUBACK:
                pubacks += 1
            else:
                self._control.append((kind, bytes(data[index:end])))
                self._wake()
            pos = end
        if pubacks and self.on_puback is not None:
            self.on_puback(pubacks)
        return pos

    def _send_pubacks(self, packet_ids: list[int]) -> None:
        if self.websocket:
            mask = self._mask_int
            head = b"\x82\x84" + self.mask_key
            frames = [head + ((0x40020000 | pid) ^ mask).to_bytes(4, "big") for pid in packet_ids]
        else:
            frames = [b"\x40\x02" + pid.to_bytes(2, "big") for pid in packet_ids]
        self.write(b"".join(frames))

    # ------------------------------------------------------------------ setup helpers
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def expect(self, kind: int, timeout: float) -> bytes:
        """The body of the next control packet, which must be of type ``kind``."""
        deadline = self.loop.time() + timeout
        while not self._control:
            if self.closed:
                raise ConnectError(self.close_reason or "connection closed")
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise ConnectError(f"no answer within {timeout:.0f} s (waiting for type {kind})")
            self._waiter = self.loop.create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._waiter, remaining)
            self._waiter = None
        got, body = self._control.popleft()
        if got != kind:
            raise ConnectError(f"expected packet type {kind}, got {got}")
        return body

    def _fail(self, reason: str) -> None:
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.close()
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def close(self) -> None:
        """Stop reading and close the socket (no DISCONNECT)."""
        self.closed = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        if self._writing:
            with contextlib.suppress(Exception):
                self.loop.remove_writer(self.fd)
            self._writing = False
        with contextlib.suppress(OSError):
            self.sock.close()


def _pong(payload: bytes, key: bytes) -> bytes:
    return bytes((0x8A, 0x80 | len(payload))) + key + _mask(payload, key)


async def _wait_fd(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await future
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def connect(
    target: Target,
    client_id: str,
    *,
    keepalive: int = 1200,
    context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> LeanClient:
    """Open TCP (+ TLS + WebSocket upgrade), send CONNECT and wait for an accepting CONNACK."""
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setblocking(False)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock: socket.socket = raw
    try:
        await asyncio.wait_for(loop.sock_connect(raw, (target.host, target.port)), timeout)
        if target.transport == "wss":
            context = context or target.ssl_context()
            assert context is not None
            sock = context.wrap_socket(
                raw, server_hostname=target.server_hostname, do_handshake_on_connect=False
            )
            deadline = loop.time() + timeout
            while True:
                try:
                    sock.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    waiting = _wait_fd(loop, sock.fileno(), False)
                except ssl.SSLWantWriteError:
                    waiting = _wait_fd(loop, sock.fileno(), True)
                await asyncio.wait_for(waiting, max(0.001, deadline - loop.time()))
    except BaseException:
        sock.close()
        raise
    client = LeanClient(sock, target, loop)
    client.start_reading()
    try:
        if target.websocket:
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            request = (
                f"GET {target.request_path()} HTTP/1.1\r\n"
                f"Host: {target.host_header}\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
            )
            client.write(request.encode("latin-1"))
            await client.expect(-1, timeout)
        client.write(client.frame(mqtt_connect(client_id, keepalive)))
        body = await client.expect(_CONNACK, timeout)
        if len(body) < 2 or body[1] != 0:
            raise ConnectError(f"CONNACK refused the connection (return code {body[1:2].hex()})")
    except BaseException:
        client.close()
        raise
    return client


async def subscribe(client: LeanClient, topic_filter: str, qos: int, timeout: float = 30) -> None:
    """SUBSCRIBE and check the SUBACK granted the filter."""
    client.write(client.frame(mqtt_subscribe(1, topic_filter, qos)))
    body = await client.expect(_SUBACK, timeout)
    if len(body) < 3 or body[2] >= 0x80:
        raise ConnectError(f"SUBACK refused {topic_filter!r}")


async def connect_many(
    target: Target,
    client_ids: list[str],
    *,
    concurrency: int,
    keepalive: int = 1200,
    tolerate_failures: bool = False,
) -> tuple[list[LeanClient], Counter[str]]:
    """Connect ``client_ids`` with at most ``concurrency`` handshakes in flight.

    Returns the clients in ``client_ids`` order (failed ones left out when
    ``tolerate_failures``; otherwise the first failure is raised) and the failure reasons.
    """
    context = target.ssl_context()
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()
    slots: list[LeanClient | None] = [None] * len(client_ids)

    async def one(position: int, client_id: str) -> None:
        async with gate:
            try:
                slots[position] = await connect(
                    target, client_id, keepalive=keepalive, context=context
                )
            except Exception as exc:
                if not tolerate_failures:
                    raise
                failures[f"{type(exc).__name__}: {exc}"[:160]] += 1

    tasks = [asyncio.ensure_future(one(i, cid)) for i, cid in enumerate(client_ids)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in slots:
            if client is not None:
                client.close()
        raise
    return [c for c in slots if c is not None], failures


# ---------------------------------------------------------------------------------- stats


def percentiles_ms(samples_ns: array[int] | list[int]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean of nanosecond samples, in milliseconds (None when empty)."""
    if not samples_ns:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    ordered = sorted(samples_ns)
    last = len(ordered) - 1

    def pick(q: float) -> float:
        return round(ordered[min(last, round(q * last))] / 1e6, 3)

    return {
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[last] / 1e6, 3),
        "mean_ms": round(sum(ordered) / len(ordered) / 1e6, 3),
    }


class _Phase:
    __slots__ = ("count", "first_ns", "last_ns", "latencies")

    def __init__(self) -> None:
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies: array[int] = array("q")


class FanoutReceiver:
    """Delivery accounting shared by all subscribers of one process.

    Tracks per phase how many deliveries arrived, when, and their latency; and the
    *watermark*: the highest sequence number that every subscriber has reached (a subscriber
    that skipped a QoS 0 message still counts as having passed it), published through
    ``watermark`` (a shared ``multiprocessing.RawValue``) for the publisher's window.
    """

    def __init__(self, subscribers: int, watermark: Any) -> None:
        self.subscribers = subscribers
        self.shared = watermark
        self.watermark = 0
        self._reached = [0] * _RING
        self.phases = {p: _Phase() for p in (PHASE_WARMUP, PHASE_MAX_RATE, PHASE_LATENCY)}

    def on_message(self, client: LeanClient, seq: int, sent: int, phase: int, now: int) -> None:
        """Account one delivery (called by :class:`LeanClient`)."""
        last = client.last_seq
        if seq > last:
            reached = self._reached
            if seq == last + 1:
                reached[seq & (_RING - 1)] += 1
            else:
                client.gaps += seq - last - 1
                for s in range(last + 1, seq + 1):
                    reached[s & (_RING - 1)] += 1
            client.last_seq = seq
        else:
            client.reordered += 1
        client.received += 1
        stats = self.phases.get(phase)
        if stats is not None:
            stats.count += 1
            if not stats.first_ns:
                stats.first_ns = now
            stats.last_ns = now
            stats.latencies.append(now - sent)
            if phase == PHASE_LATENCY:
                client.latency_sum += now - sent
                client.latency_count += 1

    def after_read(self) -> None:
        """Advance the watermark past every sequence number all subscribers have reached."""
        reached = self._reached
        mark = self.watermark
        needed = self.subscribers
        slot = (mark + 1) & (_RING - 1)
        if reached[slot] < needed:
            return
        while reached[slot] >= needed:
            reached[slot] = 0
            mark += 1
            slot = (mark + 1) & (_RING - 1)
        self.watermark = mark
        self.shared.value = mark

    def report(self, clients: list[LeanClient]) -> dict[str, Any]:
        """Per-phase counts, timings and latency percentiles, plus per-subscriber totals."""
        phases = {}
        for phase, stats in self.phases.items():
            phases[str(phase)] = {
                "deliveries": stats.count,
                "first_ns": stats.first_ns,
                "last_ns": stats.last_ns,
                **percentiles_ms(stats.latencies),
            }
        received = [c.received for c in clients]
        means = [c.latency_sum / c.latency_count / 1e6 for c in clients if c.latency_count]
        return {
            "phases": phases,
            "watermark": self.watermark,
            "received_total": sum(received),
            "received_min": min(received) if received else 0,
            "gaps": sum(c.gaps for c in clients),
            "reordered": sum(c.reordered for c in clients),
            "fixed_load_mean_ms_by_subscriber": [round(m, 3) for m in means],
            "closed": sum(1 for c in clients if c.closed),
            "close_reasons": sorted({c.close_reason for c in clients if c.closed})[:3],
        }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# ---------------------------------------------------------------------------------- workers


def subscriber_process(
    target: Target, count: int, topic: str, qos: int, watermark: Any, conn: Any
) -> None:
    """Worker: ``count`` subscribers to ``topic`` at ``qos``; answers ``stats``/``stop``."""
    raise_nofile_limit()
    asyncio.run(_run_worker(conn, _subscribers(target, count, topic, qos, watermark, conn)))


def publisher_process(
    target: Target, topic: str, qos: int, payload_bytes: int, watermark: Any, conn: Any
) -> None:
    """Worker: one publisher; answers ``max``, ``rate``, ``acks`` and ``stop``."""
    raise_nofile_limit()
    asyncio.run(_run_worker(conn, _publisher(target, topic, qos, payload_bytes, watermark, conn)))


def holder_process(target: Target, count: int, concurrency: int, conn: Any) -> None:
    """Worker: open ``count`` idle connections, report, hold them until ``close``."""
    raise_nofile_limit()
    asyncio.run(_run_worker(conn, _holder(target, count, concurrency, conn)))


async def _run_worker(conn: Any, body: Any) -> None:
    try:
        await body
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


async def _commands(conn: Any) -> Any:
    loop = asyncio.get_running_loop()
    while True:
        try:
            command = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            return
        yield command
        if command[0] == "stop":
            return


async def _subscribers(
    target: Target, count: int, topic: str, qos: int, watermark: Any, conn: Any
) -> None:
    receiver = FanoutReceiver(count, watermark)
    ids = [f"bench-sub-{i}" for i in range(count)]
    clients, _ = await connect_many(target, ids, concurrency=50)
    try:
        for client in clients:
            client.on_message = receiver.on_message
            client.after_read = receiver.after_read
        await asyncio.gather(*(subscribe(c, topic, qos) for c in clients))
        conn.send(("ready", {"subscribers": len(clients)}))
        async for command in _commands(conn):
            if command[0] == "stats":
                conn.send(("stats", {**receiver.report(clients), "cpu_s": _cpu_seconds()}))
            elif command[0] == "stop":
                conn.send(("stopped", {}))
    finally:
        for client in clients:
            client.close()


async def _publisher(
    target: Target, topic: str, qos: int, payload_bytes: int, watermark: Any, conn: Any
) -> None:
    client = await connect(target, "bench-pub")
    padding = b"x" * max(0, payload_bytes - PAYLOAD_HEADER.size)
    pack = PAYLOAD_HEADER.pack
    acked = 0
    seq = 0

    def on_puback(count: int) -> None:
        nonlocal acked
        acked += count

    client.on_puback = on_puback

    def packet(number: int, phase: int) -> bytes:
        payload = pack(number, time.time_ns(), phase) + padding
        return client.frame(mqtt_publish(topic, payload, qos, (number - 1) % 65535 + 1))

    async def pace_window(window: int) -> int:
        """How many may be sent now (waits while the window is full)."""
        while True:
            if client.closed:
                raise ConnectError(f"publisher connection lost: {client.close_reason}")
            room: int = watermark.value + window - seq
            if qos:
                room = min(room, window - (seq - acked))
            if room > 0:
                return room
            await asyncio.sleep(0.0002)

    def send_done(first: int, start_ns: int) -> None:
        """Tell the controller which seqs this phase published, and when."""
        conn.send(
            (
                "done",
                {
                    "first_seq": first,
                    "last_seq": seq,
                    "start_ns": start_ns,
                    "end_ns": time.time_ns(),
                },
            )
        )

    try:
        conn.send(("ready", {}))
        async for command in _commands(conn):
            name = command[0]
            if name == "max":
                _, phase, duration, window, batch = command
                first = seq + 1
                start_ns = time.time_ns()
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    room = min(await pace_window(window), batch)
                    frames = [packet(seq + i + 1, phase) for i in range(room)]
                    seq += room
                    client.write(b"".join(frames))
                    if client.backlog:
                        await client.drained()
                    else:
                        await asyncio.sleep(0)
                send_done(first, start_ns)
            elif name == "rate":
                _, phase, rate, duration, window = command
                first = seq + 1
                start_ns = time.time_ns()
                begin = time.monotonic()
                total = max(1, int(rate * duration))
                for i in range(total):
                    delay = begin + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await pace_window(window)
                    seq += 1
                    client.write(packet(seq, phase))
                send_done(first, start_ns)
            elif name == "acks":
                deadline = time.monotonic() + command[1]
                while qos and acked < seq and time.monotonic() < deadline and not client.closed:
                    await asyncio.sleep(0.01)
                conn.send(("acks", {"sent": seq, "acked": acked, "cpu_s": _cpu_seconds()}))
            elif name == "cpu":
                conn.send(("cpu", {"cpu_s": _cpu_seconds()}))
            elif name == "stop":
                conn.send(("stopped", {}))
    finally:
        client.close()


async def _holder(target: Target, count: int, concurrency: int, conn: Any) -> None:
    ids = [f"bench-conn-{i}" for i in range(count)]
    started = time.monotonic()
    clients, failures = await connect_many(
        target, ids, concurrency=concurrency, tolerate_failures=True
    )
    try:
        conn.send(
            (
                "held",
                {
                    "opened": len(clients),
                    "failed": sum(failures.values()),
                    "failure_reasons": dict(failures.most_common(3)),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
        )
        async for command in _commands(conn):
            if command[0] == "check":
                conn.send(("check", {"open": sum(1 for c in clients if not c.closed)}))
            elif command[0] == "stop":
                conn.send(("stopped", {}))
    finally:
        for client in clients:
            client.close()

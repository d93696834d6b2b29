"""The local AWS IoT Core endpoint: TLS, WebSocket MQTT at ``/mqtt``, and iot-data Publish.

One asyncio process on 127.0.0.1. Every connection is TLS (the local CA from
:mod:`infra.local.net.certs`); TLS is driven through ``ssl.MemoryBIO`` rather than asyncio's SSL
transport, whose 256 KiB per-connection read buffer would make thousands of idle connections
expensive. After TLS, a connection speaks HTTP/1.1:

* ``GET /mqtt`` with a SigV4-presigned query (services ``iotdevicegateway`` and ``iotdata``)
  upgrades to a WebSocket carrying MQTT 3.1.1 or 5 (:mod:`infra.local.iot.broker`: sessions,
  shared subscriptions, MQTT 5 limits and what the CONNACK advertises). An MQTT packet over
  the advertised 149,504 bytes gets DISCONNECT 0x95; a WebSocket message over that plus
  1 KiB is closed at the WebSocket level (1009) before it is buffered;
* ``POST /topics/{topic}?qos=&retain=`` with a SigV4 ``Authorization`` header is the
  ``iot-data`` Publish API that boto3 calls;
* ``GET /health`` answers ``{"status": "ok"}`` for readiness checks.

A refused signature is an HTTP 403 with ``{"error", "message"}`` and no upgrade.

X.509 devices (given a :class:`~infra.local.awsauth.devices.DeviceDirectory` and
``device_ca_file``) speak MQTT 3.1.1 or 5 straight over mutual TLS, as on AWS IoT Core: on
``mtls_port`` (AWS: 8883) every connection does; on the main port (AWS: 443) a connection
whose ClientHello offers ALPN ``x-amzn-mqtt-ca`` does (:mod:`infra.local.iot.device_tls`),
and every other connection is the HTTPS/WebSocket service above, never asked for a
certificate. A certificate that does not chain to the device CA, has expired, or is missing
fails the TLS handshake; one that chains but is not registered or not ACTIVE gets the TLS
connection closed before any CONNACK, as AWS IoT does; a registered ACTIVE one is authorised
with its IoT policies by the same broker code as SigV4 clients. When the directory reports a
certificate changed, its live connections are closed if it is no longer ACTIVE, or continue
under its new policies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.devices import Device, DeviceDirectory
from infra.local.awsauth.iam_policy import is_allowed
from infra.local.awsauth.sigv4 import SignatureError, verify_authorization_header, verify_presigned
from infra.local.iot.broker import (
    MAX_PACKET_BYTES,
    MAX_PAYLOAD_BYTES,
    Broker,
    BrokerConfig,
    MqttConnection,
)
from infra.local.iot.device_tls import MQTT_ALPN, device_credential, mtls_context, offered_alpn
from infra.local.iot.topics import TopicError, validate_topic_name
from infra.local.net import websocket as ws
from infra.local.net.certs import TlsFiles, ensure_tls_files
from infra.local.net.http1 import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    error_response,
    json_response,
    parse_request_head,
    render_response,
)

__all__ = ["Gateway", "GatewayConfig"]

log = logging.getLogger("tidings.gateway")

MQTT_SUBPROTOCOLS = ("mqtt", "mqttv3.1")
PRESIGNED_SERVICES = ("iotdevicegateway", "iotdata")
PUBLISH_SERVICES = ("iotdata", "iotdevicegateway")
WRITE_HIGH_WATER = 1024 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    """Where and how the gateway listens; ``broker`` holds the AWS IoT behaviour knobs."""

    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: Path = Path(".tidings/local")
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    handshake_timeout_s: float = 10.0
    max_signature_skew_s: float = 300.0
    mtls_port: int | None = None
    """MQTT over mutual TLS for X.509 devices (AWS: 8883): ``None`` not served, 0 a free port
    (see :attr:`Gateway.mtls_port`). Needs ``device_ca_file`` and a device directory."""
    device_ca_file: Path | None = None
    """The CA device certificates must chain to. With a device directory, it also turns on
    ALPN ``x-amzn-mqtt-ca`` (MQTT over mutual TLS) on :attr:`port`."""

    @property
    def region(self) -> str:
        """The AWS region the endpoint signs for."""
        return self.broker.region


class Gateway:
    """The running endpoint. ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        config: GatewayConfig,
        credentials: CredentialStore,
        *,
        devices: DeviceDirectory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.devices = devices
        """Who a device certificate belongs to; ``None``: no X.509 devices are served."""
        self.clock = clock
        self.broker = Broker(config.broker, clock)
        self.tls: TlsFiles = ensure_tls_files(config.state_dir, config.region)
        self._ssl_context = self.tls.server_context()
        self._device_context: ssl.SSLContext | None = None
        if devices is not None and config.device_ca_file is not None:
            self._device_context = mtls_context(self.tls, config.device_ca_file)
        elif config.mtls_port is not None:
            raise ValueError("mtls_port needs device_ca_file and a device directory")
        self._server: asyncio.Server | None = None
        self._mtls_server: asyncio.Server | None = None
        self.mtls_port: int | None = None
        """The port MQTT over mutual TLS listens on once started (``None``: not served)."""
        self._sweeper: asyncio.Task[None] | None = None
        self.connections: set[_Connection] = set()
        self.port = config.port
        self.mqtt_blocked = False
        """While True, WebSocket upgrades are refused (503) as if a firewall blocked them."""
        self._dirty: list[_Connection] = []
        self._flush_all_scheduled = False
        self.last_framed: tuple[bytes, bytes] = (b"", b"")
        """The last MQTT packet framed for WebSocket on this gateway, and its frame: a fan-out
        sends the same bytes object to every subscriber, so it is framed once. Per gateway:
        each gateway runs on its own loop thread, and a cache shared between them could hand
        one gateway's frame to the other's subscribers."""

    @property
    def ca_file(self) -> Path:
        """The CA file clients must trust."""
        return self.tls.ca_file

    @property
    def endpoint(self) -> str:
        """``https://localhost:<port>``: the iot-data endpoint URL for boto3."""
        return f"https://localhost:{self.port}"

    async def start(self) -> None:
        """Listen (``port`` 0 picks a free port, see :attr:`port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.config.host, self.config.port, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.mtls_port is not None:
            self._mtls_server = await loop.create_server(
                lambda: _Connection(self, device_port=True),
                self.config.host,
                self.config.mtls_port,
                backlog=1024,
            )
            self.mtls_port = self._mtls_server.sockets[0].getsockname()[1]
        if self.devices is not None and self._device_context is not None:
            self.devices.add_listener(self._listener(loop))
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("gateway listening on wss://localhost:%d/mqtt (CA %s)", self.port, self.ca_file)
        if self.mtls_port is not None:
            log.info("gateway listening on mqtts://localhost:%d (mutual TLS)", self.mtls_port)

    @property
    def serves_devices(self) -> bool:
        """Whether X.509 devices are served (ALPN ``x-amzn-mqtt-ca`` on :attr:`port`)."""
        return self._device_context is not None

    def _listener(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
        """The directory listener: hands a changed certificate id to the gateway's loop."""

        def changed(certificate_id: str) -> None:
            if self._server is None or loop.is_closed():
                return  # stopped: nothing of ours is connected any more
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.certificate_changed, certificate_id)

        return changed

    def certificate_changed(self, certificate_id: str) -> None:
        """Look the certificate up again: close its connections when it is no longer ACTIVE
        (AWS IoT drops them, no DISCONNECT), else authorise them with its new policies and
        things. Call on the gateway's loop."""
        directory = self.devices
        if directory is None:
            return
        holders: dict[bytes, list[_Connection]] = {}
        for connection in self.connections:
            device = connection.device
            if device is not None and device.certificate_id == certificate_id:
                holders.setdefault(connection.peer_certificate, []).append(connection)
        loop = asyncio.get_running_loop()
        for der, connections in holders.items():
            future = loop.run_in_executor(None, directory.lookup, der)
            future.add_done_callback(functools.partial(self._certificate_looked_up, connections))

    def _certificate_looked_up(
        self, connections: list[_Connection], future: asyncio.Future[Device | None]
    ) -> None:
        try:
            device = future.result()
        except Exception as exc:  # keep the connections: the next change will tell again
            log.warning("device directory failed on a certificate change: %s", exc)
            return
        for connection in connections:
            connection.device_changed(device)

    def block_mqtt(self) -> None:
        """Refuse new WebSocket connections and drop the open ones (iot-data still works).

        Stands in for a network that will not carry WebSockets, so clients can be seen to
        fall back to polling. Call on the gateway's loop.
        """
        self.mqtt_blocked = True
        for connection in list(self.connections):
            if connection.is_websocket:
                connection.abort()

    def unblock_mqtt(self) -> None:
        """Accept WebSocket connections again."""
        self.mqtt_blocked = False

    def drop_clients(self, client_id_prefix: str) -> int:
        """Abort the connections whose MQTT client id starts with the prefix (a network cut)."""
        dropped = 0
        for connection in list(self.connections):
            mqtt = connection.mqtt
            if mqtt is not None and mqtt.client_id.startswith(client_id_prefix):
                connection.abort()
                dropped += 1
        return dropped

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        server, mtls_server = self._server, self._mtls_server
        self._server = self._mtls_server = None
        for listening in (server, mtls_server):
            if listening is not None:
                listening.close()
        self.broker.shutdown()
        for connection in list(self.connections):
            connection.abort()
        for listening in (server, mtls_server):
            if listening is not None:
                await listening.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                now = self.clock()
                self.broker.sweep()
                for connection in list(self.connections):
                    connection.check_handshake(now)
                self.credentials.purge_expired(now)
            except Exception:  # pragma: no cover - a sweep bug must not stop the sweeper
                log.exception("gateway sweep failed")

    def schedule_flush(self, connection: _Connection) -> None:
        """Flush ``connection`` at the end of this loop turn (one callback for all of them)."""
        self._dirty.append(connection)
        if not self._flush_all_scheduled:
            self._flush_all_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._flush_all_scheduled = False
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection._flush_pending()

    def lookup(self, access_key_id: str) -> StoredCredential | None:
        """Credential lookup for SigV4 verification."""
        return self.credentials.get(access_key_id)


_READ_BUFFER = memoryview(bytearray(64 * 1024))
"""One receive buffer for every connection: the loop is single-threaded and each read is
copied into the connection's TLS BIO at once (asyncio's default allocates 256 KiB a read)."""


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: TLS via memory BIOs, then HTTP, then maybe WebSocket + MQTT; or,
    for an X.509 device, MQTT straight over mutual TLS."""

    def __init__(self, gateway: Gateway, *, device_port: bool = False) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.opened_at = gateway.clock()
        self.idle_since = self.opened_at
        """When the last response left (or the connection opened): the start of the time a
        client has to send its next complete request head and body."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        context = gateway._device_context if device_port else gateway._ssl_context
        assert context is not None
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._is_device = device_port
        """MQTT over mutual TLS (the mTLS port, or ALPN ``x-amzn-mqtt-ca`` on the main one)."""
        self._hello: bytearray | None = (
            bytearray() if gateway.serves_devices and not device_port else None
        )
        """The ClientHello so far, while it decides between HTTPS and device MQTT."""
        self.device: Device | None = None
        """The registered certificate of a connected device."""
        self.peer_certificate = b""
        """The device's certificate (DER)."""
        self._handshaken = False
        self._identifying = False
        """A device's certificate is being looked up (the directory may ask the network)."""
        self._http = bytearray()
        self._body_needed = 0
        self._request: Request | None = None
        self._frames: ws.FrameDecoder | None = None
        self._mqtt: MqttConnection | None = None
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._closing = False
        self._paused = False

    # ----------------------------------------------------------------- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.gateway.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.connections.discard(self)
        self._closing = True
        if self._mqtt is not None:
            self._mqtt.connection_lost()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ_BUFFER[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._closing:
            return
        if self._hello is not None:
            self._hello += data
            offered = offered_alpn(bytes(self._hello))
            if offered is None:
                return
            data, self._hello = bytes(self._hello), None
            if MQTT_ALPN in offered:
                assert self.gateway._device_context is not None
                self._is_device = True
                self._tls = self.gateway._device_context.wrap_bio(
                    self._incoming, self._outgoing, server_side=True
                )
        self._incoming.write(data)
        if not self._handshaken:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush_tls()
                return
            except (ssl.SSLError, OSError) as exc:
                kind = "device TLS handshake" if self._is_device else "TLS handshake"
                log.info("%s with %s failed: %s", kind, self.peer, exc)
                if self._is_device:
                    self._flush_tls()  # the TLS alert says why, as AWS IoT's does
                self.abort()
                return
            self._handshaken = True
            self._flush_tls()
            if self._is_device:
                self._identify_device()
        if self._identifying:
            return  # what arrives waits in the TLS buffer until the directory answered
        self._read_tls()

    def _read_tls(self) -> None:
        chunks = []
        try:
            while True:
                chunk = self._tls.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.close("peer closed TLS")
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS error from %s: %s", self.peer, exc)
            self.abort()
            return
        self._flush_tls()
        for chunk in chunks:
            if self._closing:
                break
            self._plaintext_received(chunk)

    # ----------------------------------------------------------------- output
    def _flush_tls(self) -> None:
        pending = self._outgoing.pending
        if pending and self.transport is not None:
            self.transport.write(self._outgoing.read())

    def _write_plain(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self._tls.write(data)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS write to %s failed: %s", self.peer, exc)
            self.abort()
            return
        self._flush_tls()

    def send(self, data: bytes) -> None:
        """Queue one MQTT packet as its own WebSocket frame.

        One packet per frame, as AWS IoT sends them: AWSIoTPythonSDK only looks at the socket
        again when it becomes readable, so a second packet inside one frame would wait there.
        The frames queued during one event-loop turn leave in one TLS write.
        """
        if self._closing:
            return
        if self._is_device:
            self._pending.append(data)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.gateway.schedule_flush(self)
            return
        gateway = self.gateway
        cached_data, cached_frame = gateway.last_framed  # one read: a consistent pair
        if data is cached_data:
            framed = cached_frame
        else:
            framed = ws.encode_binary(data)
            gateway.last_framed = (data, framed)
        self._pending.append(framed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.gateway.schedule_flush(self)

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        self._write_plain(data)

    def is_congested(self) -> bool:
        return self._paused

    @property
    def is_websocket(self) -> bool:
        """True once the connection was upgraded to a WebSocket."""
        return self._frames is not None

    @property
    def mqtt(self) -> MqttConnection | None:
        """The MQTT conversation on this connection, if any."""
        return self._mqtt

    def close(self, reason: str) -> None:
        """Send what is queued, a WebSocket close frame, a TLS close_notify, then close."""
        if self._closing:
            return
        self._flush_pending()
        if self._frames is not None:
            self._write_plain(ws.encode_close(ws.CLOSE_NORMAL, reason[:100]))
        self._closing = True
        with contextlib.suppress(ssl.SSLError, OSError):
            self._tls.unwrap()
        self._flush_tls()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def check_handshake(self, now: float) -> None:
        """Close connections that never finish TLS + HTTP (half-open floods).

        Without TLS the connection is dropped (there is no way to answer). After TLS, a
        request left half-sent for ``handshake_timeout_s`` gets a 408 and an idle kept-alive
        connection is closed cleanly: a client never loses an answer it could have had.
        """
        if self._frames is not None or self._closing or self._mqtt is not None:
            return
        if now - self.idle_since <= self.gateway.config.handshake_timeout_s:
            return
        if not self._handshaken:
            log.info("closing %s: no TLS handshake within the handshake timeout", self.peer)
            self.abort()
        elif self._http or self._request is not None:
            log.info("closing %s: no complete request within the handshake timeout", self.peer)
            self._refuse(
                None,
                HttpError(
                    408,
                    "request_timeout",
                    "the request head or body did not arrive in time; send it whole",
                ),
            )
        else:
            self.close("idle")

    # ----------------------------------------------------------------- X.509 devices
    def _identify_device(self) -> None:
        """After the mutual-TLS handshake: ask the directory who the certificate belongs to,
        off the loop (a directory may call the IoT control plane)."""
        directory = self.gateway.devices
        assert directory is not None
        self.peer_certificate = self._tls.getpeercert(binary_form=True) or b""
        if not self.peer_certificate:  # CERT_REQUIRED makes this the TLS library's refusal
            self._refuse_device("no client certificate")
            return
        peek = getattr(directory, "peek", None)
        if peek is not None:
            known, device = peek(self.peer_certificate)
            if known:  # the directory's cache: no thread hop per handshake
                self._identified_as(device)
                return
        self._identifying = True
        future = asyncio.get_running_loop().run_in_executor(
            None, directory.lookup, self.peer_certificate
        )
        future.add_done_callback(self._identified)

    def _identified(self, future: asyncio.Future[Device | None]) -> None:
        """The directory's answer from its thread."""
        self._identifying = False
        if self._closing:
            return
        try:
            device = future.result()
        except Exception as exc:
            self._refuse_device(f"the device directory failed: {exc}")
            return
        self._identified_as(device)

    def _identified_as(self, device: Device | None) -> None:
        """An unregistered or not ACTIVE certificate gets the TLS connection closed before
        any MQTT (no CONNACK), as AWS IoT does; else the device's MQTT connection opens."""
        if device is None:
            self._refuse_device("certificate not registered")
            return
        if not device.active:
            self._refuse_device(f"certificate {device.certificate_id} is {device.status}")
            return
        self.device = device
        self._mqtt = self.gateway.broker.open_connection(
            self,
            device_credential(device, ""),
            self.peer,
            websocket=False,
            bind=self._bind_client_id,
        )
        self._read_tls()

    def _refuse_device(self, why: str) -> None:
        log.info("refused device connection from %s: %s", self.peer, why)
        self.close(why)

    def _bind_client_id(self, client_id: str) -> StoredCredential:
        assert self.device is not None
        return device_credential(self.device, client_id)

    def device_changed(self, device: Device | None) -> None:
        """The directory's answer for this connection's certificate changed."""
        mqtt = self._mqtt
        if device is None or not device.active:
            why = "certificate deleted" if device is None else f"certificate is {device.status}"
            if mqtt is not None:
                mqtt.hang_up("AUTH_ERROR", why)
            else:
                self.close(why)
            return
        self.device = device
        if mqtt is not None and mqtt.client_id:
            mqtt.replace_credential(device_credential(device, mqtt.client_id))

    # ----------------------------------------------------------------- plaintext
    def _plaintext_received(self, data: bytes) -> None:
        if self._is_device:
            if self._mqtt is not None:
                self._mqtt.data_received(data)
            return
        if self._frames is not None:
            self._websocket_received(data)
            return
        self._http += data
        while not self._closing and self._frames is None:
            if self._request is None:
                end = self._http.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._http) > MAX_HEAD_BYTES:
                        self._refuse(
                            None,
                            HttpError(431, "headers_too_large", "request headers exceed 16 KiB"),
                        )
                    return
                head = bytes(self._http[:end])
                del self._http[: end + 4]
                try:
                    request = parse_request_head(head)
                    self._body_needed = _content_length(request)
                except HttpError as exc:
                    self._refuse(None, exc)
                    return
                self._request = request
            if len(self._http) < self._body_needed:
                return
            request = self._request
            body = bytes(self._http[: self._body_needed])
            del self._http[: self._body_needed]
            self._request = None
            self._body_needed = 0
            self._dispatch(request, body)
        if self._frames is not None and self._http:
            leftover = bytes(self._http)
            self._http.clear()
            self._websocket_received(leftover)

    def _reply(self, response: bytes, *, close: bool = False) -> None:
        self.idle_since = self.gateway.clock()
        self._write_plain(response)
        if close:
            self.close("http response sent")

    def _dispatch(self, request: Request, body: bytes) -> None:
        path = request.raw_path
        try:
            if path == "/mqtt":
                self._upgrade(request)
            elif path.startswith("/topics/"):
                self._publish_http(request, body)
            elif path == "/health" and request.method == "GET":
                self._reply(
                    json_response(200, {"status": "ok"}, keep_alive=request.keep_alive),
                    close=not request.keep_alive,
                )
            else:
                raise HttpError(404, "not_found", f"no such endpoint: {request.method} {path}")
        except HttpError as exc:
            self._refuse(request, exc)
        except Exception:
            # a bug, not the client's fault: still an answer rather than a dropped connection
            log.exception("gateway: %s %s failed", request.method, path)
            self._refuse(request, HttpError(500, "internal_failure", "the local gateway failed"))

    def _refuse(self, request: Request | None, exc: HttpError) -> None:
        """The JSON error answer; a refused handshake (403), a server error, or a refusal
        before a whole request head was read (``request`` None) also ends the connection."""
        keep_alive = (
            request is not None and request.keep_alive and exc.status != 403 and exc.status < 500
        )
        self._reply(
            error_response(
                exc.status,
                exc.error,
                exc.message,
                [("x-amzn-ErrorType", _aws_error_type(exc.status))],
                keep_alive=keep_alive,
            ),
            close=not keep_alive,
        )

    # ----------------------------------------------------------------- /mqtt upgrade
    def _upgrade(self, request: Request) -> None:
        gateway = self.gateway
        if request.method != "GET" or (request.header("upgrade") or "").lower() != "websocket":
            raise HttpError(400, "bad_request", "/mqtt expects a WebSocket upgrade (GET)")
        if gateway.mqtt_blocked:
            raise HttpError(503, "unavailable", "WebSocket connections are blocked right now")
        key = request.header("sec-websocket-key")
        if not key:
            raise HttpError(400, "bad_request", "missing Sec-WebSocket-Key")
        if not _is_base64_text(key):
            raise HttpError(
                400, "bad_request", "Sec-WebSocket-Key must be base64 text (RFC 6455 4.1)"
            )
        try:
            verified = verify_presigned(
                request.method,
                request.raw_path,
                request.raw_query,
                request.headers,
                lookup=gateway.lookup,
                region=gateway.config.region,
                services=PRESIGNED_SERVICES,
                now=gateway.clock(),
                max_skew_s=gateway.config.max_signature_skew_s,
            )
        except SignatureError as exc:
            log.info("refused WebSocket from %s: %s (%s)", self.peer, exc.code, exc.message)
            raise HttpError(403, exc.code, exc.message) from exc
        offered = request.header_values("sec-websocket-protocol")
        protocol = ws.choose_subprotocol(offered, MQTT_SUBPROTOCOLS)
        headers = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", ws.accept_key(key)),
        ]
        if protocol:
            headers.append(("sec-websocket-protocol", protocol))
        self._write_plain(render_response(101, headers))
        self._frames = ws.FrameDecoder(MAX_PACKET_BYTES + 1024)
        self._mqtt = gateway.broker.open_connection(self, verified.credential, self.peer)

    def _websocket_received(self, data: bytes) -> None:
        assert self._frames is not None
        try:
            messages = self._frames.feed(data)
        except ws.WebSocketError as exc:
            log.info("closing WebSocket from %s: %s", self.peer, exc.message)
            self._write_plain(ws.encode_close(exc.close_code, exc.message[:100]))
            if self._mqtt is not None:
                self._mqtt.connection_lost()
            self.close(exc.message)
            return
        mqtt = self._mqtt
        for opcode, payload in messages:
            if self._closing:
                return
            if opcode == ws.OP_BINARY:
                if mqtt is not None:
                    mqtt.data_received(payload)
            elif opcode == ws.OP_PING:
                self._write_plain(ws.encode_frame(ws.OP_PONG, payload))
            elif opcode == ws.OP_CLOSE:
                if mqtt is not None:
                    mqtt.connection_lost()
                self.close("client closed the WebSocket")
            elif opcode == ws.OP_TEXT:
                self._write_plain(
                    ws.encode_close(ws.CLOSE_UNSUPPORTED_DATA, "MQTT needs binary frames")
                )
                if mqtt is not None:
                    mqtt.connection_lost()
                self.close("text frame")

    # ----------------------------------------------------------------- iot-data Publish
    def _publish_http(self, request: Request, body: bytes) -> None:
        gateway = self.gateway
        if request.method != "POST":
            raise HttpError(405, "method_not_allowed", "iot-data Publish is POST /topics/{topic}")
        try:
            verified = verify_authorization_header(
                request.method,
                request.raw_path,
                request.raw_query,
                request.headers,
                body,
                lookup=gateway.lookup,
                region=gateway.config.region,
                services=PUBLISH_SERVICES,
                now=gateway.clock(),
                max_skew_s=gateway.config.max_signature_skew_s,
            )
        except SignatureError as exc:
            raise HttpError(403, exc.code, exc.message) from exc
        topic = unquote(request.raw_path[len("/topics/") :])
        params = parse_qs(request.raw_query, keep_blank_values=True)
        qos_text = params.get("qos", ["0"])[-1]
        if qos_text not in ("0", "1"):
            raise HttpError(400, "invalid_request", f"qos must be 0 or 1, not {qos_text!r}")
        retain = params.get("retain", ["false"])[-1].lower() == "true"
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            raise HttpError(400, "invalid_request", str(exc)) from exc
        if len(body) > MAX_PAYLOAD_BYTES:
            raise HttpError(
                413,
                "request_entity_too_large",
                f"payload of {len(body)} bytes exceeds AWS IoT's {MAX_PAYLOAD_BYTES}",
            )
        credential = verified.credential
        arn = gateway.config.broker.arn("topic", topic)
        allowed = not topic.startswith("$aws/events/") and is_allowed(
            credential.policy_sets, "iot:Publish", arn, credential.variables
        )
        if allowed and retain:
            allowed = is_allowed(
                credential.policy_sets, "iot:RetainPublish", arn, credential.variables
            )
        if not allowed:
            raise HttpError(
                403, "forbidden", f"{credential.principal} is not authorized to publish to {topic}"
            )
        # answer first: the caller waits for the 200, not for the fan-out to every subscriber
        self._reply(
            json_response(200, {}, keep_alive=request.keep_alive), close=not request.keep_alive
        )
        gateway.broker.publish(topic, body, int(qos_text), retain=retain)


def _content_length(request: Request) -> int:
    if (request.header("transfer-encoding") or "").lower() not in ("", "identity"):
        raise HttpError(
            411, "length_required", "chunked bodies are not supported; send Content-Length"
        )
    values = request.header_values("content-length")
    if not values:
        return 0
    value = values[0]
    if len(set(values)) > 1 or not (value.isascii() and value.isdigit()):
        # isdigit alone lets '²' through, which int() refuses
        raise HttpError(400, "bad_request", "Content-Length must be one decimal number")
    length = int(value)
    if length > MAX_PAYLOAD_BYTES + 4096:
        raise HttpError(
            413,
            "request_entity_too_large",
            f"body of {length} bytes exceeds AWS IoT's payload limit of {MAX_PAYLOAD_BYTES}",
        )
    return length


def _is_base64_text(value: str) -> bool:
    return bool(value) and all(c.isascii() and (c.isalnum() or c in "+/=") for c in value)


def _aws_error_type(status: int) -> str:
    return {
        400: "InvalidRequestException",
        403: "ForbiddenException",
        404: "ResourceNotFoundException",
        405: "MethodNotAllowedException",
        408: "RequestTimeoutException",
        411: "LengthRequiredException",
        431: "RequestHeaderFieldsTooLargeException",
        413: "RequestEntityTooLargeException",
        503: "ServiceUnavailableException",
    }.get(status, "InternalFailureException")


def describe(gateway: Gateway) -> str:
    """A human summary of where the gateway listens."""
    return json.dumps(
        {
            "mqtt": f"wss://localhost:{gateway.port}/mqtt",
            **(
                {"mqtt_mtls": f"mqtts://localhost:{gateway.mtls_port}"}
                if gateway.mtls_port is not None
                else {}
            ),
            "iot_data": gateway.endpoint,
            "ca_file": str(gateway.ca_file),
            "region": gateway.config.region,
        },
        indent=2,
    )

"""Push transports: MQTT 5 (awscrt), and AWSIoTPythonSDK for legacy devices.

Each connects in one of two ways: over a SigV4-signed WebSocket with the identity's AWS
credentials (a signed-in user), or over mutual TLS with an X.509 device's certificate
(``TransportSettings.certificate``; the client id is then the thing name).

Both present the same small interface to the client: ``start``, ``subscribe`` (raises
:class:`~client_sdk.AccessDenied` when the broker refuses), ``unsubscribe``, ``stop``, and
callbacks for messages and for connection changes. Reconnects use jittered exponential
backoff and sign every attempt with fresh credentials from the credential source.

``stop`` returns once the transport is stopped: no callback of a stopped transport reaches the
client afterwards, and no thread it started is left running.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from client_sdk._errors import AccessDenied, ServiceUnavailable
from client_sdk._session import CredentialProvider

__all__ = [
    "Mqtt5Transport",
    "PushTransport",
    "TransportEvents",
    "TransportSettings",
    "V1Transport",
    "new_client_id",
]

log = logging.getLogger("tidings.client")

SUBACK_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
_REFUSING_CONNACKS = frozenset({0x86, 0x87, 0x8A})  # bad credentials, not authorised, banned


class TransportEvents(Protocol):
    """Callbacks a transport makes (from its own threads)."""

    def on_message(self, topic: str, payload: bytes) -> None: ...
    def on_connected(self, transport: PushTransport) -> None: ...
    def on_disconnected(self, transport: PushTransport, reason: str) -> None: ...
    def on_connect_failed(
        self, transport: PushTransport, reason: str, refused: bool = False
    ) -> None: ...


class PushTransport(Protocol):
    """What the client needs from a push transport."""

    client_id: str

    def start(self) -> None: ...
    def subscribe(self, topic: str) -> None: ...
    def unsubscribe(self, topic: str) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class TransportSettings:
    """Where and how a push transport connects (the same for every transport)."""

    endpoint: str
    port: int
    region: str
    ca_file: str | None
    client_id: str
    min_backoff_ms: int = 500
    max_backoff_ms: int = 20_000
    keep_alive_s: int = 60
    certificate: tuple[str, str] | None = None
    """``(cert_file, key_file)``: MQTT over mutual TLS as an X.509 device; None: a SigV4
    WebSocket signed with the credential source's credentials."""


def _needs(credentials: CredentialProvider | None) -> CredentialProvider:
    if credentials is None:
        raise ValueError("a WebSocket transport needs a credential source")
    return credentials


def new_client_id(identity_id: str) -> str:
    """A client id the identity's policy allows (``<identityId>-…``), unique per connection."""
    return f"{identity_id}-{uuid.uuid4().hex[:12]}"


class Mqtt5Transport:
    """awsiotsdk's MQTT 5 client over a SigV4-signed WebSocket, or over mutual TLS."""

    def __init__(
        self,
        events: TransportEvents,
        credentials: CredentialProvider | None,
        settings: TransportSettings,
    ) -> None:
        from awscrt import auth, mqtt5
        from awsiot import mqtt5_client_builder

        self.client_id = settings.client_id
        self._events = events
        self._mqtt5 = mqtt5
        self._started = False
        self._stopped = threading.Event()
        self._stopping = False

        options: dict[str, Any] = {}
        if settings.ca_file:
            options["ca_filepath"] = settings.ca_file
        if settings.certificate is not None:
            # port 443: the builder offers ALPN x-amzn-mqtt-ca itself
            build: Callable[..., Any] = mqtt5_client_builder.mtls_from_path
            options["cert_filepath"], options["pri_key_filepath"] = settings.certificate
        else:
            source = _needs(credentials)

            def fresh() -> Any:
                creds = source.get()
                return auth.AwsCredentials(
                    creds.access_key_id, creds.secret_access_key, creds.session_token
                )

            build = mqtt5_client_builder.websockets_with_default_aws_signing
            options["region"] = settings.region
            options["credentials_provider"] = auth.AwsCredentialsProvider.new_delegate(fresh)
        self._client = build(
            endpoint=settings.endpoint,
            port=settings.port,
            client_id=settings.client_id,
            keep_alive_interval_sec=settings.keep_alive_s,
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
            min_reconnect_delay_ms=settings.min_backoff_ms,
            max_reconnect_delay_ms=settings.max_backoff_ms,
            on_publish_received=self._on_publish,
            on_lifecycle_connection_success=self._on_success,
            on_lifecycle_connection_failure=self._on_failure,
            on_lifecycle_disconnection=self._on_disconnection,
            on_lifecycle_stopped=lambda _d: self._stopped.set(),
            enable_metrics_collection=False,
            **options,
        )

    def _on_publish(self, data: Any) -> None:
        if self._stopping:
            return
        packet = data.publish_packet
        self._events.on_message(packet.topic, bytes(packet.payload))

    def _on_success(self, _data: Any) -> None:
        if not self._stopping:
            self._events.on_connected(self)

    def _on_failure(self, data: Any) -> None:
        if self._stopping:
            return
        connack = getattr(data, "connack_packet", None)
        code = getattr(connack, "reason_code", None)
        refused = code is not None and int(code) in _REFUSING_CONNACKS
        reason = repr(code) if refused else repr(getattr(data, "exception", data))
        self._events.on_connect_failed(self, reason, refused)

    def _on_disconnection(self, data: Any) -> None:
        if self._stopping:
            return
        packet = getattr(data, "disconnect_packet", None)
        reason = repr(packet.reason_code) if packet is not None else repr(data.exception)
        self._events.on_disconnected(self, reason)

    def start(self) -> None:
        """Begin connecting (and keep reconnecting) in the background."""
        self._started = True
        self._client.start()

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1; :class:`AccessDenied` if the broker refuses."""
        mqtt5 = self._mqtt5
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)]
        )
        try:
            suback = self._client.subscribe(packet).result(SUBACK_TIMEOUT_S)
        except Exception as exc:
            raise ServiceUnavailable(f"SUBSCRIBE {topic} did not complete: {exc}") from exc
        for code in suback.reason_codes:
            if int(code) >= 0x80:
                raise AccessDenied(f"not allowed to subscribe to {topic} (reason {code!r})")

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribe (best effort)."""
        with contextlib.suppress(Exception):
            self._client.unsubscribe(self._mqtt5.UnsubscribePacket(topic_filters=[topic])).result(
                SUBACK_TIMEOUT_S
            )

    def stop(self) -> None:
        """Disconnect, stop reconnecting, and return once the client has stopped."""
        if self._stopping:
            return
        self._stopping = True
        if not self._started:
            return
        with contextlib.suppress(Exception):
            self._client.stop()
        self._stopped.wait(STOP_TIMEOUT_S)


class V1Transport:
    """AWSIoTPythonSDK 1.x (legacy devices and Greengrass v1 cores): in websocket mode, or
    over mutual TLS with a device certificate."""

    def __init__(
        self,
        events: TransportEvents,
        credentials: CredentialProvider | None,
        settings: TransportSettings,
    ) -> None:
        from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTClient

        self.client_id = settings.client_id
        self._events = events
        self._credentials = None if settings.certificate is not None else _needs(credentials)
        self._keep_alive_s = settings.keep_alive_s
        endpoint, port = settings.endpoint, settings.port
        client = AWSIoTMQTTClient(settings.client_id, useWebsocket=settings.certificate is None)
        if ".iot." in endpoint and ".amazonaws." in endpoint:
            client.configureEndpoint(endpoint, port)
        else:
            # The SDK only accepts AWS-style host names; a local endpoint is reached through a
            # socket factory while TLS checks the AWS-style name the local certificate carries.
            client.configureEndpoint(f"local-ats.iot.{settings.region}.amazonaws.com", port)
            client.configureSocketFactory(lambda: socket.create_connection((endpoint, port)))
        if settings.certificate is not None:
            cert_file, key_file = settings.certificate
            # port 443: the SDK offers ALPN x-amzn-mqtt-ca itself
            client.configureCredentials(settings.ca_file or _default_ca(), key_file, cert_file)
        else:
            client.configureCredentials(settings.ca_file or _default_ca())
        client.configureAutoReconnectBackoffTime(
            max(1, settings.min_backoff_ms // 1000), max(2, settings.max_backoff_ms // 1000), 20
        )
        client.configureOfflinePublishQueueing(0)
        client.configureConnectDisconnectTimeout(10)
        client.configureMQTTOperationTimeout(SUBACK_TIMEOUT_S)
        client.onOnline = self._online
        client.onOffline = self._offline
        self._client = client
        self._lock = threading.Lock()
        self._stopping = False
        self._connecting: threading.Thread | None = None
        self._refresh_credentials()

    def _refresh_credentials(self) -> None:
        if self._credentials is None:
            return  # mutual TLS: the certificate does not expire with the connection
        creds = self._credentials.get()
        self._client.configureIAMCredentials(
            creds.access_key_id, creds.secret_access_key, creds.session_token
        )

    def _online(self) -> None:
        if not self._stopping:
            self._events.on_connected(self)

    def _offline(self) -> None:
        if self._stopping:
            return
        # the SDK reconnects with whatever credentials it holds: give it fresh ones first
        try:
            self._refresh_credentials()
        except Exception as exc:
            log.info("refreshing the v1 transport's credentials failed: %s", exc)
        finally:
            self._events.on_disconnected(self, "offline")

    def _connect(self) -> None:
        try:
            self._refresh_credentials()
            self._client.connect(keepAliveIntervalSecond=self._keep_alive_s)
        except Exception as exc:
            if not self._stopping:
                self._events.on_connect_failed(self, repr(exc))
            return
        if self._stopping:  # stopped while connecting: do not stay connected
            with contextlib.suppress(Exception):
                self._client.disconnect()

    def start(self) -> None:
        """Connect in the background (the SDK reconnects by itself afterwards)."""
        with self._lock:
            if self._stopping:
                return
            previous = self._connecting
            if previous is not None and previous.is_alive():
                return
            thread = threading.Thread(target=self._connect, daemon=True, name="tidings-v1-connect")
            self._connecting = thread
            thread.start()

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1; :class:`AccessDenied` if the broker refuses."""

        def deliver(_client: Any, _userdata: Any, message: Any) -> None:
            self._events.on_message(message.topic, bytes(message.payload))

        from AWSIoTPythonSDK.exception.AWSIoTExceptions import subackError

        try:
            ok = self._client.subscribe(topic, 1, deliver)
        except subackError as exc:
            raise AccessDenied(f"not allowed to subscribe to {topic} (SUBACK 0x80)") from exc
        except Exception as exc:
            raise ServiceUnavailable(f"SUBSCRIBE {topic} did not complete: {exc}") from exc
        if not ok:
            raise ServiceUnavailable(f"SUBSCRIBE {topic} was queued while offline")

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribe (best effort)."""
        with contextlib.suppress(Exception):
            self._client.unsubscribe(topic)

    def stop(self) -> None:
        """Disconnect; returns once the connecting thread is over."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            connecting = self._connecting
        with contextlib.suppress(Exception):
            self._client.disconnect()
        if connecting is not None and connecting is not threading.current_thread():
            connecting.join(STOP_TIMEOUT_S)


def _default_ca() -> str:
    import ssl

    paths = ssl.get_default_verify_paths()
    found = paths.cafile or paths.openssl_cafile
    if not found:
        raise ServiceUnavailable("no CA file: pass ca_file= (AWSIoTPythonSDK needs one)")
    return found


TransportFactory = Callable[..., PushTransport]

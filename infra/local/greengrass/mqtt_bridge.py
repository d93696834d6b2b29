"""The nucleus's own MQTT connection to AWS IoT Core: the core device's certificate over mTLS.

:class:`MqttBridge` is the :class:`~infra.local.greengrass.nucleus.Bridge` a
:class:`~infra.local.greengrass.nucleus.LocalNucleus` proxies components' IoT Core operations
through, as the real nucleus does with its one connection as the core device's thing: MQTT
3.1.1 (paho-mqtt, imported when started: a development dependency) straight over mutual TLS,
the local gateway's mTLS port standing in for IoT Core's 8883. One broker subscription per
topic filter, however many component streams share it; a message goes to every stream whose
filter matches its topic. After a reconnect, or a ``start()`` after ``stop()``, it subscribes
again (the session is clean); what was published meanwhile is not delivered, as on a core
that was offline.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from infra.local.greengrass.nucleus import OnMessage, topic_matches

__all__ = ["MqttBridge"]


class MqttBridge:
    """The core device's MQTT connection; ``start()`` connects (``ConnectionError`` when
    refused), ``stop()`` disconnects, ``with`` does both."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self._ca_file, self._cert_file, self._key_file = ca_file, cert_file, key_file
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self._routes: dict[str, list[OnMessage]] = {}
        self._qos: dict[str, int] = {}
        self._acks: dict[int, tuple[threading.Event, list[Any]]] = {}

    def start(self) -> Self:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311
        )
        context = ssl.create_default_context(cafile=str(self._ca_file))
        context.load_cert_chain(self._cert_file, self._key_file)
        client.tls_set_context(context)
        connected = threading.Event()
        outcome: list[Any] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not connected.is_set():
                outcome.append(reason)
                connected.set()
            elif not reason.is_failure:
                self._resubscribe()

        def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not connected.is_set():
                outcome.append(reason)
                connected.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = lambda _c, _u, message: self._dispatch(
            message.topic, bytes(message.payload)
        )
        client.on_subscribe = self._on_ack
        client.on_unsubscribe = self._on_ack
        try:
            client.connect(self.host, self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionError(f"cannot reach {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        if not connected.wait(self.timeout) or not outcome or outcome[0].is_failure:
            client.loop_stop()
            client.disconnect()
            raise ConnectionError(f"{self.host}:{self.port} refused {self.client_id}: {outcome}")
        self._client = client
        self._resubscribe()  # started again after stop(): the components' streams stay
        return self

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the Bridge interface

    def subscribe(self, topic_filter: str, qos: int, on_message: OnMessage) -> None:
        with self._lock:
            routes = self._routes.setdefault(topic_filter, [])
            first = not routes
            routes.append(on_message)
            self._qos[topic_filter] = max(qos, self._qos.get(topic_filter, 0))
        if first:
            try:
                reasons = self._wait(lambda c: c.subscribe(topic_filter, qos=qos))
            except RuntimeError:
                self._drop(topic_filter, on_message)
                raise
            if any(reason.is_failure for reason in reasons):
                self._drop(topic_filter, on_message)
                raise RuntimeError(f"IoT Core refused the subscription to {topic_filter}")

    def unsubscribe(self, topic_filter: str, on_message: OnMessage) -> None:
        if self._drop(topic_filter, on_message):
            self._wait(lambda c: c.unsubscribe(topic_filter))

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        info = self._connected().publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(self.timeout)
        if info.rc != 0 or (qos and not info.is_published()):
            raise RuntimeError(f"publishing to {topic} failed (rc {info.rc})")

    # -- internals

    def _connected(self) -> Any:
        client = self._client
        if client is None:
            raise RuntimeError("the MQTT bridge is not connected: start() it first")
        return client

    def _drop(self, topic_filter: str, on_message: OnMessage) -> bool:
        """Forget one route; whether it was the filter's last."""
        with self._lock:
            routes = self._routes.get(topic_filter, [])
            if on_message in routes:
                routes.remove(on_message)
            if routes:
                return False
            self._routes.pop(topic_filter, None)
            self._qos.pop(topic_filter, None)
            return True

    def _wait(self, send: Callable[[Any], tuple[int, int | None]]) -> list[Any]:
        event: threading.Event = threading.Event()
        reasons: list[Any] = []
        with self._lock:  # the acknowledgement cannot be handled before it is awaited
            rc, mid = send(self._connected())
            if rc != 0 or mid is None:
                raise RuntimeError(f"the MQTT bridge could not send (rc {rc})")
            self._acks[mid] = (event, reasons)
        if not event.wait(self.timeout):
            with self._lock:
                self._acks.pop(mid, None)
            raise RuntimeError("IoT Core did not acknowledge in time")
        return reasons

    def _on_ack(self, _c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        with self._lock:
            waiting = self._acks.pop(mid, None)
        if waiting is not None:
            waiting[1].extend(reasons if isinstance(reasons, list) else [])
            waiting[0].set()

    def _resubscribe(self) -> None:
        with self._lock:
            filters = list(self._qos.items())
        for topic_filter, qos in filters:
            self._client.subscribe(topic_filter, qos=qos)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        with self._lock:
            targets = [
                on_message
                for topic_filter, routes in self._routes.items()
                if topic_matches(topic_filter, topic)
                for on_message in routes
            ]
        for on_message in targets:
            on_message(topic, payload)

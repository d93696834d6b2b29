"""The push transport of a Greengrass v2 component: the nucleus's IPC MQTT proxy.

A component does not connect to AWS IoT itself: the nucleus holds the core device's one
connection, and the component asks it over IPC (awsiotsdk's ``greengrasscoreipc``, a Unix
socket named by ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``, authenticated with
``SVCUID``) to ``SubscribeToIoTCore``. The recipe's ``aws.greengrass.ipc.mqttproxy`` access
control decides which topics it may subscribe to; outside them the nucleus answers
``UnauthorizedError`` (here :class:`~client_sdk.AccessDenied`).

What the component cannot see is the nucleus's own connection: while the core is offline the
IPC streams stay open and silent, and what was published meanwhile is not delivered. The
client therefore reads each channel after its cursor every ``verify_interval_s`` while pushed
(:attr:`GreengrassTransport.may_miss_silently`), as well as on every gap a push shows. A lost
IPC connection (the nucleus restarting) is reported as a disconnection and reconnected with
jittered backoff; the control loop then subscribes again and reads what it missed.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from typing import Any

from client_sdk._errors import AccessDenied, ServiceUnavailable
from client_sdk._signin import GreengrassCore
from client_sdk._transport import SUBACK_TIMEOUT_S, TransportEvents

__all__ = ["GreengrassTransport"]

log = logging.getLogger("tidings.client")

CONNECT_TIMEOUT_S = 10.0


class GreengrassTransport:
    """``SubscribeToIoTCore`` through the nucleus, one IPC stream per channel topic."""

    may_miss_silently = True
    """The nucleus's connection to AWS IoT is invisible from here: read the API now and then."""

    def __init__(
        self,
        events: TransportEvents,
        core: GreengrassCore,
        *,
        min_backoff_ms: int = 500,
        max_backoff_ms: int = 20_000,
    ) -> None:
        self.client_id = core.thing_name
        self._events = events
        self._core = core
        self._min_backoff_s = min_backoff_ms / 1000
        self._max_backoff_s = max_backoff_ms / 1000
        self._lock = threading.Lock()
        self._client: Any = None  # GreengrassCoreIPCClientV2 while connected
        self._streams: dict[str, Any] = {}  # topic -> its SubscribeToIoTCore operation
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect to the nucleus in the background (and again after each loss)."""
        with self._lock:
            if self._stopping.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._connect_until_up, daemon=True, name="tidings-greengrass"
            )
            self._thread.start()

    def _connect_until_up(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                client = self._connect()
            except Exception as exc:  # the socket is gone, the token refused, a timeout
                from awsiot.eventstreamrpc import AccessDeniedError

                failures += 1
                refused = isinstance(exc, AccessDeniedError)  # the nucleus refused the SVCUID
                self._events.on_connect_failed(self, f"Greengrass IPC: {exc!r}", refused)
                ceiling = min(self._max_backoff_s, self._min_backoff_s * 2 ** min(failures, 16))
                if self._stopping.wait(random.uniform(0, ceiling)):
                    return
                continue
            with self._lock:
                if self._stopping.is_set():
                    client.close(executor_wait=False)
                    return
                self._client = client
            self._events.on_connected(self)
            return

    def _connect(self) -> Any:
        from awsiot import eventstreamrpc, greengrasscoreipc
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        transport = self

        class Lifecycle(eventstreamrpc.LifecycleHandler):  # type: ignore[misc]
            def on_disconnect(self, reason: Exception | None) -> None:
                transport._lost(repr(reason))

            def on_error(self, reason: Exception) -> bool:
                log.warning("Greengrass IPC error: %r", reason)
                return True  # close the connection: the transport reconnects

        ipc = greengrasscoreipc.connect(
            ipc_socket=self._core.ipc_socket,
            authtoken=self._core.svcuid,
            lifecycle_handler=Lifecycle(),
            timeout=CONNECT_TIMEOUT_S,
        )
        # executor=None: stream events are handled on the connection's thread, in order
        return GreengrassCoreIPCClientV2(client=ipc, executor=None)

    def _lost(self, reason: str) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._streams.clear()
        if client is None or self._stopping.is_set():
            return
        self._events.on_disconnected(self, f"Greengrass IPC connection lost: {reason}")
        self.start()

    def subscribe(self, topic: str) -> None:
        """``SubscribeToIoTCore`` at QoS 1; :class:`AccessDenied` outside the recipe's
        access control, :class:`ServiceUnavailable` when the nucleus is not reachable."""
        from awsiot.greengrasscoreipc.model import QOS, UnauthorizedError

        with self._lock:
            client = self._client
        if client is None:
            raise ServiceUnavailable("not connected to the Greengrass nucleus")

        def on_event(event: Any) -> None:
            message = event.message
            if message is not None and not self._stopping.is_set():
                self._events.on_message(message.topic_name, bytes(message.payload or b""))

        def on_error(error: Exception) -> bool:
            log.warning("the SubscribeToIoTCore stream of %s failed: %r", topic, error)
            return True  # close the stream

        try:
            _, operation = client.subscribe_to_iot_core_async(
                topic_name=topic,
                qos=QOS.AT_LEAST_ONCE,
                on_stream_event=on_event,
                on_stream_error=on_error,
            )
            _.result(SUBACK_TIMEOUT_S)
        except UnauthorizedError as exc:
            raise AccessDenied(
                f"the Greengrass nucleus refused SubscribeToIoTCore {topic}: {exc.message} (the "
                "recipe's aws.greengrass.ipc.mqttproxy access control must allow the topic)"
            ) from exc
        except Exception as exc:
            raise ServiceUnavailable(f"SubscribeToIoTCore {topic} did not complete: {exc}") from exc
        with self._lock:
            previous = self._streams.pop(topic, None)
            self._streams[topic] = operation
        if previous is not None:
            with contextlib.suppress(Exception):
                previous.close()

    def unsubscribe(self, topic: str) -> None:
        """Close the topic's stream (the nucleus unsubscribes); best effort."""
        with self._lock:
            operation = self._streams.pop(topic, None)
        if operation is not None:
            with contextlib.suppress(Exception):
                operation.close().result(SUBACK_TIMEOUT_S)

    def stop(self) -> None:
        """Close every stream and the IPC connection; no callback reaches the client after."""
        self._stopping.set()
        with self._lock:
            client, self._client = self._client, None
            thread = self._thread
            self._streams.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(executor_wait=False).result(SUBACK_TIMEOUT_S)
        if thread is not None and thread is not threading.current_thread():
            thread.join(CONNECT_TIMEOUT_S + 5)

"""A local Greengrass v2 nucleus's IPC server, for components using the IoT Core MQTT proxy.

A component connects to the Unix socket the nucleus names in
``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` and sends a CONNECT message whose
payload is ``{"authToken": <SVCUID>}``; an unknown token gets a CONNECT_ACK without the
``ConnectionAccepted`` flag and the socket closes. Then each operation is a stream:

* ``aws.greengrass#SubscribeToIoTCore`` answers ``SubscribeToIoTCoreResponse`` and then one
  ``IoTCoreMessage`` event per message the :class:`Bridge` delivers; the component
  closing the stream (``TERMINATE_STREAM``) or the connection unsubscribes;
* ``aws.greengrass#PublishToIoTCore`` publishes through the bridge and answers
  ``PublishToIoTCoreResponse``, ending the stream.

Both are authorised by the component recipe's ``accessControl`` for
``aws.greengrass.ipc.mqttproxy`` (operations, and resources that are MQTT topic filters,
``*`` for any); outside them the answer is ``aws.greengrass#UnauthorizedError``. Other IPC
operations get ``aws.greengrass#ServiceError`` (this stand-in serves only the MQTT proxy), a
bridge failure too. A malformed message closes that connection (after a best-effort
PROTOCOL_ERROR); others are unaffected. What goes to a component is queued and written by a
thread of its connection: one that stops reading holds up nobody else; past
``max_queued_messages`` its stream events are dropped (counted, logged), and an answer that
finds no room for ``SEND_TIMEOUT_S`` closes the connection.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hmac
import json
import logging
import os
import queue
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from infra.local.greengrass import eventstream as es
from infra.local.net.service import ServerThread

__all__ = [
    "MQTT_PROXY",
    "PUBLISH_TO_IOT_CORE",
    "SUBSCRIBE_TO_IOT_CORE",
    "Bridge",
    "Component",
    "LocalNucleus",
    "OnMessage",
    "filter_covers",
    "topic_matches",
]

logger = logging.getLogger(__name__)

MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"
MAX_QUEUED_MESSAGES = 10_000
"""Messages queued for one component before its stream events are dropped."""
SEND_TIMEOUT_S = 10.0
"""How long an answer waits for room in a full outbox before the connection is closed."""
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
_UNAUTHORIZED = "aws.greengrass#UnauthorizedError"
_INVALID_ARGUMENTS = "aws.greengrass#InvalidArgumentsError"
_SERVICE_ERROR = "aws.greengrass#ServiceError"
_QOS = {"0": 0, "1": 1}
_REFUSED_LINGER = 5.0

OnMessage = Callable[[str, bytes], None]
"""Called by the bridge with a message's topic and payload."""


class Bridge(Protocol):
    """The nucleus's MQTT connection to AWS IoT Core (the core device's own connection)."""

    def subscribe(self, topic_filter: str, qos: int, on_message: OnMessage) -> None:
        """Deliver messages matching ``topic_filter`` to ``on_message`` until unsubscribed."""

    def unsubscribe(self, topic_filter: str, on_message: OnMessage) -> None:
        """Stop delivering ``topic_filter`` to this ``on_message`` (the one subscribed)."""

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish (raises ``OSError`` or ``RuntimeError`` when IoT Core cannot be reached)."""


def filter_covers(resource: str, requested: str) -> bool:
    """Whether the policy ``resource`` (an MQTT topic filter, or ``*``) allows ``requested``
    (a topic, or a topic filter: every topic it matches must match ``resource``)."""
    if resource == "*":
        return True
    granted, asked = resource.split("/"), requested.split("/")
    for index, level in enumerate(granted):
        if level == "#":
            return True
        if index >= len(asked):
            return False
        if level == "+":
            if asked[index] == "#":
                return False
            continue
        if asked[index] != level:
            return False
    return len(asked) == len(granted)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether MQTT ``topic_filter`` matches ``topic`` (``*`` is a plain topic name here)."""
    return topic_filter == topic or (topic_filter != "*" and filter_covers(topic_filter, topic))


@dataclass(frozen=True)
class Component:
    """A component the nucleus runs: its name, its SVCUID and its recipe's ``accessControl``."""

    name: str
    svcuid: str
    access_control: Mapping[str, Mapping[str, Mapping[str, Any]]]

    def allows(self, service: str, operation: str, resource: str) -> bool:
        """Whether any policy of ``service`` names the operation (or ``*``) and a resource
        covering ``resource``."""
        for policy in self.access_control.get(service, {}).values():
            operations = policy.get("operations", ())
            if operation not in operations and "*" not in operations:
                continue
            if any(
                filter_covers(str(granted), resource) for granted in policy.get("resources", ())
            ):
                return True
        return False


class _OperationError(Exception):
    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model, self.message = model, message


class _Subscription:
    """One SubscribeToIoTCore stream: holds deliveries back until its response is sent."""

    def __init__(self, connection: _Connection, stream_id: int, topic_filter: str) -> None:
        self._connection, self.stream_id, self.topic_filter = connection, stream_id, topic_filter
        self._lock = threading.Lock()
        self._held: list[tuple[str, bytes]] | None = []
        self._closed = False

    def on_message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            if self._held is not None:
                self._held.append((topic, payload))
                return
            self._send(topic, payload)

    def go_live(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            for topic, payload in held:
                if not self._closed:
                    self._send(topic, payload)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _send(self, topic: str, payload: bytes) -> None:
        event = {"message": {"topicName": topic, "payload": base64.b64encode(payload).decode()}}
        if not self._connection.send_application(
            self.stream_id, "aws.greengrass#IoTCoreMessage", event, droppable=True
        ):
            self._closed = True


class _Connection:
    """One component's connection: reads messages, answers them, owns its streams."""

    def __init__(self, nucleus: LocalNucleus, sock: socket.socket) -> None:
        self._nucleus, self._socket = nucleus, sock
        self._component: Component | None = None
        self._last_stream_id = 0
        self._subscriptions: dict[int, _Subscription] = {}
        self._subscriptions_lock = threading.Lock()
        self._open = True
        self._refused = False
        # what goes out is queued and written by a thread of the connection's own: a component
        # that stops reading holds up only itself, never the bridge that delivers to everyone
        self._outbox: queue.Queue[bytes | None] = queue.Queue(nucleus.max_queued_messages)
        self.dropped = 0
        """Events dropped because the component did not read them fast enough."""
        self._writer = threading.Thread(target=self._write, daemon=True, name="nucleus-ipc-out")

    def serve(self) -> None:
        decoder = es.Decoder(self._nucleus.max_message_size)
        self._writer.start()
        try:
            while self._open:
                data = self._socket.recv(65536)
                if not data:
                    return
                for message in decoder.feed(data):
                    if self._refused:
                        break
                    self._handle(message)
        except es.MalformedMessage as exc:
            logger.info("closing an IPC connection: %s", exc)
            self._send(es.rpc_message(es.MessageType.PROTOCOL_ERROR, payload=str(exc).encode()))
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._open = False
        with self._subscriptions_lock:
            subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            self._end_subscription(subscription)
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RD)  # the reader stops
        try:
            self._outbox.put_nowait(None)  # the writer sends what is queued, then closes
        except queue.Full:  # the component reads nothing: what is queued is not sent
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        if not self._writer.is_alive():
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    # -- sending

    def _send(self, message: es.Message, *, droppable: bool = False) -> bool:
        """Queue ``message`` for the writer. Answers wait for room; an event (``droppable``)
        for a component whose outbox is full is dropped and counted: its client reads what it
        missed from the channels API, as after any lost message."""
        try:
            data = es.encode(message)
        except es.EventStreamError:
            logger.exception("cannot encode an IPC message")
            return False
        if not self._open:
            return False
        try:
            if droppable:
                self._outbox.put_nowait(data)
            else:
                self._outbox.put(data, timeout=SEND_TIMEOUT_S)
        except queue.Full:
            if not droppable:
                logger.warning("closing an IPC connection: the component reads nothing")
                self.close()
                return False
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "a component is not reading its IPC events: %d dropped", self.dropped
                )
        return True

    def _write(self) -> None:
        while True:
            data = self._outbox.get()
            if data is None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)
                return
            try:
                self._socket.sendall(data)
            except OSError:
                self._open = False
                return

    def send_application(
        self,
        stream_id: int,
        model: str,
        body: Mapping[str, Any],
        *,
        error: bool = False,
        terminate: bool = False,
        droppable: bool = False,
    ) -> bool:
        kind = es.MessageType.APPLICATION_ERROR if error else es.MessageType.APPLICATION_MESSAGE
        flags = es.MessageFlag.TERMINATE_STREAM if terminate else es.MessageFlag.NONE
        headers = (
            es.Header.string(es.CONTENT_TYPE, es.CONTENT_TYPE_JSON),
            es.Header.string(es.SERVICE_MODEL_TYPE, model),
        )
        message = es.rpc_message(
            kind,
            stream_id=stream_id,
            flags=flags,
            headers=headers,
            payload=json.dumps(body).encode(),
        )
        return self._open and self._send(message, droppable=droppable)

    # -- receiving

    def _handle(self, message: es.Message) -> None:
        fields = es.rpc_fields(message)
        if self._component is None:
            self._connect(message, fields)
        elif fields.message_type is es.MessageType.PING:
            self._send(es.rpc_message(es.MessageType.PING_RESPONSE, payload=message.payload))
        elif fields.message_type is es.MessageType.PING_RESPONSE:
            pass
        elif fields.message_type is es.MessageType.APPLICATION_MESSAGE and fields.stream_id > 0:
            self._on_stream(message, fields)
        else:
            raise es.MalformedMessage(
                f"unexpected {fields.message_type.name} on stream {fields.stream_id}"
            )

    def _connect(self, message: es.Message, fields: es.RpcFields) -> None:
        if fields.message_type is not es.MessageType.CONNECT or fields.stream_id != 0:
            raise es.MalformedMessage("the first message must be CONNECT on stream 0")
        if message.string(es.VERSION) != es.VERSION_STRING:
            raise es.MalformedMessage(f"CONNECT must carry {es.VERSION} {es.VERSION_STRING}")
        component = self._nucleus.authenticate(_auth_token(message.payload))
        accepted = es.MessageFlag.CONNECTION_ACCEPTED if component else es.MessageFlag.NONE
        self._send(es.rpc_message(es.MessageType.CONNECT_ACK, flags=accepted))
        if component is None:
            # The client closes on a refusing CONNECT_ACK; closing first could make it see
            # a closed socket instead of the refusal. Wait a little for its close.
            logger.info("refused an IPC connection: unknown authToken")
            self._refused = True
            self._socket.settimeout(_REFUSED_LINGER)
        else:
            self._component = component

    def _on_stream(self, message: es.Message, fields: es.RpcFields) -> None:
        stream_id = fields.stream_id
        if stream_id <= self._last_stream_id:
            if fields.flags & es.MessageFlag.TERMINATE_STREAM:
                with self._subscriptions_lock:
                    subscription = self._subscriptions.pop(stream_id, None)
                if subscription is not None:
                    self._end_subscription(subscription)
            return
        self._last_stream_id = stream_id
        operation = message.string(es.OPERATION)
        if operation is None:
            raise es.MalformedMessage(f"stream {stream_id} starts without an operation header")
        try:
            request = _json_object(message.payload)
            if operation == SUBSCRIBE_TO_IOT_CORE:
                self._subscribe(stream_id, request)
            elif operation == PUBLISH_TO_IOT_CORE:
                self._publish(stream_id, request)
            else:
                raise _OperationError(
                    _SERVICE_ERROR, f"the local nucleus does not serve {operation}"
                )
        except _OperationError as exc:
            self.send_application(
                stream_id, exc.model, {"message": exc.message}, error=True, terminate=True
            )

    def _authorize(self, operation: str, resource: str) -> None:
        component = self._component
        assert component is not None
        if not component.allows(MQTT_PROXY, operation, resource):
            raise _OperationError(
                _UNAUTHORIZED,
                f"Principal {component.name} is not authorized to perform "
                f"{MQTT_PROXY}:{operation} on resource {resource}",
            )

    def _subscribe(self, stream_id: int, request: Mapping[str, Any]) -> None:
        topic_filter, qos = _topic_and_qos(request)
        self._authorize(SUBSCRIBE_TO_IOT_CORE, topic_filter)
        subscription = _Subscription(self, stream_id, topic_filter)
        try:
            self._nucleus.bridge.subscribe(topic_filter, qos, subscription.on_message)
        except (OSError, RuntimeError, ValueError) as exc:
            raise _OperationError(_SERVICE_ERROR, f"subscribe failed: {exc}") from exc
        with self._subscriptions_lock:
            if not self._open:
                self._end_subscription(subscription)
                return
            self._subscriptions[stream_id] = subscription
        self.send_application(stream_id, "aws.greengrass#SubscribeToIoTCoreResponse", {})
        subscription.go_live()

    def _publish(self, stream_id: int, request: Mapping[str, Any]) -> None:
        topic, qos = _topic_and_qos(request)
        if "+" in topic.split("/") or "#" in topic.split("/"):
            raise _OperationError(_INVALID_ARGUMENTS, f"cannot publish to a filter: {topic}")
        self._authorize(PUBLISH_TO_IOT_CORE, topic)
        try:
            payload = base64.b64decode(request.get("payload") or "", validate=True)
        except (binascii.Error, TypeError) as exc:
            raise _OperationError(_INVALID_ARGUMENTS, "payload is not base64") from exc
        try:
            self._nucleus.bridge.publish(topic, payload, qos)
        except (OSError, RuntimeError, ValueError) as exc:
            raise _OperationError(_SERVICE_ERROR, f"publish failed: {exc}") from exc
        self.send_application(
            stream_id, "aws.greengrass#PublishToIoTCoreResponse", {}, terminate=True
        )

    def _end_subscription(self, subscription: _Subscription) -> None:
        subscription.close()
        try:
            self._nucleus.bridge.unsubscribe(subscription.topic_filter, subscription.on_message)
        except (OSError, RuntimeError, ValueError):
            logger.exception("unsubscribing %s failed", subscription.topic_filter)


def _auth_token(payload: bytes) -> str | None:
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    token = body.get("authToken") if isinstance(body, dict) else None
    return token if isinstance(token, str) else None


def _json_object(payload: bytes) -> Mapping[str, Any]:
    try:
        body = json.loads(payload or b"{}")
    except ValueError as exc:
        raise _OperationError(_SERVICE_ERROR, "the request is not JSON") from exc
    if not isinstance(body, dict):
        raise _OperationError(_SERVICE_ERROR, "the request is not a JSON object")
    return body


def _topic_and_qos(request: Mapping[str, Any]) -> tuple[str, int]:
    topic = request.get("topicName")
    if not isinstance(topic, str) or not topic:
        raise _OperationError(_INVALID_ARGUMENTS, "topicName is required")
    qos = _QOS.get(str(request.get("qos", "0")))
    if qos is None:
        raise _OperationError(_INVALID_ARGUMENTS, f"qos must be '0' or '1', not {request['qos']!r}")
    return topic, qos


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    nucleus: LocalNucleus


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.nucleus.serve_connection(self.request)


class LocalNucleus(ServerThread):
    """The nucleus's IPC server on a Unix socket, bridging the MQTT proxy to ``bridge``.

    ``components`` maps each component name to its SVCUID and its recipe's ``accessControl``
    (``{"aws.greengrass.ipc.mqttproxy": {"<policy id>": {"operations": [...], "resources":
    [...]}}}``). It has no TCP port: :attr:`socket_path` is where it listens.
    """

    name = "greengrass nucleus"

    def __init__(
        self,
        socket_path: str,
        components: Mapping[str, tuple[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]],
        bridge: Bridge,
        *,
        max_message_size: int = es.MAX_MESSAGE_SIZE,
        max_queued_messages: int = MAX_QUEUED_MESSAGES,
    ) -> None:
        super().__init__()
        self.max_queued_messages = max_queued_messages
        self.socket_path = socket_path
        self.components: Sequence[Component] = tuple(
            Component(name, svcuid, access) for name, (svcuid, access) in components.items()
        )
        self.bridge = bridge
        self.max_message_size = max_message_size
        self._connections: set[_Connection] = set()
        self._connections_lock = threading.Lock()

    def authenticate(self, token: str | None) -> Component | None:
        """The component whose SVCUID is ``token`` (compared in constant time), or ``None``."""
        if not token:
            return None
        found = None
        for component in self.components:
            if hmac.compare_digest(component.svcuid.encode(), token.encode()):
                found = component
        return found

    def component_environment(self, name: str) -> dict[str, str]:
        """The IPC variables the nucleus gives component ``name``."""
        for component in self.components:
            if component.name == name:
                return {
                    "SVCUID": component.svcuid,
                    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": self.socket_path,
                }
        raise KeyError(name)

    def dropped_events(self) -> int:
        """Stream events dropped so far for components that did not read them (open
        connections)."""
        with self._connections_lock:
            return sum(connection.dropped for connection in self._connections)

    def serve_connection(self, sock: socket.socket) -> None:
        connection = _Connection(self, sock)
        with self._connections_lock:
            self._connections.add(connection)
        try:
            connection.serve()
        finally:
            with self._connections_lock:
                self._connections.discard(connection)

    def _bind(self) -> socketserver.BaseServer:
        if _is_served(self.socket_path):
            raise OSError(errno.EADDRINUSE, f"{self.socket_path} is served by another process")
        _remove_stale_socket(self.socket_path)
        server = _Server(self.socket_path, _Handler)
        server.nucleus = self
        return server

    def stop(self) -> None:
        """Stop listening, close every connection (unsubscribing its streams), remove the socket."""
        running = self._server is not None
        super().stop()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
        if running:
            _remove_stale_socket(self.socket_path)

    @property
    def port(self) -> int:
        """A Unix socket has no port: ``RuntimeError`` (use :attr:`socket_path`)."""
        raise RuntimeError(f"the {self.name} listens on {self.socket_path}, not a port")


def _is_served(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _remove_stale_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)

"""The real AWS IoT clients, behind one small interface, for tests against the gateway.

Each wrapper connects with SigV4-signed WebSocket exactly as a user's app would:
awsiotsdk (MQTT 3.1.1 and MQTT 5, awscrt underneath), AWSIoTPythonSDK (websocket mode,
pointed at 127.0.0.1 through a socket factory), and paho-mqtt with a presigned path.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.identities import REGION, Identity

TIMEOUT = 15.0


class Refused(Exception):
    """The client could not connect (handshake refused, CONNACK refused, or timed out)."""


@dataclass
class ClientBase:
    port: int
    ca_file: Path
    identity: Identity
    client_id: str = ""
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        if not self.client_id:
            self.client_id = f"{self.identity.identity_id}-{uuid.uuid4().hex[:8]}"

    def on_message(self, topic: str, payload: bytes) -> None:
        self.messages.put((topic, bytes(payload)))

    def receive(self, timeout: float = TIMEOUT) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def nothing_received(self, wait: float = 1.0) -> bool:
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    # to implement
    def connect(self) -> None: ...
    def subscribe(self, topic_filter: str) -> bool: ...
    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None: ...
    def disconnect(self) -> None: ...


class AwsIotSdkV311(ClientBase):
    """awsiotsdk ``mqtt_connection_builder.websockets_with_default_aws_signing``."""

    kind = "awsiotsdk-mqtt311"

    def connect(self) -> None:
        from awscrt import auth
        from awsiot import mqtt_connection_builder

        provider = auth.AwsCredentialsProvider.new_static(
            self.identity.access_key, self.identity.secret_key, self.identity.token
        )
        self.connection = mqtt_connection_builder.websockets_with_default_aws_signing(
            region=REGION,
            credentials_provider=provider,
            endpoint="localhost",
            port=self.port,
            ca_filepath=str(self.ca_file),
            client_id=self.client_id,
            clean_session=True,
            keep_alive_secs=30,
            enable_metrics_collection=False,
        )
        try:
            self.connection.connect().result(TIMEOUT)
        except Exception as exc:
            raise Refused(str(exc)) from exc

    def subscribe(self, topic_filter: str) -> bool:
        from awscrt import mqtt

        def callback(topic: str, payload: bytes, **_: Any) -> None:
            self.on_message(topic, payload)

        future, _ = self.connection.subscribe(topic_filter, mqtt.QoS.AT_LEAST_ONCE, callback)
        try:
            result = future.result(TIMEOUT)
        except Exception:
            return False
        return result.get("qos") is not None

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        from awscrt import mqtt

        future, _ = self.connection.publish(topic, payload, mqtt.QoS(qos))
        future.result(TIMEOUT)

    def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.disconnect().result(TIMEOUT)


class AwsIotSdkV5(ClientBase):
    """awsiotsdk ``mqtt5_client_builder.websockets_with_default_aws_signing``."""

    kind = "awsiotsdk-mqtt5"

    def connect(self) -> None:
        from awscrt import auth, mqtt5
        from awsiot import mqtt5_client_builder

        connected = threading.Event()
        self.failure: Any = None
        self.stopped = threading.Event()

        def on_success(_data: Any) -> None:
            connected.set()

        def on_failure(data: Any) -> None:
            self.failure = data
            connected.set()

        def on_publish(data: Any) -> None:
            packet = data.publish_packet
            self.on_message(packet.topic, packet.payload)

        provider = auth.AwsCredentialsProvider.new_static(
            self.identity.access_key, self.identity.secret_key, self.identity.token
        )
        self.client = mqtt5_client_builder.websockets_with_default_aws_signing(
            region=REGION,
            credentials_provider=provider,
            endpoint="localhost",
            port=self.port,
            ca_filepath=str(self.ca_file),
            client_id=self.client_id,
            on_publish_received=on_publish,
            on_lifecycle_connection_success=on_success,
            on_lifecycle_connection_failure=on_failure,
            on_lifecycle_stopped=lambda _d: self.stopped.set(),
            min_reconnect_delay_ms=60_000,
            enable_metrics_collection=False,
        )
        self.client.start()
        if not connected.wait(TIMEOUT) or self.failure is not None:
            self.disconnect()
            raise Refused(repr(self.failure))
        self._mqtt5 = mqtt5

    def subscribe(self, topic_filter: str) -> bool:
        mqtt5 = self._mqtt5
        packet = mqtt5.SubscribePacket(
            subscriptions=[
                mqtt5.Subscription(topic_filter=topic_filter, qos=mqtt5.QoS.AT_LEAST_ONCE)
            ]
        )
        suback = self.client.subscribe(packet).result(TIMEOUT)
        self.last_suback = suback
        return all(int(code) < 0x80 for code in suback.reason_codes)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        mqtt5 = self._mqtt5
        result = self.client.publish(
            mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS(qos))
        ).result(TIMEOUT)
        self.last_puback = getattr(result, "puback", None)

    def disconnect(self) -> None:
        self.client.stop()
        self.stopped.wait(TIMEOUT)


class AwsIotPythonSdkV1(ClientBase):
    """AWSIoTPythonSDK 1.x in websocket mode (legacy devices, Greengrass v1)."""

    kind = "AWSIoTPythonSDK"

    def connect(self) -> None:
        from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTClient

        client = AWSIoTMQTTClient(self.client_id, useWebsocket=True)
        client.configureEndpoint(f"local-ats.iot.{REGION}.amazonaws.com", self.port)
        client.configureCredentials(str(self.ca_file))
        client.configureIAMCredentials(
            self.identity.access_key, self.identity.secret_key, self.identity.token
        )
        port = self.port
        client.configureSocketFactory(lambda: socket.create_connection(("127.0.0.1", port)))
        client.configureConnectDisconnectTimeout(10)
        client.configureMQTTOperationTimeout(5)
        client.configureAutoReconnectBackoffTime(1, 2, 20)
        self.client = client
        try:
            ok = client.connect(keepAliveIntervalSecond=30)
        except Exception as exc:
            raise Refused(str(exc)) from exc
        if not ok:
            raise Refused("connect returned False")

    def subscribe(self, topic_filter: str) -> bool:
        def callback(_client: Any, _userdata: Any, message: Any) -> None:
            self.on_message(message.topic, message.payload)

        try:
            return bool(self.client.subscribe(topic_filter, 1, callback))
        except Exception:
            return False

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos)

    def disconnect(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()


def presigned_mqtt_path(
    identity: Identity, port: int, service: str = "iotdevicegateway", expires: int = 300
) -> str:
    """``/mqtt?X-Amz-...`` signed with botocore, the way paho users build it."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"https://localhost:{port}/mqtt")
    credentials = Credentials(identity.access_key, identity.secret_key, identity.token)
    SigV4QueryAuth(credentials, service, REGION, expires=expires).add_auth(request)
    url: str = request.url
    return url[url.index("/mqtt") :]


class PahoWebSocket(ClientBase):
    """paho-mqtt 2.x, WebSocket transport, TLS, presigned path."""

    kind = "paho-mqtt"
    path_override: str | None = None

    def connect(self) -> None:
        import paho.mqtt.client as paho

        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            transport="websockets",
            protocol=paho.MQTTv311,
        )
        path = self.path_override or presigned_mqtt_path(self.identity, self.port)
        client.ws_set_options(path=path)
        client.tls_set(ca_certs=str(self.ca_file))
        connected = threading.Event()
        self.rc: Any = None
        self.subacks: dict[int, Any] = {}
        self.suback_events: dict[int, threading.Event] = {}

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            self.rc = reason
            connected.set()

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            self.on_message(message.topic, message.payload)

        def on_subscribe(_c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
            self.subacks[mid] = reasons
            self.suback_events.setdefault(mid, threading.Event()).set()

        client.on_connect = on_connect
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        self.client = client
        try:
            client.connect("localhost", self.port, keepalive=30)
        except Exception as exc:
            raise Refused(str(exc)) from exc
        client.loop_start()
        if not connected.wait(TIMEOUT) or self.rc is None or self.rc.is_failure:
            client.loop_stop()
            raise Refused(f"paho connect failed: {self.rc}")

    def subscribe(self, topic_filter: str) -> bool:
        _, mid = self.client.subscribe(topic_filter, qos=1)
        event = self.suback_events.setdefault(mid, threading.Event())
        if not event.wait(TIMEOUT):
            return False
        return all(not r.is_failure for r in self.subacks[mid])

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(TIMEOUT)

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


CLIENT_KINDS: dict[str, type[ClientBase]] = {
    "awsiotsdk-mqtt311": AwsIotSdkV311,
    "awsiotsdk-mqtt5": AwsIotSdkV5,
    "AWSIoTPythonSDK": AwsIotPythonSdkV1,
    "paho-mqtt": PahoWebSocket,
}


def iot_data_client(port: int, ca_file: Path, identity: Identity) -> Any:
    """boto3 ``iot-data`` pointed at the gateway."""
    import boto3

    return boto3.client(
        "iot-data",
        endpoint_url=f"https://localhost:{port}",
        verify=str(ca_file),
        region_name=REGION,
        aws_access_key_id=identity.access_key,
        aws_secret_access_key=identity.secret_key,
        aws_session_token=identity.token,
    )

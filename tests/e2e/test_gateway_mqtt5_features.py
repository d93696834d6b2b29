"""MQTT 5 features against the running gateway, with Eclipse Paho (paho-mqtt 2.x) as the client.

Maximum Packet Size, shared subscriptions, Message Expiry Interval and Subscription
Identifiers, each as AWS IoT Core handles them (see ``infra/local/iot/broker.py``).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.iot import mqtt_codec as mq
from infra.local.iot.gateway import Gateway
from tests.support.identities import ARN, Identity, identity_policies, new_identity
from tests.support.raw_mqtt import RawClient
from tests.support.real_clients import presigned_mqtt_path

TIMEOUT = 15.0


class Paho:
    """A paho-mqtt client over the SigV4-presigned WebSocket, with the packets it got."""

    def __init__(
        self,
        gateway: Gateway,
        identity: Identity,
        suffix: str,
        *,
        protocol: int = paho.MQTTv5,
        clean_start: bool = True,
        connect_properties: dict[str, int] | None = None,
    ) -> None:
        self.client_id = f"{identity.identity_id}-{suffix}"
        self.protocol = protocol
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            transport="websockets",
            protocol=protocol,
            **({} if protocol == paho.MQTTv5 else {"clean_session": clean_start}),
        )
        client.ws_set_options(path=presigned_mqtt_path(identity, gateway.port))
        client.tls_set(ca_certs=str(gateway.ca_file))
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.subacks: dict[int, list[Any]] = {}
        self.connack: Any = None
        self.disconnected: Any = None
        connected = threading.Event()
        self._subacked = threading.Condition()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, props: Any) -> None:
            self.connack = (reason, props)
            connected.set()

        def on_subscribe(_c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
            with self._subacked:
                self.subacks[mid] = list(reasons)
                self._subacked.notify_all()

        def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            self.disconnected = reason

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_disconnect = on_disconnect
        client.on_message = lambda _c, _u, message: self.messages.put(message)
        properties = None
        if protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            for name, value in (connect_properties or {}).items():
                setattr(properties, name, value)
            client.connect(
                "localhost", gateway.port, 30, clean_start=clean_start, properties=properties
            )
        else:
            client.connect("localhost", gateway.port, 30)
        client.loop_start()
        self.client = client
        assert connected.wait(TIMEOUT), "no CONNACK"
        assert not self.connack[0].is_failure, self.connack

    def subscribe(
        self, topic_filter: str, properties: Properties | None = None, **options: Any
    ) -> list[int]:
        """The SUBACK reason codes (values) for one filter."""
        if self.protocol == paho.MQTTv5:
            subscription = (topic_filter, paho.SubscribeOptions(qos=1, **options))
            _, mid = self.client.subscribe([subscription], properties=properties)
        else:
            _, mid = self.client.subscribe(topic_filter, qos=1)
        assert mid is not None
        with self._subacked:
            assert self._subacked.wait_for(lambda: mid in self.subacks, TIMEOUT), "no SUBACK"
            return [r.value for r in self.subacks[mid]]

    def publish(self, topic: str, payload: bytes, qos: int = 1, expiry: int | None = None) -> None:
        properties = None
        if expiry is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(TIMEOUT)

    def next_message(self, timeout: float = TIMEOUT) -> paho.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sharing_identity(gateway: Gateway) -> Identity:
    """Tidings' identity policy plus ``iot:Subscribe`` on ``topicfilter/$share/*`` (anything)."""
    identity_id = f"us-east-1:{uuid.uuid4()}"
    extra = {
        "Effect": "Allow",
        "Action": "iot:Subscribe",
        "Resource": f"{ARN}:topicfilter/$share/*",
    }
    policy_sets = [
        [{**document, "Statement": [*document["Statement"], extra]} for document in documents]
        for documents in identity_policies()
    ]
    credential = mint_temporary_credential(
        identity_id, policy_sets, variables={"cognito-identity.amazonaws.com:sub": identity_id}
    )
    gateway.credentials.put(credential)
    return Identity(identity_id, credential)


# ------------------------------------------------------------------ Maximum Packet Size
@pytest.mark.parametrize("qos", [0, 1])
def test_no_publish_larger_than_the_clients_maximum_packet_size(gateway: Gateway, qos: int):
    me = new_identity(gateway.credentials)
    # the topic alone is 71 bytes: "fits" makes an 80-byte PUBLISH, the large one 226+
    small = Paho(gateway, me, f"small{qos}", connect_properties={"MaximumPacketSize": 128})
    assert small.subscribe(me.topic()) == [1]
    sender = Paho(gateway, me, f"sender{qos}")
    sender.publish(me.topic(), b"x" * 150, qos=qos)
    sender.publish(me.topic(), b"fits", qos=qos)
    message = small.next_message()
    assert message.payload == b"fits"  # the large one was discarded for this client only
    assert small.disconnected is None
    session = gateway.broker.sessions[small.client_id]
    assert not session.inflight or [m.payload for m in session.inflight.values()] == [b"fits"]
    small.close()
    sender.close()


def test_connack_matches_aws_iot_core(gateway: Gateway):
    me = new_identity(gateway.credentials)
    client = Paho(gateway, me, "connack")
    properties = client.connack[1]
    assert properties.MaximumPacketSize == 149_504
    assert properties.SubscriptionIdentifierAvailable == 0
    assert properties.SharedSubscriptionAvailable == 1
    client.close()


def test_packet_over_the_servers_maximum_is_refused_with_0x95(gateway: Gateway):
    me = new_identity(gateway.credentials)
    client = RawClient(gateway.port, gateway.ca_file, me)
    assert client.connect(f"{me.identity_id}-big").reason_code == 0
    # 128 KiB of payload is allowed; a user property takes the packet to 150,000 bytes
    publish = mq.Publish(me.topic(), b"x" * (128 * 1024), 0, False, False, None, {})
    room = 150_000 - len(mq.encode(publish, 5)) - 1 - 2 - 1 - 2 - 2  # id, name, value
    publish.properties = {mq.PROP_USER_PROPERTY: [("k", "v" * room)]}
    assert len(mq.encode(publish, 5)) == 150_000
    client.send(publish)
    disconnect = client.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x95


# ------------------------------------------------------------------ shared subscriptions
def test_shared_subscription_gives_each_message_to_one_member(gateway: Gateway):
    me = sharing_identity(gateway)
    share = f"$share/workers/{me.topic()}"
    v5 = Paho(gateway, me, "w5")
    v311 = Paho(gateway, me, "w3", protocol=paho.MQTTv311)  # AWS IoT shares across versions
    assert v5.subscribe(share) == [1]
    assert v311.subscribe(share) == [1]
    everyone = Paho(gateway, me, "all")
    assert everyone.subscribe(me.topic()) == [1]
    sender = Paho(gateway, me, "sender")
    sent = [f"job-{n}".encode() for n in range(40)]
    for payload in sent:
        sender.publish(me.topic(), payload)
    assert [everyone.next_message().payload for _ in sent] == sent
    got: list[bytes] = []
    per_member = {"v5": 0, "v311": 0}
    deadline = time.time() + TIMEOUT
    while len(got) < len(sent) and time.time() < deadline:
        for name, member in (("v5", v5), ("v311", v311)):
            try:
                got.append(member.next_message(timeout=0.05).payload)
                per_member[name] += 1
            except queue.Empty:
                pass
    assert sorted(got) == sorted(sent)  # every message, once, in the group
    assert v5.messages.empty() and v311.messages.empty()
    assert per_member["v5"] and per_member["v311"]  # random choice: both members got some
    for client in (v5, v311, everyone, sender):
        client.close()


def test_shared_subscription_authorisation(gateway: Gateway):
    # Tidings' own policy grants no topicfilter/$share/... resource: refused, as AWS IoT does
    plain = new_identity(gateway.credentials)
    client = Paho(gateway, plain, "plain")
    assert client.subscribe(f"$share/g/{plain.topic()}") == [0x87]
    client.close()
    # a policy that allows any $share filter still only delivers topics it may receive
    me = sharing_identity(gateway)
    other = new_identity(gateway.credentials)
    sharer = Paho(gateway, me, "sharer")
    assert sharer.subscribe(f"$share/g/{other.topic()}") == [1]
    assert sharer.subscribe(f"$share/g/{me.topic()}") == [1]
    victim = Paho(gateway, other, "victim")
    assert victim.subscribe(other.topic()) == [1]
    victim.publish(other.topic(), b"private")
    assert victim.next_message().payload == b"private"
    sender = Paho(gateway, me, "sender")
    sender.publish(me.topic(), b"mine")
    assert sharer.next_message().payload == b"mine"  # and never b"private"
    for each in (sharer, victim, sender):
        each.close()


def test_invalid_shared_filters_and_no_local(gateway: Gateway):
    me = sharing_identity(gateway)  # paho refuses these filters itself: the raw client sends them
    client = RawClient(gateway.port, gateway.ca_file, me)
    assert client.connect(f"{me.identity_id}-bad").reason_code == 0
    codes = client.subscribe("$share/g", "$share//" + me.topic(), f"$share/g+/{me.topic()}")
    assert codes.reason_codes == [0x8F, 0x8F, 0x8F]
    v311 = RawClient(gateway.port, gateway.ca_file, me, protocol_level=4)
    assert v311.connect(f"{me.identity_id}-bad3").reason_code == 0
    assert v311.subscribe("$share/g", packet_id=2).reason_codes == [0x80]
    no_local = mq.SubscriptionOptions(1, no_local=True)  # a protocol error on a shared one
    client.send(mq.Subscribe(3, [(f"$share/g/{me.topic()}", no_local)]))
    disconnect = client.recv_until(mq.Disconnect)
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x82


# ------------------------------------------------------------------ Message Expiry Interval
def test_queued_messages_expire_and_carry_the_time_left(gateway: Gateway):
    me = new_identity(gateway.credentials)
    persistent = {"SessionExpiryInterval": 300}
    sleeper = Paho(gateway, me, "sleeper", clean_start=False, connect_properties=persistent)
    assert sleeper.subscribe(me.topic()) == [1]
    sleeper.close()
    sender = Paho(gateway, me, "sender")
    sender.publish(me.topic(), b"short", expiry=1)
    sender.publish(me.topic(), b"long", expiry=120)
    sender.publish(me.topic(), b"forever")
    time.sleep(2.1)  # "short" expires while the session is offline
    again = Paho(gateway, me, "sleeper", clean_start=False, connect_properties=persistent)
    first, second = again.next_message(), again.next_message()
    assert (first.payload, second.payload) == (b"long", b"forever")
    assert 1 <= first.properties.MessageExpiryInterval <= 118  # counted down, not 120
    assert not hasattr(second.properties, "MessageExpiryInterval")
    again.close()
    sender.close()


# ------------------------------------------------------------------ Subscription Identifiers
def test_subscription_identifier_is_refused(gateway: Gateway):
    me = new_identity(gateway.credentials)
    client = Paho(gateway, me, "subid")
    properties = Properties(PacketTypes.SUBSCRIBE)
    properties.SubscriptionIdentifier = 7
    assert client.subscribe(me.topic(), properties=properties) == [0xA1]
    assert client.subscribe(me.topic("other")) == [1]  # still connected, other filters work
    sender = Paho(gateway, me, "sender")
    sender.publish(me.topic(), b"not subscribed")
    sender.publish(me.topic("other"), b"subscribed")
    assert client.next_message().payload == b"subscribed"
    client.close()
    sender.close()

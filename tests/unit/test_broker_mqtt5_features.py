"""MQTT 5 flow features of the broker, driven through its byte interface with a fake clock.

Maximum Packet Size, Message Expiry Interval, shared subscriptions and Subscription
Identifiers, as AWS IoT Core handles them. No sockets: each client is a
:class:`~infra.local.iot.broker.MqttConnection` fed encoded packets, its output decoded again.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from infra.local.awsauth.credential_store import StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.iot import mqtt_codec as mq
from infra.local.iot.broker import (
    MAX_MESSAGE_EXPIRY_S,
    MAX_PACKET_BYTES,
    MAX_SUBSCRIPTIONS_PER_SHARED_GROUP,
    Broker,
    BrokerConfig,
)
from tests.support.identities import ARN, identity_policies


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: str | None = None

    def send(self, data: bytes) -> None:
        self.data += data

    def close(self, reason: str) -> None:
        self.closed = reason

    def is_congested(self) -> bool:
        return False


def credential(identity_id: str, share: bool = False) -> StoredCredential:
    """Tidings' identity policies; with ``share``, also ``$share/*`` subscriptions anywhere."""
    role, iot = identity_policies()
    if share:
        extra = {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{ARN}:topicfilter/$share/*",
        }
        iot = [{**iot[0], "Statement": [*iot[0]["Statement"], extra]}]
        role = [{**role[0], "Statement": [*role[0]["Statement"], extra]}]
    return mint_temporary_credential(
        identity_id, [role, iot], variables={"cognito-identity.amazonaws.com:sub": identity_id}
    )


def topic(identity_id: str, rest: str = "todos") -> str:
    return f"tidings/dev/users/{identity_id}/{rest}"


class Client:
    def __init__(self, broker: Broker, cred: StoredCredential, level: int = 5) -> None:
        self.sink = Sink()
        self.level = level
        self.connection = broker.open_connection(self.sink, cred, "127.0.0.1:1")
        self.decoder = mq.PacketDecoder(protocol_level=level)
        self.cred = cred
        self.backlog: list[Any] = []

    def send(self, packet: mq.Packet) -> None:
        self.connection.data_received(mq.encode(packet, self.level))

    def packets(self) -> list[Any]:
        """Every packet sent to the client since the last call (including held-back ones)."""
        data = bytes(self.sink.data)
        self.sink.data.clear()
        packets, self.backlog = [*self.backlog, *self.decoder.feed(data)], []
        return packets

    def take(self, kind: type) -> Any:
        """The first packet of ``kind``; the ones after it stay for the next call."""
        packets = self.packets()
        position = next(n for n, p in enumerate(packets) if isinstance(p, kind))
        self.backlog = packets[position + 1 :]
        return packets[position]

    def publishes(self) -> list[mq.Publish]:
        return [p for p in self.packets() if isinstance(p, mq.Publish)]

    def connect(
        self, client_id: str, clean: bool = True, properties: mq.Properties | None = None
    ) -> mq.Connack:
        self.send(mq.Connect("MQTT", self.level, client_id, clean, 60, properties=properties or {}))
        connack: mq.Connack = self.take(mq.Connack)
        return connack

    def subscribe(
        self, *filters: str, properties: mq.Properties | None = None, packet_id: int = 1
    ) -> mq.Suback:
        options = [(f, mq.SubscriptionOptions(1)) for f in filters]
        self.send(mq.Subscribe(packet_id, options, properties or {}))
        suback: mq.Suback = self.take(mq.Suback)
        return suback


def identity_id() -> str:
    return f"us-east-1:{random.getrandbits(64):016x}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(clock: Clock) -> Broker:
    return Broker(BrokerConfig(), clock=clock, rng=random.Random(7))


def joined(broker: Broker, who: str, suffix: str, **connect: Any) -> Client:
    client = Client(broker, credential(who, share=True), connect.pop("level", 5))
    assert client.connect(f"{who}-{suffix}", **connect).reason_code == 0
    return client


# ------------------------------------------------------------------ Maximum Packet Size
def test_connack_advertises_what_aws_iot_core_does(broker: Broker) -> None:
    client = Client(broker, credential(identity_id()))
    ack = client.connect(f"{client.cred.principal}-c")
    assert ack.properties[mq.PROP_MAX_PACKET_SIZE] == MAX_PACKET_BYTES == 149_504
    assert ack.properties[mq.PROP_SUB_ID_AVAILABLE] == 0
    assert ack.properties[mq.PROP_SHARED_SUB_AVAILABLE] == 1
    assert ack.properties[mq.PROP_RECEIVE_MAXIMUM] == 100


@pytest.mark.parametrize("qos", [0, 1])
def test_publish_larger_than_the_clients_maximum_packet_size_is_not_sent(
    broker: Broker, qos: int
) -> None:
    me = identity_id()
    small = joined(broker, me, "small", properties={mq.PROP_MAX_PACKET_SIZE: 64})
    large = joined(broker, me, "large")
    assert small.subscribe(topic(me)).reason_codes == [1]
    assert large.subscribe(topic(me)).reason_codes == [1]
    broker.publish(topic(me), b"x" * 200, qos)
    broker.publish(topic(me), b"tiny", qos)
    got = small.publishes()
    assert [p.payload for p in got] == [b"tiny"]
    assert all(len(mq.encode(p, 5)) <= 64 for p in got)
    assert [p.payload for p in large.publishes()] == [b"x" * 200, b"tiny"]
    session = broker.sessions[f"{me}-small"]
    # the dropped QoS 1 message is not left in flight (it would block the window forever)
    assert [m.payload for m in session.inflight.values()] == ([b"tiny"] if qos else [])
    assert small.sink.closed is None


def test_acknowledgements_drop_the_reason_string_rather_than_exceed_the_limit(
    broker: Broker,
) -> None:
    me = identity_id()
    client = joined(broker, me, "tight", properties={mq.PROP_MAX_PACKET_SIZE: 40})
    suback = client.subscribe(topic(me), properties={mq.PROP_SUBSCRIPTION_ID: [3]})
    assert suback.reason_codes == [0xA1]
    assert mq.PROP_REASON_STRING not in suback.properties
    roomy = joined(broker, me, "roomy")
    suback = roomy.subscribe(topic(me), properties={mq.PROP_SUBSCRIPTION_ID: [3]})
    assert suback.properties[mq.PROP_REASON_STRING]


def test_a_limit_too_small_for_the_connack_closes_the_connection(broker: Broker) -> None:
    me = identity_id()
    client = Client(broker, credential(me))
    client.send(
        mq.Connect("MQTT", 5, f"{me}-x", True, 60, properties={mq.PROP_MAX_PACKET_SIZE: 12})
    )
    assert client.packets() == []  # nothing larger than 12 bytes was sent
    assert client.sink.closed and client.connection.closed
    assert f"{me}-x" not in broker.sessions


# ------------------------------------------------------------------ Subscription Identifiers
def test_subscribe_with_a_subscription_identifier_is_refused(broker: Broker) -> None:
    me = identity_id()
    client = joined(broker, me, "subid")
    suback = client.subscribe(
        topic(me), topic(me, "other"), properties={mq.PROP_SUBSCRIPTION_ID: [9]}
    )
    assert suback.reason_codes == [0xA1, 0xA1]
    assert broker.sessions[f"{me}-subid"].subscriptions == {}
    broker.publish(topic(me), b"m", 1)
    assert client.publishes() == []
    assert client.sink.closed is None
    assert client.subscribe(topic(me), packet_id=2).reason_codes == [1]  # still connected


# ------------------------------------------------------------------ Message Expiry Interval
def test_offline_queue_drops_expired_messages_and_counts_the_interval_down(
    broker: Broker, clock: Clock
) -> None:
    me = identity_id()
    persistent = {mq.PROP_SESSION_EXPIRY: 600}
    client = joined(broker, me, "p", clean=False, properties=persistent)
    assert client.subscribe(topic(me)).reason_codes == [1]
    client.send(mq.Disconnect())
    broker.publish(topic(me), b"short", 1, properties={mq.PROP_MESSAGE_EXPIRY: 5})
    broker.publish(topic(me), b"long", 1, properties={mq.PROP_MESSAGE_EXPIRY: 100})
    broker.publish(topic(me), b"forever", 1)
    clock.now += 30.5
    again = Client(broker, client.cred)
    assert again.connect(f"{me}-p", clean=False, properties=persistent).session_present
    got = again.publishes()
    assert [p.payload for p in got] == [b"long", b"forever"]
    assert got[0].properties[mq.PROP_MESSAGE_EXPIRY] == 70  # 100 s less the 30.5 s it waited
    assert mq.PROP_MESSAGE_EXPIRY not in got[1].properties


def test_messages_waiting_for_a_full_in_flight_window_expire(broker: Broker, clock: Clock) -> None:
    me = identity_id()
    client = joined(broker, me, "w", properties={mq.PROP_RECEIVE_MAXIMUM: 1})
    assert client.subscribe(topic(me)).reason_codes == [1]
    broker.publish(topic(me), b"first", 1, properties={mq.PROP_MESSAGE_EXPIRY: 10})
    broker.publish(topic(me), b"stale", 1, properties={mq.PROP_MESSAGE_EXPIRY: 10})
    broker.publish(topic(me), b"fresh", 1, properties={mq.PROP_MESSAGE_EXPIRY: 60})
    first = client.publishes()
    assert [p.payload for p in first] == [b"first"]
    assert first[0].properties[mq.PROP_MESSAGE_EXPIRY] == 10  # sent at once: unchanged
    clock.now += 20
    client.send(mq.Puback(first[0].packet_id or 0))
    after = client.publishes()
    assert [p.payload for p in after] == [b"fresh"]
    assert after[0].properties[mq.PROP_MESSAGE_EXPIRY] == 40


def test_message_expiry_is_capped_at_the_aws_maximum(broker: Broker) -> None:
    me = identity_id()
    client = joined(broker, me, "cap")
    assert client.subscribe(topic(me)).reason_codes == [1]
    broker.publish(topic(me), b"m", 0, properties={mq.PROP_MESSAGE_EXPIRY: 2**32 - 1})
    (message,) = client.publishes()
    assert message.properties[mq.PROP_MESSAGE_EXPIRY] == MAX_MESSAGE_EXPIRY_S == 604_800


def test_retained_message_expires(broker: Broker, clock: Clock) -> None:
    me = identity_id()
    broker.publish(topic(me, "a"), b"a", 1, retain=True, properties={mq.PROP_MESSAGE_EXPIRY: 5})
    broker.publish(topic(me, "b"), b"b", 1, retain=True, properties={mq.PROP_MESSAGE_EXPIRY: 50})
    clock.now += 10
    client = joined(broker, me, "ret")
    assert client.subscribe(topic(me, "a"), topic(me, "b")).reason_codes == [1, 1]
    got = client.publishes()
    assert [p.payload for p in got] == [b"b"]
    assert got[0].retain and got[0].properties[mq.PROP_MESSAGE_EXPIRY] == 40
    assert topic(me, "a") not in broker.retained


# ------------------------------------------------------------------ shared subscriptions
def test_each_message_goes_to_one_member_of_each_group(broker: Broker) -> None:
    me = identity_id()
    members = [joined(broker, me, f"m{n}", level=4 if n == 2 else 5) for n in range(3)]
    for member in members:
        assert member.subscribe(f"$share/workers/{topic(me)}").reason_codes == [1]
    audit = joined(broker, me, "audit")
    assert audit.subscribe(f"$share/audit/{topic(me)}").reason_codes == [1]
    plain = joined(broker, me, "plain")
    assert plain.subscribe(topic(me)).reason_codes == [1]
    sent = [f"m{n}".encode() for n in range(60)]
    for payload in sent:
        broker.publish(topic(me), payload, 1)
    per_member = [[p.payload for p in m.publishes()] for m in members]
    assert sorted(p for got in per_member for p in got) == sorted(sent)  # each once in the group
    assert all(per_member)  # spread over the members (seeded random choice)
    assert [p.payload for p in audit.publishes()] == sent  # a group of one gets everything
    assert [p.payload for p in plain.publishes()] == sent  # ordinary subscribers unaffected


def test_shared_subscription_is_authorised_on_the_share_filter_and_receive_on_the_topic(
    broker: Broker,
) -> None:
    me, other = identity_id(), identity_id()
    plain = Client(broker, credential(me))  # Tidings' own policy: no $share resource
    assert plain.connect(f"{me}-plain").reason_code == 0
    assert plain.subscribe(f"$share/g/{topic(me)}").reason_codes == [0x87]
    # an identity allowed to subscribe to any $share filter still receives only topics its
    # policy lets it receive
    sharer = joined(broker, me, "sharer")
    codes = sharer.subscribe(f"$share/g/{topic(other)}", f"$share/g/{topic(me)}")
    assert codes.reason_codes == [1, 1]
    broker.publish(topic(other), b"not yours", 1)
    broker.publish(topic(me), b"yours", 1)
    assert [p.payload for p in sharer.publishes()] == [b"yours"]


def test_a_member_that_may_not_receive_is_skipped(broker: Broker) -> None:
    owner, stranger = identity_id(), identity_id()
    outsider = joined(broker, stranger, "out")
    insider = joined(broker, owner, "in")
    for client in (outsider, insider):
        assert client.subscribe(f"$share/g/{topic(owner)}").reason_codes == [1]
    for n in range(20):
        broker.publish(topic(owner), f"{n}".encode(), 1)
    assert outsider.publishes() == []
    assert len(insider.publishes()) == 20


def test_connected_members_first_then_an_offline_persistent_one(broker: Broker) -> None:
    me = identity_id()
    persistent = {mq.PROP_SESSION_EXPIRY: 600}
    sleeper = joined(broker, me, "sleeper", clean=False, properties=persistent)
    awake = joined(broker, me, "awake")
    for client in (sleeper, awake):
        assert client.subscribe(f"$share/g/{topic(me)}").reason_codes == [1]
    sleeper.send(mq.Disconnect())
    for n in range(10):
        broker.publish(topic(me), f"a{n}".encode(), 1)
    assert len(awake.publishes()) == 10
    awake.send(mq.Disconnect())  # clean session: it leaves the group
    broker.publish(topic(me), b"queued", 1)
    again = Client(broker, sleeper.cred)
    assert again.connect(f"{me}-sleeper", clean=False, properties=persistent).session_present
    assert [p.payload for p in again.publishes()] == [b"queued"]


def test_shared_subscriptions_get_no_retained_messages(broker: Broker) -> None:
    me = identity_id()
    broker.publish(topic(me), b"kept", 1, retain=True)
    client = joined(broker, me, "r")
    assert client.subscribe(f"$share/g/{topic(me)}").reason_codes == [1]
    assert client.publishes() == []


def test_unsubscribing_and_session_end_leave_the_group(broker: Broker) -> None:
    me = identity_id()
    share = f"$share/g/{topic(me)}"
    a, b = joined(broker, me, "a"), joined(broker, me, "b")
    for client in (a, b):
        assert client.subscribe(share).reason_codes == [1]
    a.send(mq.Unsubscribe(2, [share]))
    assert [p.reason_codes for p in a.packets() if isinstance(p, mq.Unsuback)] == [[0]]
    for n in range(5):
        broker.publish(topic(me), f"{n}".encode(), 1)
    assert a.publishes() == [] and len(b.publishes()) == 5
    b.send(mq.Disconnect())
    assert broker.shared_groups == {} and len(broker.shared) == 0


def test_shared_group_member_quota(broker: Broker) -> None:
    me = identity_id()
    share = f"$share/big/{topic(me)}"
    for n in range(MAX_SUBSCRIPTIONS_PER_SHARED_GROUP):
        assert joined(broker, me, f"q{n}").subscribe(share).reason_codes == [1]
    one_more = joined(broker, me, "extra")
    assert one_more.subscribe(share).reason_codes == [0x97]
    assert one_more.subscribe(f"$share/other/{topic(me)}", packet_id=2).reason_codes == [1]


def test_invalid_shared_filters_and_no_local(broker: Broker) -> None:
    me = identity_id()
    client = joined(broker, me, "bad")
    codes = client.subscribe("$share/g", "$share//" + topic(me), f"$share/g+/{topic(me)}")
    assert codes.reason_codes == [0x8F, 0x8F, 0x8F]
    v3 = joined(broker, me, "bad3", level=4)
    assert v3.subscribe("$share/g").reason_codes == [0x80]
    options = mq.SubscriptionOptions(1, no_local=True)
    client.send(mq.Subscribe(5, [(f"$share/g/{topic(me)}", options)]))
    (disconnect,) = client.packets()
    assert isinstance(disconnect, mq.Disconnect) and disconnect.reason_code == 0x82
    assert client.sink.closed

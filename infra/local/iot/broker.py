"""The MQTT side of the local AWS IoT gateway: sessions, subscriptions, authorisation, limits.

This module knows nothing about sockets, TLS or WebSockets. A transport hands each
authenticated connection to :meth:`Broker.open_connection` together with a
:class:`PacketSink` (how to send bytes and close), then feeds it the bytes it receives. The
broker behaves as AWS IoT Core does for MQTT 3.1.1 and MQTT 5 clients:

* every CONNECT, SUBSCRIBE, PUBLISH and delivery is authorised against the credential's
  policy sets (IAM role policy *and* IoT policy), with the AWS IoT outcome when refused;
* AWS IoT limits (payload, topic length and depth, client id, filters per SUBSCRIBE,
  subscriptions per connection, keep-alive range, publish rate, connection lifetime);
* QoS 0 and 1 (QoS 2 refused), retained messages (not sent to wildcard subscriptions),
  persistent sessions with queued QoS 1 messages, client-id takeover, will messages, and the
  ``$aws/events/presence`` / ``$aws/events/subscriptions`` lifecycle events;
* shared subscriptions ``$share/<ShareName>/<TopicFilter>`` (MQTT 3.1.1 and 5): each message
  goes to one member of the group, chosen at random among the members that may receive it
  (connected ones first). ``iot:Subscribe`` is checked on ``topicfilter/$share/<ShareName>/
  <TopicFilter>``, as AWS IoT does, and ``iot:Receive`` on the message's own topic for each
  delivery, so sharing never lets an identity read a topic its policy does not let it receive.
  Retained messages are not sent to shared subscriptions; No Local on one is a protocol error;
* MQTT 5 flow limits: the client's Maximum Packet Size (a PUBLISH that would exceed it is
  dropped for that client as if delivered; reason strings are left out of acknowledgements
  that would exceed it), Receive Maximum, and the Message Expiry Interval (capped at AWS IoT's
  maximum; a queued message is dropped once it expires and is sent with the time it has left);
* what AWS IoT advertises in an MQTT 5 CONNACK: Maximum Packet Size 149,504, Receive Maximum
  100, Topic Alias Maximum 8, Maximum QoS 1, Subscription Identifiers Available 0 (a
  SUBSCRIBE carrying a Subscription Identifier is refused, SUBACK 0xA1 for each filter) and
  shared subscriptions available.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from infra.local.awsauth.credential_store import StoredCredential
from infra.local.awsauth.iam_policy import is_allowed
from infra.local.iot import mqtt_codec as mq
from infra.local.iot.topics import (
    SHARE_PREFIX,
    SubscriptionIndex,
    TopicError,
    has_wildcards,
    split_shared_filter,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = [
    "Broker",
    "BrokerConfig",
    "CredentialBinder",
    "MqttConnection",
    "PacketSink",
]

log = logging.getLogger("tidings.gateway")

# AWS IoT Core's documented limits.
MAX_PAYLOAD_BYTES = 128 * 1024
MAX_PACKET_BYTES = 149_504
"""The Maximum Packet Size AWS IoT Core puts in its MQTT 5 CONNACK (as captured from the
service by the AWS CRT client): the 128 KiB payload limit plus room for topic and properties.
A larger packet from a client is refused with DISCONNECT 0x95, as is any payload over
:data:`MAX_PAYLOAD_BYTES`."""
MAX_MESSAGE_EXPIRY_S = 7 * 24 * 3600
"""AWS IoT's largest Message Expiry Interval; a larger one is lowered to it."""
MAX_SUBSCRIPTIONS_PER_SHARED_GROUP = 100
"""AWS IoT's "Shared Subscriptions per group" quota."""
MAX_CLIENT_ID_BYTES = 128
MAX_FILTERS_PER_SUBSCRIBE = 8
MAX_SUBSCRIPTIONS_PER_CONNECTION = 50
TOPIC_ALIAS_MAXIMUM = 8
RECEIVE_MAXIMUM = 100
MAX_TRACKED_CLIENT_IDS = 100_000
"""Lifecycle ``versionNumber`` counters kept (oldest client ids forgotten first)."""

# MQTT 5 reason codes used here.
RC_SUCCESS = 0x00
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_CLIENT_ID_NOT_VALID = 0x85
RC_BAD_CREDENTIALS = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_KEEP_ALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95
RC_QUOTA_EXCEEDED = 0x97
RC_QOS_NOT_SUPPORTED = 0x9B
RC_MAXIMUM_CONNECT_TIME = 0xA0
RC_SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1

# MQTT 3.1.1 CONNACK return codes.
V3_CONNACK_ACCEPTED = 0
V3_CONNACK_IDENTIFIER_REJECTED = 2
V3_CONNACK_NOT_AUTHORIZED = 5
V3_SUBACK_FAILURE = 0x80


class PacketSink(Protocol):
    """What the broker needs from a transport."""

    def send(self, data: bytes) -> None:
        """Queue MQTT bytes for the client."""

    def close(self, reason: str) -> None:
        """Flush what was queued and close the connection."""

    def is_congested(self) -> bool:
        """True while the client is not reading fast enough to take more QoS 0 traffic."""


CredentialBinder = Callable[[str], StoredCredential]
"""For a connection authenticated by an X.509 certificate: its credential once the MQTT client
id is known (AWS IoT sets ``iot:Connection.Thing.ThingName`` only when the client id names a
thing attached to the certificate)."""


@dataclass(frozen=True)
class BrokerConfig:
    """Behaviour knobs; the defaults are AWS IoT Core's."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    keepalive_min_s: int = 30
    keepalive_max_s: int = 1200
    max_connection_s: float = 24 * 3600.0
    publish_rate_per_s: float = 100.0
    """Publishes per second per connection; 0 turns the limit off (benchmarks)."""
    max_session_expiry_s: int = 3600
    max_message_expiry_s: int = MAX_MESSAGE_EXPIRY_S
    max_queued_per_session: int = 1000
    connect_timeout_s: float = 10.0

    def arn(self, kind: str, name: str) -> str:
        """The IoT resource ARN policies are evaluated against."""
        return f"arn:aws:iot:{self.region}:{self.account_id}:{kind}/{name}"


@dataclass
class _Pending:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: mq.Properties
    expires_at: float | None = None
    """When its Message Expiry Interval runs out (broker clock); None if it has none."""
    templates: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    """Per protocol level, the QoS 1 PUBLISH bytes before and after the packet id: a fan-out
    encodes the message once and only splices each subscriber's packet id in."""

    def encode_qos1(self, packet_id: int, level: int, dup: bool = False) -> bytes:
        """This message as a QoS 1 PUBLISH with ``packet_id``."""
        template = None if dup else self.templates.get(level)
        if template is None:
            encoded = mq.encode_publish(
                self.topic, self.payload, 1, packet_id, level, self.retain, dup, self.properties
            )
            if dup:
                return encoded
            offset = 1
            while encoded[offset] & 0x80:
                offset += 1
            offset += 1 + 2 + len(self.topic.encode("utf-8"))
            self.templates[level] = (encoded[:offset], encoded[offset + 2 :])
            return encoded
        return template[0] + packet_id.to_bytes(2, "big") + template[1]


@dataclass(eq=False)
class Session:
    """State that outlives a connection when the client asks for a persistent session."""

    client_id: str
    subscriptions: dict[str, int] = field(default_factory=dict)
    inflight: OrderedDict[int, _Pending] = field(default_factory=OrderedDict)
    queue: deque[_Pending] = field(default_factory=deque)
    connection: MqttConnection | None = None
    expiry_s: int = 0
    expires_at: float | None = None
    credential: StoredCredential | None = None
    _packet_ids: itertools.cycle[int] = field(
        default_factory=lambda: itertools.cycle(range(1, 65536))
    )

    def next_packet_id(self) -> int:
        """A packet id not currently in flight."""
        for _ in range(65535):
            packet_id = next(self._packet_ids)
            if packet_id not in self.inflight:
                return packet_id
        raise RuntimeError("no free packet id")  # pragma: no cover - bounded by receive max


@dataclass(eq=False)
class SharedGroup:
    """The sessions subscribed to one ``$share/<ShareName>/<TopicFilter>``."""

    share_name: str
    topic_filter: str
    members: dict[Session, int] = field(default_factory=dict)
    """Member session -> granted QoS, in the order they joined."""


class Broker:
    """All sessions and subscriptions of one gateway."""

    def __init__(
        self,
        config: BrokerConfig,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        """Picks the member of a shared subscription group that gets a message."""
        self.sessions: dict[str, Session] = {}
        self.index: SubscriptionIndex[Session] = SubscriptionIndex()
        self.shared: SubscriptionIndex[SharedGroup] = SubscriptionIndex()
        self.shared_groups: dict[str, SharedGroup] = {}
        """Full ``$share/...`` filter -> its group."""
        self.retained: dict[str, _Pending] = {}
        self.connections: set[MqttConnection] = set()
        self.size_limited: set[MqttConnection] = set()
        """Connections whose client declared a Maximum Packet Size."""
        self._versions: dict[str, int] = {}
        self.deliveries = 0

    # ----------------------------------------------------------------- connections
    def open_connection(
        self,
        sink: PacketSink,
        credential: StoredCredential,
        peer: str,
        *,
        websocket: bool = True,
        bind: CredentialBinder | None = None,
    ) -> MqttConnection:
        """A new connection from an authenticated client (SigV4-verified, or a device whose
        certificate was verified: ``bind`` then gives its credential for the client id)."""
        connection = MqttConnection(self, sink, credential, peer, websocket=websocket, bind=bind)
        self.connections.add(connection)
        return connection

    def sweep(self) -> None:
        """Enforce keep-alive, connect timeout, connection lifetime and session expiry.

        Call about once a second.
        """
        now = self.clock()
        for connection in list(self.connections):
            connection.check_timers(now)
        for client_id, session in list(self.sessions.items()):
            if (
                session.connection is None
                and session.expires_at is not None
                and now >= session.expires_at
            ):
                self._drop_session(client_id, session)

    def shutdown(self) -> None:
        """Disconnect everyone (MQTT 5 clients are told the server is shutting down)."""
        for connection in list(self.connections):
            connection.disconnect(RC_SERVER_SHUTTING_DOWN, "SERVER_INITIATED_DISCONNECT")

    # ----------------------------------------------------------------- routing
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        *,
        retain: bool = False,
        properties: mq.Properties | None = None,
        origin: MqttConnection | None = None,
    ) -> int:
        """Deliver a message to every authorised subscriber; returns how many got it."""
        props = properties or {}
        expires_at: float | None = None
        if props:
            interval = props.get(mq.PROP_MESSAGE_EXPIRY)
            if interval is not None:
                if interval > self.config.max_message_expiry_s:
                    interval = self.config.max_message_expiry_s
                    props = {**props, mq.PROP_MESSAGE_EXPIRY: interval}
                expires_at = self.clock() + interval
        if retain:
            if payload:
                self.retained[topic] = _Pending(topic, payload, qos, True, props, expires_at)
            else:
                self.retained.pop(topic, None)
        delivered = 0
        frame_cache: dict[int, bytes] = {}
        pending: _Pending | None = None
        limited = bool(self.size_limited)
        for session, granted in self.index.match(topic).items():
            connection = session.connection
            if (
                origin is not None
                and connection is origin
                and origin.no_local
                and origin.no_local.match(topic)
            ):
                continue
            credential = connection.credential if connection else session.credential
            if credential is None or not self._may_receive(session, credential, topic):
                continue
            effective_qos = qos if qos < granted else granted
            if connection is not None and effective_qos == 0:
                level = connection.protocol_level
                data = frame_cache.get(level)
                if data is None:
                    data = mq.encode_publish(topic, payload, 0, None, level, False, False, props)
                    frame_cache[level] = data
                if connection.sink.is_congested():
                    continue
                if limited and len(data) > connection.max_packet_out:
                    continue  # MQTT 5: discarded for this client, as if it had been sent
                connection.sink.send(data)
                delivered += 1
            else:
                if pending is None or pending.qos != effective_qos:
                    pending = _Pending(topic, payload, effective_qos, False, props, expires_at)
                if self._deliver(session, pending):
                    delivered += 1
        if self.shared_groups:
            delivered += self._publish_shared(topic, payload, qos, props, expires_at)
        self.deliveries += delivered
        return delivered

    def _publish_shared(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        props: mq.Properties,
        expires_at: float | None,
    ) -> int:
        """One delivery per shared subscription group whose filter matches ``topic``."""
        delivered = 0
        for group in self.shared.match(topic):
            session = self._pick_member(group, topic, qos)
            if session is None:
                continue
            granted = group.members[session]
            message = _Pending(topic, payload, min(qos, granted), False, props, expires_at)
            if self._deliver(session, message):
                delivered += 1
        return delivered

    def _pick_member(self, group: SharedGroup, topic: str, qos: int) -> Session | None:
        """A random member allowed to receive ``topic``; a connected one if there is any.

        An offline persistent session is chosen only when no member is connected and the
        message will be queued for it (QoS 1 on both sides).
        """
        members = list(group.members)
        count = len(members)
        start = self.rng.randrange(count)
        offline: Session | None = None
        for step in range(count):
            session = members[(start + step) % count]
            credential = session.connection.credential if session.connection else session.credential
            if credential is None or not self._may_receive(session, credential, topic):
                continue
            if session.connection is not None:
                return session
            if offline is None and qos and group.members[session]:
                offline = session
        return offline

    # ----------------------------------------------------------------- subscriptions
    def add_subscription(self, session: Session, topic_filter: str, granted: int) -> None:
        """Record a (validated and authorised) subscription of ``session``."""
        session.subscriptions[topic_filter] = granted
        if not topic_filter.startswith(SHARE_PREFIX):
            self.index.add(topic_filter, session, granted)
            return
        group = self.shared_groups.get(topic_filter)
        if group is None:
            parts = split_shared_filter(topic_filter)
            assert parts is not None
            group = SharedGroup(*parts)
            self.shared_groups[topic_filter] = group
            self.shared.add(group.topic_filter, group, 0)
        group.members[session] = granted

    def remove_subscription(self, session: Session, topic_filter: str) -> bool:
        """Forget a subscription of ``session``; returns whether it existed."""
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        if not topic_filter.startswith(SHARE_PREFIX):
            self.index.remove(topic_filter, session)
            return True
        group = self.shared_groups.get(topic_filter)
        if group is not None:
            group.members.pop(session, None)
            if not group.members:
                del self.shared_groups[topic_filter]
                self.shared.remove(group.topic_filter, group)
        return True

    def shared_group_is_full(self, session: Session, topic_filter: str) -> bool:
        """Whether ``session`` joining this ``$share/...`` filter would exceed AWS's quota."""
        group = self.shared_groups.get(topic_filter)
        return (
            group is not None
            and session not in group.members
            and len(group.members) >= MAX_SUBSCRIPTIONS_PER_SHARED_GROUP
        )

    def aged(self, message: _Pending) -> _Pending | None:
        """``message`` as it may be sent now: None once its Message Expiry Interval has passed,
        else a copy whose interval is the time it has left (MQTT 5 §3.3.2.3.3)."""
        if message.expires_at is None:
            return message
        remaining = math.ceil(message.expires_at - self.clock())
        if remaining <= 0:
            return None
        props = {**message.properties, mq.PROP_MESSAGE_EXPIRY: remaining}
        return _Pending(
            message.topic, message.payload, message.qos, message.retain, props, message.expires_at
        )

    def _may_receive(self, session: Session, credential: StoredCredential, topic: str) -> bool:
        connection = session.connection
        if connection is not None:
            return connection.allowed("iot:Receive", "topic", topic)
        variables = {**credential.variables, "iot:ClientId": session.client_id}
        return is_allowed(
            credential.policy_sets, "iot:Receive", self.config.arn("topic", topic), variables
        )

    def _deliver(self, session: Session, message: _Pending) -> bool:
        connection = session.connection
        if connection is None:
            if message.qos == 0:
                return False
            if len(session.queue) >= self.config.max_queued_per_session:
                session.queue.popleft()
            session.queue.append(message)
            return True
        if message.qos == 0:
            data = mq.encode_publish(
                message.topic,
                message.payload,
                0,
                None,
                connection.protocol_level,
                message.retain,
                False,
                message.properties,
            )
            if len(data) <= connection.max_packet_out:
                connection.sink.send(data)
            return True
        if len(session.inflight) >= connection.client_receive_maximum:
            if len(session.queue) >= self.config.max_queued_per_session:
                connection.disconnect(RC_RECEIVE_MAXIMUM_EXCEEDED, "THROTTLED")
                return False
            session.queue.append(message)
            return True
        packet_id = session.next_packet_id()
        data = message.encode_qos1(packet_id, connection.protocol_level)
        if len(data) > connection.max_packet_out:
            return True  # MQTT 5: discarded for this client, as if it had been acknowledged
        session.inflight[packet_id] = message
        connection.sink.send(data)
        return True

    def _drain_queue(self, session: Session) -> None:
        connection = session.connection
        queue = session.queue
        while (
            connection is not None
            and queue
            and (len(session.inflight) < connection.client_receive_maximum)
        ):
            message = queue.popleft()
            if message.expires_at is not None:
                aged = self.aged(message)
                if aged is None:
                    continue  # expired while it waited: never sent
                message = aged
            self._deliver(session, message)
            connection = session.connection

    def _drop_session(self, client_id: str, session: Session) -> None:
        for topic_filter in list(session.subscriptions):
            self.remove_subscription(session, topic_filter)
        if self.sessions.get(client_id) is session:
            del self.sessions[client_id]

    # ----------------------------------------------------------------- lifecycle events
    def next_version(self, client_id: str) -> int:
        """The ``versionNumber`` of a client id's next lifecycle event."""
        version = self._versions.pop(client_id, 0) + 1
        self._versions[client_id] = version  # re-inserted: the dict is in least-recent order
        if len(self._versions) > MAX_TRACKED_CLIENT_IDS:
            del self._versions[next(iter(self._versions))]
        return version

    def lifecycle_event(self, topic: str, body: Mapping[str, object]) -> None:
        """Publish a ``$aws/events/...`` message (AWS IoT publishes these at QoS 0... or 1)."""
        self.publish(topic, json.dumps(body, separators=(",", ":")).encode(), 1)


class MqttConnection:
    """One client's MQTT conversation."""

    def __init__(
        self,
        broker: Broker,
        sink: PacketSink,
        credential: StoredCredential,
        peer: str,
        *,
        websocket: bool,
        bind: CredentialBinder | None = None,
    ) -> None:
        self.broker = broker
        self._bind = bind
        self.sink = sink
        self.credential = credential
        self.peer = peer
        self.websocket = websocket
        now = broker.clock()
        self.opened_at = now
        self.last_received = now
        self.decoder = mq.PacketDecoder(max_packet_size=MAX_PACKET_BYTES)
        self.protocol_level = 4
        self.client_id = ""
        self.session: Session | None = None
        self.keep_alive = 0
        self.connected = False
        self.closed = False
        self.client_receive_maximum = 65535
        self.max_packet_out = mq.MAX_REMAINING_LENGTH + 5
        """The client's MQTT 5 Maximum Packet Size: nothing larger is sent to it."""
        self.session_identifier = str(uuid.uuid4())
        self.will: mq.Will | None = None
        self.topic_aliases: dict[int, str] = {}
        self.no_local: SubscriptionIndex[int] = SubscriptionIndex()
        """The client's MQTT 5 No Local subscriptions: its own publishes on them skip it."""
        self._auth_cache: dict[tuple[str, str], bool] = {}
        self._tokens = float(broker.config.publish_rate_per_s)
        self._tokens_at = now
        self._variables: dict[str, str] = dict(credential.variables)

    # ----------------------------------------------------------------- helpers
    @property
    def is_v5(self) -> bool:
        """Whether the client speaks MQTT 5."""
        return self.protocol_level == 5

    def send_packet(self, packet: mq.Packet) -> None:
        """Encode and queue one packet (never larger than the client's Maximum Packet Size)."""
        data = mq.encode(packet, self.protocol_level)
        if len(data) > self.max_packet_out:
            # MQTT 5 §3.1.2.11.4: leave out the Reason String and User Properties rather than
            # exceed the client's limit; a packet still too large is not sent at all.
            properties = getattr(packet, "properties", None)
            if properties:
                optional = (mq.PROP_REASON_STRING, mq.PROP_USER_PROPERTY)
                trimmed = {k: v for k, v in properties.items() if k not in optional}
                smaller: Any = dataclasses.replace(cast(Any, packet), properties=trimmed)
                data = mq.encode(smaller, self.protocol_level)
            if len(data) > self.max_packet_out:
                why = (
                    f"{type(packet).__name__} of {len(data)} bytes exceeds the client's "
                    f"Maximum Packet Size {self.max_packet_out}"
                )
                log.info("closing %s (%s): %s", self.client_id or "?", self.peer, why)
                if not isinstance(packet, mq.Disconnect):
                    # the conversation cannot go on without this packet: close, never hang
                    self._finish("CLIENT_ERROR", announce=self.connected)
                    self.sink.close(why)
                return
        self.sink.send(data)

    def allowed(self, action: str, kind: str, name: str) -> bool:
        """Policy decision for ``action`` on the IoT resource ``kind/name`` (cached)."""
        key = (action, name)
        decision = self._auth_cache.get(key)
        if decision is None:
            decision = is_allowed(
                self.credential.policy_sets,
                action,
                self.broker.config.arn(kind, name),
                self._variables,
            )
            if len(self._auth_cache) > 4096:
                self._auth_cache.clear()
            self._auth_cache[key] = decision
        return decision

    # ----------------------------------------------------------------- input
    def data_received(self, data: bytes) -> None:
        """Bytes from the client (the MQTT stream inside the WebSocket)."""
        if self.closed:
            return
        self.last_received = self.broker.clock()
        if (
            len(data) == 4
            and data[0] == 0x40
            and data[1] == 0x02
            and (data[2] or data[3])
            and self.connected
            and not self.decoder.has_partial_packet
        ):
            # the common case at QoS 1: one PUBACK (success) per WebSocket frame
            self._on_puback(mq.Puback((data[2] << 8) | data[3]))
            return
        try:
            packets = self.decoder.feed(data)
        except mq.MalformedPacket as exc:
            log.warning(
                "closing %s (%s): malformed packet: %s",
                self.client_id or "?",
                self.peer,
                exc.message,
            )
            if self.connected:
                self.disconnect(exc.reason_code, "CLIENT_ERROR", f"malformed packet: {exc.message}")
            else:
                self._close(f"malformed packet before CONNECT: {exc.message}")
            return
        for packet in packets:
            if self.closed:
                return
            self._handle(packet)

    def _handle(self, packet: mq.Packet) -> None:
        if isinstance(packet, mq.Publish):
            self._on_publish(packet)
        elif isinstance(packet, mq.Puback):
            self._on_puback(packet)
        elif isinstance(packet, mq.Pingreq):
            self.send_packet(mq.Pingresp())
        elif isinstance(packet, mq.Connect):
            self._on_connect(packet)
        elif isinstance(packet, mq.Subscribe):
            self._on_subscribe(packet)
        elif isinstance(packet, mq.Unsubscribe):
            self._on_unsubscribe(packet)
        elif isinstance(packet, mq.Disconnect):
            self._on_disconnect(packet)
        else:
            self.disconnect(
                RC_PROTOCOL_ERROR,
                "CLIENT_ERROR",
                f"{type(packet).__name__} is not supported by AWS IoT",
            )

    # ----------------------------------------------------------------- CONNECT
    def _refuse_connect(self, v5_code: int, v3_code: int, why: str) -> None:
        log.info("refusing CONNECT from %s (%s): %s", self.client_id or "?", self.peer, why)
        if self.is_v5:
            self.send_packet(mq.Connack(False, v5_code, {mq.PROP_REASON_STRING: why[:200]}))
        else:
            self.send_packet(mq.Connack(False, v3_code, {}))
        self._close("refused: " + why)

    def _on_connect(self, packet: mq.Connect) -> None:
        broker = self.broker
        config = broker.config
        self.protocol_level = packet.protocol_level
        client_id = packet.client_id
        assigned = False
        if not client_id:
            if not packet.clean_start and not self.is_v5:
                self._refuse_connect(
                    RC_CLIENT_ID_NOT_VALID,
                    V3_CONNACK_IDENTIFIER_REJECTED,
                    "an empty client id needs a clean session",
                )
                return
            client_id = "auto-" + uuid.uuid4().hex
            assigned = True
        self.client_id = client_id
        if self._bind is not None:
            self.credential = self._bind(client_id)
            self._variables = dict(self.credential.variables)
            self._auth_cache.clear()
        self._variables["iot:ClientId"] = client_id
        if len(client_id.encode("utf-8")) > MAX_CLIENT_ID_BYTES:
            self._refuse_connect(
                RC_CLIENT_ID_NOT_VALID,
                V3_CONNACK_IDENTIFIER_REJECTED,
                f"client id longer than {MAX_CLIENT_ID_BYTES} bytes",
            )
            return
        if not self.allowed("iot:Connect", "client", client_id):
            self._refuse_connect(
                RC_NOT_AUTHORIZED,
                V3_CONNACK_NOT_AUTHORIZED,
                f"not authorized to connect as client id {client_id!r}",
            )
            return
        if packet.will is not None:
            will = packet.will
            if will.qos > 1:
                self._refuse_connect(
                    RC_QOS_NOT_SUPPORTED,
                    V3_CONNACK_NOT_AUTHORIZED,
                    "AWS IoT does not support QoS 2",
                )
                return
            try:
                validate_topic_name(will.topic)
            except TopicError as exc:
                self._refuse_connect(
                    RC_TOPIC_NAME_INVALID, V3_CONNACK_NOT_AUTHORIZED, f"will {exc}"
                )
                return
            if not self.allowed("iot:Publish", "topic", will.topic):
                self._refuse_connect(
                    RC_NOT_AUTHORIZED,
                    V3_CONNACK_NOT_AUTHORIZED,
                    "not authorized to publish the will message",
                )
                return
            self.will = will
        keep_alive = packet.keep_alive or config.keepalive_max_s
        keep_alive = min(max(keep_alive, config.keepalive_min_s), config.keepalive_max_s)
        self.keep_alive = keep_alive
        props = packet.properties
        if self.is_v5:
            self.client_receive_maximum = int(props.get(mq.PROP_RECEIVE_MAXIMUM, 65535))
            max_packet = props.get(mq.PROP_MAX_PACKET_SIZE)
            if max_packet is not None:
                self.max_packet_out = int(max_packet)
                broker.size_limited.add(self)
            expiry = int(props.get(mq.PROP_SESSION_EXPIRY, 0))
        else:
            self.client_receive_maximum = RECEIVE_MAXIMUM
            expiry = 0 if packet.clean_start else config.max_session_expiry_s
        expiry = min(expiry, config.max_session_expiry_s)

        # Client-id takeover: the older connection goes.
        existing = broker.sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            existing.connection.disconnect(RC_SESSION_TAKEN_OVER, "DUPLICATE_CLIENTID")
        session_present = False
        if (
            existing is not None
            and not packet.clean_start
            and (existing.expires_at is None or existing.expires_at > broker.clock())
        ):
            session = existing
            session_present = True
        else:
            if existing is not None:
                broker._drop_session(client_id, existing)
            session = Session(client_id)
            broker.sessions[client_id] = session
        session.connection = self
        session.credential = self.credential
        session.expiry_s = expiry
        session.expires_at = None
        self.session = session
        self.connected = True

        ack_props: mq.Properties = {}
        if self.is_v5:
            ack_props = {
                mq.PROP_MAX_QOS: 1,
                mq.PROP_RETAIN_AVAILABLE: 1,
                mq.PROP_MAX_PACKET_SIZE: MAX_PACKET_BYTES,
                mq.PROP_TOPIC_ALIAS_MAX: TOPIC_ALIAS_MAXIMUM,
                mq.PROP_RECEIVE_MAXIMUM: RECEIVE_MAXIMUM,
                mq.PROP_WILDCARD_SUB_AVAILABLE: 1,
                mq.PROP_SUB_ID_AVAILABLE: 0,
                mq.PROP_SHARED_SUB_AVAILABLE: 1,
            }
            if keep_alive != packet.keep_alive:
                ack_props[mq.PROP_SERVER_KEEP_ALIVE] = keep_alive
            if assigned:
                ack_props[mq.PROP_ASSIGNED_CLIENT_ID] = client_id
            if expiry != int(props.get(mq.PROP_SESSION_EXPIRY, 0)):
                ack_props[mq.PROP_SESSION_EXPIRY] = expiry
        self.send_packet(mq.Connack(session_present, RC_SUCCESS, ack_props))
        if self.closed:
            return  # the CONNACK did not fit the client's Maximum Packet Size
        log.info(
            "connected %s (%s) as %s, MQTT %s",
            client_id,
            self.peer,
            self.credential.principal,
            "5" if self.is_v5 else "3.1.1",
        )
        broker.lifecycle_event(
            f"$aws/events/presence/connected/{client_id}",
            {
                "clientId": client_id,
                "timestamp": int(broker.clock() * 1000),
                "eventType": "connected",
                "sessionIdentifier": self.session_identifier,
                "principalIdentifier": self.credential.principal,
                "ipAddress": self.peer.rsplit(":", 1)[0],
                "versionNumber": broker.next_version(client_id),
            },
        )
        if session_present:
            for packet_id, message in list(session.inflight.items()):
                data = mq.encode_publish(
                    message.topic,
                    message.payload,
                    1,
                    packet_id,
                    self.protocol_level,
                    message.retain,
                    True,
                    message.properties,
                )
                if len(data) > self.max_packet_out:
                    del session.inflight[packet_id]  # too large for this client: discarded
                    continue
                self.sink.send(data)
            broker._drain_queue(session)

    # ----------------------------------------------------------------- PUBLISH
    def _rate_ok(self) -> bool:
        rate = self.broker.config.publish_rate_per_s
        if rate <= 0:
            return True
        now = self.broker.clock()
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _on_publish(self, packet: mq.Publish) -> None:
        if not self.connected:
            return
        if packet.qos > 1:
            self.disconnect(RC_QOS_NOT_SUPPORTED, "CLIENT_ERROR", "AWS IoT does not support QoS 2")
            return
        topic = packet.topic
        properties = packet.properties
        if self.is_v5 and properties:
            alias = properties.get(mq.PROP_TOPIC_ALIAS)
            if alias is not None:
                if not 1 <= alias <= TOPIC_ALIAS_MAXIMUM:
                    self.disconnect(
                        RC_TOPIC_ALIAS_INVALID,
                        "CLIENT_ERROR",
                        f"topic alias {alias} is outside 1..{TOPIC_ALIAS_MAXIMUM}",
                    )
                    return
                if topic:
                    self.topic_aliases[alias] = topic
                else:
                    known = self.topic_aliases.get(alias)
                    if known is None:
                        self.disconnect(
                            RC_PROTOCOL_ERROR, "CLIENT_ERROR", f"topic alias {alias} was never set"
                        )
                        return
                    topic = known
                properties = {k: v for k, v in properties.items() if k != mq.PROP_TOPIC_ALIAS}
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            self.disconnect(RC_TOPIC_NAME_INVALID, "CLIENT_ERROR", str(exc))
            return
        if len(packet.payload) > MAX_PAYLOAD_BYTES:
            self.disconnect(
                RC_PACKET_TOO_LARGE,
                "CLIENT_ERROR",
                f"payload of {len(packet.payload)} bytes exceeds AWS IoT's {MAX_PAYLOAD_BYTES}",
            )
            return
        if not self._rate_ok():
            if self.is_v5 and packet.qos == 1:
                assert packet.packet_id is not None
                self.send_packet(mq.Puback(packet.packet_id, RC_QUOTA_EXCEEDED, {}))
            else:
                self.disconnect(
                    RC_QUOTA_EXCEEDED,
                    "THROTTLED",
                    "more publishes per second than the connection may send",
                )
            return
        authorized = not topic.startswith("$aws/events/") and self.allowed(
            "iot:Publish", "topic", topic
        )
        if authorized and packet.retain:
            authorized = self.allowed("iot:RetainPublish", "topic", topic)
        if not authorized:
            log.info("unauthorized publish by %s to %s", self.client_id, topic)
            if self.is_v5 and packet.qos == 1:
                assert packet.packet_id is not None
                self.send_packet(mq.Puback(packet.packet_id, RC_NOT_AUTHORIZED, {}))
            else:
                self.disconnect(
                    RC_NOT_AUTHORIZED, "FORBIDDEN_ACCESS", f"not authorized to publish to {topic}"
                )
            return
        self.broker.publish(
            topic,
            packet.payload,
            packet.qos,
            retain=packet.retain,
            properties=_forwardable(properties),
            origin=self,
        )
        if packet.qos == 1:
            assert packet.packet_id is not None
            self.send_packet(mq.Puback(packet.packet_id, RC_SUCCESS, {}))

    def _on_puback(self, packet: mq.Puback) -> None:
        session = self.session
        if session is None:
            return
        session.inflight.pop(packet.packet_id, None)
        if session.queue:
            self.broker._drain_queue(session)

    # ----------------------------------------------------------------- SUBSCRIBE
    def _on_subscribe(self, packet: mq.Subscribe) -> None:
        session = self.session
        if session is None:
            return
        if self.is_v5 and mq.PROP_SUBSCRIPTION_ID in packet.properties:
            # AWS IoT advertises Subscription Identifiers Available = 0 and accepts none of them
            log.info("refused a SUBSCRIBE with a Subscription Identifier from %s", self.client_id)
            self.send_packet(
                mq.Suback(
                    packet.packet_id,
                    [RC_SUBSCRIPTION_IDS_NOT_SUPPORTED] * len(packet.subscriptions),
                    {mq.PROP_REASON_STRING: "AWS IoT does not support Subscription Identifiers"},
                )
            )
            return
        for topic_filter, options in packet.subscriptions:
            if options.no_local and topic_filter.startswith(SHARE_PREFIX):
                self.disconnect(
                    RC_PROTOCOL_ERROR,
                    "CLIENT_ERROR",
                    f"No Local is set on the shared subscription {topic_filter!r}",
                )
                return
        codes: list[int] = []
        accepted: list[tuple[str, int]] = []
        failure = V3_SUBACK_FAILURE
        for position, (topic_filter, options) in enumerate(packet.subscriptions):
            code = self._check_filter(session, topic_filter, position)
            if code is not None:
                codes.append(code if self.is_v5 else failure)
                continue
            granted = min(options.qos, 1)
            is_new = topic_filter not in session.subscriptions
            self.broker.add_subscription(session, topic_filter, granted)
            if options.no_local:
                self.no_local.add(topic_filter, 0, 0)
            else:
                self.no_local.remove(topic_filter, 0)
            codes.append(granted)
            accepted.append(
                (topic_filter, granted if is_new or options.retain_handling == 0 else -1)
            )
        self.send_packet(mq.Suback(packet.packet_id, codes, {}))
        if accepted:
            self.broker.lifecycle_event(
                f"$aws/events/subscriptions/subscribed/{self.client_id}",
                self._subscription_event("subscribed", [f for f, _ in accepted]),
            )
        retained_messages = self.broker.retained
        for topic_filter, granted in accepted:
            if granted < 0 or has_wildcards(topic_filter) or topic_filter.startswith(SHARE_PREFIX):
                continue  # AWS IoT sends no retained messages to wildcard or shared subscriptions
            retained = retained_messages.get(topic_filter)
            if retained is None or not self.allowed("iot:Receive", "topic", topic_filter):
                continue
            if retained.expires_at is not None:
                aged = self.broker.aged(retained)
                if aged is None:
                    del retained_messages[topic_filter]  # its Message Expiry Interval passed
                    continue
                retained = aged
            self.broker._deliver(
                session,
                _Pending(
                    retained.topic,
                    retained.payload,
                    min(retained.qos, granted),
                    True,
                    retained.properties,
                    retained.expires_at,
                ),
            )

    def _check_filter(self, session: Session, topic_filter: str, position: int) -> int | None:
        if position >= MAX_FILTERS_PER_SUBSCRIBE:
            return RC_QUOTA_EXCEEDED
        try:
            shared = split_shared_filter(topic_filter)
            if shared is None:
                validate_topic_filter(topic_filter)
        except TopicError as exc:
            log.info("refused filter %r from %s: %s", topic_filter, self.client_id, exc)
            return RC_TOPIC_FILTER_INVALID
        if (
            topic_filter not in session.subscriptions
            and len(session.subscriptions) >= MAX_SUBSCRIPTIONS_PER_CONNECTION
        ):
            return RC_QUOTA_EXCEEDED
        if shared is not None and self.broker.shared_group_is_full(session, topic_filter):
            return RC_QUOTA_EXCEEDED
        # AWS IoT authorises a shared subscription on its whole filter:
        # topicfilter/$share/<ShareName>/<TopicFilter>
        if not self.allowed("iot:Subscribe", "topicfilter", topic_filter):
            log.info("unauthorized subscribe by %s to %s", self.client_id, topic_filter)
            return RC_NOT_AUTHORIZED
        return None

    def _subscription_event(self, kind: str, topics: list[str]) -> dict[str, object]:
        return {
            "clientId": self.client_id,
            "timestamp": int(self.broker.clock() * 1000),
            "eventType": kind,
            "sessionIdentifier": self.session_identifier,
            "principalIdentifier": self.credential.principal,
            "topics": topics,
        }

    def _on_unsubscribe(self, packet: mq.Unsubscribe) -> None:
        session = self.session
        if session is None:
            return
        codes = []
        removed = []
        for topic_filter in packet.topic_filters:
            existed = self.broker.remove_subscription(session, topic_filter)
            if existed:
                removed.append(topic_filter)
            self.no_local.remove(topic_filter, 0)
            codes.append(RC_SUCCESS if existed else RC_NO_SUBSCRIPTION_EXISTED)
        self.send_packet(mq.Unsuback(packet.packet_id, codes, {}))
        if removed:
            self.broker.lifecycle_event(
                f"$aws/events/subscriptions/unsubscribed/{self.client_id}",
                self._subscription_event("unsubscribed", removed),
            )

    # ----------------------------------------------------------------- DISCONNECT
    def _on_disconnect(self, packet: mq.Disconnect) -> None:
        if packet.reason_code != RC_DISCONNECT_WITH_WILL:
            self.will = None
        if self.is_v5 and self.session is not None:
            expiry = packet.properties.get(mq.PROP_SESSION_EXPIRY)
            if expiry is not None:
                self.session.expiry_s = min(int(expiry), self.broker.config.max_session_expiry_s)
        self._finish("CLIENT_INITIATED_DISCONNECT", client_initiated=True)
        self.sink.close("client disconnected")

    def disconnect(self, reason_code: int, reason: str, message: str = "") -> None:
        """Server-side disconnect: MQTT 5 clients get a DISCONNECT with the reason code."""
        if self.closed:
            return
        if message:
            log.info("disconnecting %s (%s): %s", self.client_id or "?", self.peer, message)
        if self.is_v5 and self.connected:
            props: mq.Properties = {mq.PROP_REASON_STRING: message[:200]} if message else {}
            self.send_packet(mq.Disconnect(reason_code, props))
        self._finish(reason)
        self.sink.close(message or reason)

    def connection_lost(self) -> None:
        """The transport went away (network error, peer closed, server closed)."""
        self._finish("CONNECTION_LOST")

    def hang_up(self, reason: str, message: str) -> None:
        """Close without an MQTT DISCONNECT, as AWS IoT drops a connection whose certificate
        stopped being ACTIVE (``reason`` is the lifecycle event's ``disconnectReason``)."""
        if self.closed:
            return
        log.info("closing %s (%s): %s", self.client_id or "?", self.peer, message)
        self._finish(reason)
        self.sink.close(message)

    def replace_credential(self, credential: StoredCredential) -> None:
        """Authorise what follows with ``credential`` (the certificate's policies changed)."""
        self.credential = credential
        self._variables = dict(credential.variables)
        if self.client_id:
            self._variables["iot:ClientId"] = self.client_id
        self._auth_cache.clear()
        if self.session is not None and self.session.connection is self:
            self.session.credential = credential

    def _close(self, why: str) -> None:
        self._finish("CLIENT_ERROR", announce=False)
        self.sink.close(why)

    def _finish(
        self, reason: str, *, client_initiated: bool = False, announce: bool = True
    ) -> None:
        if self.closed:
            return
        self.closed = True
        broker = self.broker
        broker.connections.discard(self)
        broker.size_limited.discard(self)
        session = self.session
        if not self.connected or session is None or session.connection is not self:
            return
        session.connection = None
        if self.will is not None:
            will = self.will
            self.will = None
            broker.publish(
                will.topic,
                will.payload,
                will.qos,
                retain=will.retain,
                properties=_forwardable(will.properties),
            )
        if session.expiry_s > 0:
            session.expires_at = broker.clock() + session.expiry_s
        else:
            broker._drop_session(self.client_id, session)
        if announce:
            broker.lifecycle_event(
                f"$aws/events/presence/disconnected/{self.client_id}",
                {
                    "clientId": self.client_id,
                    "timestamp": int(broker.clock() * 1000),
                    "eventType": "disconnected",
                    "clientInitiatedDisconnect": client_initiated,
                    "sessionIdentifier": self.session_identifier,
                    "principalIdentifier": self.credential.principal,
                    "disconnectReason": reason,
                    "versionNumber": broker.next_version(self.client_id),
                },
            )

    # ----------------------------------------------------------------- timers
    def check_timers(self, now: float) -> None:
        """Keep-alive, CONNECT deadline and the WebSocket lifetime."""
        if self.closed:
            return
        if not self.connected:
            if now - self.opened_at > self.broker.config.connect_timeout_s:
                self._close("no CONNECT within the connect timeout")
            return
        if now - self.last_received > 1.5 * self.keep_alive:
            self.disconnect(
                RC_KEEP_ALIVE_TIMEOUT,
                "MQTT_KEEP_ALIVE_TIMEOUT",
                f"no packet for 1.5 x keep-alive ({self.keep_alive} s)",
            )
        elif self.websocket and now - self.opened_at > self.broker.config.max_connection_s:
            self.disconnect(
                RC_MAXIMUM_CONNECT_TIME,
                "WEBSOCKET_TTL_EXPIRATION",
                "WebSocket connection reached its maximum lifetime",
            )


def _forwardable(properties: mq.Properties) -> mq.Properties:
    """The PUBLISH properties a broker forwards to subscribers."""
    if not properties:
        return {}
    keep = (
        mq.PROP_PAYLOAD_FORMAT,
        mq.PROP_MESSAGE_EXPIRY,
        mq.PROP_CONTENT_TYPE,
        mq.PROP_RESPONSE_TOPIC,
        mq.PROP_CORRELATION_DATA,
        mq.PROP_USER_PROPERTY,
    )
    return {k: v for k, v in properties.items() if k in keep}

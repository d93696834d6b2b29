"""MQTT 3.1, 3.1.1 and 5 packets: bytes to dataclasses and back, with no I/O.

The local broker gives every connection a :class:`PacketDecoder`, feeds it whatever the socket
returns and writes out what :func:`encode` (or, for deliveries, :func:`encode_publish`) returns.

The codec checks everything the wire format defines — lengths, fixed-header flags, reserved
bits, well-formed UTF-8, which MQTT 5 properties may appear in which packet and how often — and
reports any violation as :class:`MalformedPacket`, carrying the MQTT 5 reason code the broker
puts in its DISCONNECT (or CONNACK). It does not judge meaning: topic names and filters, which
QoS the broker supports, packet direction (a client sending CONNACK), topic aliases and session
state are the broker's business.

Error tree::

    Exception
     └── MalformedPacket   received bytes that are not a valid packet (.reason_code, .message)
    ValueError / TypeError  raised by encode() for a packet that cannot be put on the wire

Protocol levels: 3 is MQTT 3.1 (protocol name ``MQIsdp``), 4 is MQTT 3.1.1 and 5 is MQTT 5.
Levels 3 and 4 share one wire format here.

The package keeps one private module per concern, each importing only those below it (an
import-linter contract checks this): ``_dispatch`` (the :data:`Packet` union, the stream decoder,
``encode``) over the packet families ``_connection``, ``_publish`` and ``_subscribe``, over
``_reader`` (decoding a packet's fields), ``_properties`` (MQTT 5 properties) and
``_primitives`` (packet types, reason codes, the error, encoding of the wire's basic types).
"""

from infra.local.iot.mqtt_codec._connection import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Will,
)
from infra.local.iot.mqtt_codec._dispatch import Packet, PacketDecoder, encode
from infra.local.iot.mqtt_codec._primitives import (
    MAX_REMAINING_LENGTH,
    REASON_MALFORMED_PACKET,
    REASON_PACKET_TOO_LARGE,
    REASON_PROTOCOL_ERROR,
    REASON_UNSUPPORTED_PROTOCOL_VERSION,
    MalformedPacket,
    PacketType,
)
from infra.local.iot.mqtt_codec._properties import (
    PROP_ASSIGNED_CLIENT_ID,
    PROP_AUTH_DATA,
    PROP_AUTH_METHOD,
    PROP_CONTENT_TYPE,
    PROP_CORRELATION_DATA,
    PROP_MAX_PACKET_SIZE,
    PROP_MAX_QOS,
    PROP_MESSAGE_EXPIRY,
    PROP_PAYLOAD_FORMAT,
    PROP_REASON_STRING,
    PROP_RECEIVE_MAXIMUM,
    PROP_REQUEST_PROBLEM_INFO,
    PROP_REQUEST_RESPONSE_INFO,
    PROP_RESPONSE_INFO,
    PROP_RESPONSE_TOPIC,
    PROP_RETAIN_AVAILABLE,
    PROP_SERVER_KEEP_ALIVE,
    PROP_SERVER_REFERENCE,
    PROP_SESSION_EXPIRY,
    PROP_SHARED_SUB_AVAILABLE,
    PROP_SUB_ID_AVAILABLE,
    PROP_SUBSCRIPTION_ID,
    PROP_TOPIC_ALIAS,
    PROP_TOPIC_ALIAS_MAX,
    PROP_USER_PROPERTY,
    PROP_WILDCARD_SUB_AVAILABLE,
    PROP_WILL_DELAY,
    Properties,
)
from infra.local.iot.mqtt_codec._publish import (
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    encode_publish,
)
from infra.local.iot.mqtt_codec._subscribe import (
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
)

__all__ = [
    "MAX_REMAINING_LENGTH",
    "PROP_ASSIGNED_CLIENT_ID",
    "PROP_AUTH_DATA",
    "PROP_AUTH_METHOD",
    "PROP_CONTENT_TYPE",
    "PROP_CORRELATION_DATA",
    "PROP_MAX_PACKET_SIZE",
    "PROP_MAX_QOS",
    "PROP_MESSAGE_EXPIRY",
    "PROP_PAYLOAD_FORMAT",
    "PROP_REASON_STRING",
    "PROP_RECEIVE_MAXIMUM",
    "PROP_REQUEST_PROBLEM_INFO",
    "PROP_REQUEST_RESPONSE_INFO",
    "PROP_RESPONSE_INFO",
    "PROP_RESPONSE_TOPIC",
    "PROP_RETAIN_AVAILABLE",
    "PROP_SERVER_KEEP_ALIVE",
    "PROP_SERVER_REFERENCE",
    "PROP_SESSION_EXPIRY",
    "PROP_SHARED_SUB_AVAILABLE",
    "PROP_SUBSCRIPTION_ID",
    "PROP_SUB_ID_AVAILABLE",
    "PROP_TOPIC_ALIAS",
    "PROP_TOPIC_ALIAS_MAX",
    "PROP_USER_PROPERTY",
    "PROP_WILDCARD_SUB_AVAILABLE",
    "PROP_WILL_DELAY",
    "REASON_MALFORMED_PACKET",
    "REASON_PACKET_TOO_LARGE",
    "REASON_PROTOCOL_ERROR",
    "REASON_UNSUPPORTED_PROTOCOL_VERSION",
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "MalformedPacket",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "SubscriptionOptions",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "encode",
    "encode_publish",
]

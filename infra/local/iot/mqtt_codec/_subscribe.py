"""SUBSCRIBE (with its :class:`SubscriptionOptions`), SUBACK, UNSUBSCRIBE and UNSUBACK — their
dataclasses, decoders and the encoding of subscription options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.local.iot.mqtt_codec._primitives import REASON_PROTOCOL_ERROR, _qos
from infra.local.iot.mqtt_codec._properties import Properties
from infra.local.iot.mqtt_codec._reader import _Reader


@dataclass(slots=True)
class SubscriptionOptions:
    """Options of one SUBSCRIBE entry; MQTT 3.1.1 carries only ``qos``."""

    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    """SUBSCRIBE: one or more topic filters with their options."""

    packet_id: int
    subscriptions: list[tuple[str, SubscriptionOptions]]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Suback:
    """SUBACK: one reason code per filter of the SUBSCRIBE.

    Encoding for level 3/4 writes any failure code (0x80 and up) as 0x80.
    """

    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: one or more topic filters."""

    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Unsuback:
    """UNSUBACK. ``reason_codes`` exist on the wire only in MQTT 5 (decoded as ``[]`` for 3.1.1)."""

    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Decoding


def _decode_subscribe(r: _Reader, flags: int, v5: bool) -> Subscribe:
    packet_id = r.packet_id()
    properties = r.properties("SUBSCRIBE") if v5 else {}
    subscriptions: list[tuple[str, SubscriptionOptions]] = []
    while not r.at_end():
        topic_filter = r.utf8("topic filter")
        options = r.byte("subscription options")
        qos = options & 0x03
        if qos == 3:
            raise r.fail(f"the requested QoS for {topic_filter!r} is 3; it must be 0, 1 or 2")
        if not v5:
            if options & 0xFC:
                raise r.fail(
                    f"the requested QoS byte for {topic_filter!r} is 0x{options:02X}; "
                    "its upper 6 bits are reserved and must be 0"
                )
            subscriptions.append((topic_filter, SubscriptionOptions(qos)))
            continue
        if options & 0xC0:
            raise r.fail(
                f"reserved bits 6-7 of the subscription options for {topic_filter!r} are set"
            )
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise r.fail(
                f"retain handling for {topic_filter!r} is 3; it must be 0, 1 or 2",
                REASON_PROTOCOL_ERROR,
            )
        subscriptions.append(
            (
                topic_filter,
                SubscriptionOptions(
                    qos, bool(options & 0x04), bool(options & 0x08), retain_handling
                ),
            )
        )
    if not subscriptions:
        raise r.fail(
            "SUBSCRIBE carries no topic filter; it needs at least one", REASON_PROTOCOL_ERROR
        )
    return Subscribe(packet_id, subscriptions, properties)


def _decode_suback(r: _Reader, flags: int, v5: bool) -> Suback:
    packet_id = r.packet_id()
    properties = r.properties("SUBACK") if v5 else {}
    codes = list(r.rest())
    if not codes:
        raise r.fail("SUBACK carries no reason code; it needs one per topic filter")
    return Suback(packet_id, codes, properties)


def _decode_unsubscribe(r: _Reader, flags: int, v5: bool) -> Unsubscribe:
    packet_id = r.packet_id()
    properties = r.properties("UNSUBSCRIBE") if v5 else {}
    filters: list[str] = []
    while not r.at_end():
        filters.append(r.utf8("topic filter"))
    if not filters:
        raise r.fail(
            "UNSUBSCRIBE carries no topic filter; it needs at least one", REASON_PROTOCOL_ERROR
        )
    return Unsubscribe(packet_id, filters, properties)


def _decode_unsuback(r: _Reader, flags: int, v5: bool) -> Unsuback:
    packet_id = r.packet_id()
    if not v5:
        r.finish()
        return Unsuback(packet_id, [], {})
    properties = r.properties("UNSUBACK")
    codes = list(r.rest())
    if not codes:
        raise r.fail("UNSUBACK carries no reason code; it needs one per topic filter")
    return Unsuback(packet_id, codes, properties)


# --------------------------------------------------------------------------------------------
# Encoding


def _subscription_options(options: SubscriptionOptions, v5: bool) -> int:
    byte = _qos(options.qos, "subscription QoS")
    if not v5:
        return byte
    if options.retain_handling not in (0, 1, 2):
        raise ValueError(f"retain handling is {options.retain_handling!r}; it must be 0, 1 or 2")
    if options.no_local:
        byte |= 0x04
    if options.retain_as_published:
        byte |= 0x08
    return byte | options.retain_handling << 4

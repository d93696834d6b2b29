"""Temporary SigV4 credentials that expire while an MQTT connection is open, as AWS IoT does it.

AWS IoT Core authenticates a SigV4 WebSocket once, at the upgrade: the connection stays open
after the credentials expire (until IoT's 24 h WebSocket limit, a disconnect, or a policy
change), and actions on it keep being authorised by the policies. A client needs fresh
credentials only to open a new connection. A NEW connection with expired credentials is
refused at the handshake with HTTP 403. These tests pin that behaviour on the local gateway.
"""

from __future__ import annotations

import json
import time

from infra.local.iot import mqtt_codec as mq
from infra.local.iot.gateway import Gateway
from tests.support.identities import new_identity, new_publisher
from tests.support.raw_mqtt import RawClient
from tests.support.real_clients import CLIENT_KINDS, iot_data_client

LIFETIME_S = 2.0


def _publish(gateway: Gateway, topic: str, payload: bytes) -> None:
    publisher = new_publisher(gateway.credentials)
    iot_data_client(gateway.port, gateway.ca_file, publisher).publish(
        topic=topic, qos=1, payload=payload
    )


def test_a_connection_outlives_its_credentials_and_keeps_subscribing(gateway: Gateway):
    identity = new_identity(gateway.credentials, lifetime_s=LIFETIME_S)
    client = RawClient(gateway.port, gateway.ca_file, identity, protocol_level=5)
    assert client.status == 101, client.response_head
    try:
        assert client.connect(f"{identity.identity_id}-expiring").reason_code == 0
        assert client.subscribe(identity.topic("before")).reason_codes == [1]
        assert identity.credential.expiration is not None
        time.sleep(max(0.0, identity.credential.expiration - time.time()) + 1.0)
        assert time.time() > identity.credential.expiration
        # still connected: a new subscription is authorised by the policies, as on AWS IoT
        assert client.subscribe(identity.topic("after"), packet_id=2).reason_codes == [1]
        # and what is not allowed stays refused
        stranger = new_identity(gateway.credentials)
        assert client.subscribe(stranger.topic(), packet_id=3).reason_codes == [0x87]
        _publish(gateway, identity.topic("after"), b"after expiry")
        message = client.recv_until(mq.Publish)
        assert isinstance(message, mq.Publish)
        assert (message.topic, message.payload) == (identity.topic("after"), b"after expiry")
    finally:
        client.close()


def test_a_real_client_keeps_receiving_after_its_credentials_expire(gateway: Gateway):
    identity = new_identity(gateway.credentials, lifetime_s=LIFETIME_S)
    mqtt = CLIENT_KINDS["awsiotsdk-mqtt5"](gateway.port, gateway.ca_file, identity)
    mqtt.connect()
    try:
        assert identity.credential.expiration is not None
        time.sleep(max(0.0, identity.credential.expiration - time.time()) + 1.0)
        assert mqtt.subscribe(identity.topic())
        _publish(gateway, identity.topic(), b"still here")
        assert mqtt.receive() == (identity.topic(), b"still here")
    finally:
        mqtt.disconnect()


def test_a_new_connection_with_expired_credentials_is_refused_with_403(gateway: Gateway):
    identity = new_identity(gateway.credentials, lifetime_s=LIFETIME_S)
    assert identity.credential.expiration is not None
    time.sleep(max(0.0, identity.credential.expiration - time.time()) + 1.0)
    refused = RawClient(gateway.port, gateway.ca_file, identity)
    try:
        assert refused.status == 403, refused.response_head
        body = json.loads(refused.body)
        assert set(body) == {"error", "message"}
        # the sweeper may already have forgotten the key: either way it is refused as AWS does
        assert body["error"] in {"expired_credentials", "unknown_key"}, body
    finally:
        refused.close()

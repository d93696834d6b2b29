"""Real AWS IoT clients against the running gateway: connect, subscribe, receive, refusals."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from infra.local.iot.gateway import Gateway
from tests.support.identities import new_identity, new_publisher
from tests.support.real_clients import CLIENT_KINDS, Refused, iot_data_client

KINDS = sorted(CLIENT_KINDS)


def _client(kind: str, gateway: Gateway, identity, **kwargs):
    return CLIENT_KINDS[kind](gateway.port, gateway.ca_file, identity, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_client_connects_subscribes_and_receives(kind: str, gateway: Gateway) -> None:
    identity = new_identity(gateway.credentials)
    client = _client(kind, gateway, identity)
    client.connect()
    try:
        topic = identity.topic()
        assert client.subscribe(topic)
        payload = f'{{"kind": "{kind}", "n": 1}}'.encode()
        iot_data_client(gateway.port, gateway.ca_file, new_publisher(gateway.credentials)).publish(
            topic=topic, qos=1, payload=payload
        )
        assert client.receive() == (topic, payload)
        # the client's own publish to its own channel comes back to it as well
        client.publish(topic, b"own", qos=1)
        assert client.receive() == (topic, b"own")
    finally:
        client.disconnect()


@pytest.mark.parametrize("kind", KINDS)
def test_client_with_tampered_secret_is_refused(kind: str, gateway: Gateway) -> None:
    identity = new_identity(gateway.credentials)
    wrong = dataclasses.replace(identity.credential, secret_access_key="x" * 40)
    identity = dataclasses.replace(identity, credential=wrong)
    with pytest.raises(Refused):
        _client(kind, gateway, identity).connect()


@pytest.mark.parametrize("kind", KINDS)
def test_client_with_expired_credentials_is_refused(kind: str, gateway: Gateway) -> None:
    identity = new_identity(gateway.credentials, lifetime_s=60, now=time.time() - 120)
    with pytest.raises(Refused):
        _client(kind, gateway, identity).connect()


@pytest.mark.parametrize("kind", KINDS)
def test_client_denied_a_topic_does_not_receive_it(kind: str, gateway: Gateway) -> None:
    alice = new_identity(gateway.credentials)
    mallory = new_identity(gateway.credentials)
    client = _client(kind, gateway, mallory)
    client.connect()
    try:
        assert not client.subscribe(alice.topic())  # SUBACK failure: policy scopes ${sub}
        assert client.subscribe(mallory.topic())
        publisher = iot_data_client(
            gateway.port, gateway.ca_file, new_publisher(gateway.credentials)
        )
        publisher.publish(topic=alice.topic(), qos=1, payload=b"secret")
        publisher.publish(topic=mallory.topic(), qos=1, payload=b"mine")
        assert client.receive() == (mallory.topic(), b"mine")
        assert client.nothing_received(0.5)
    finally:
        client.disconnect()


def test_client_may_not_connect_with_another_identitys_client_id(gateway: Gateway) -> None:
    alice = new_identity(gateway.credentials)
    mallory = new_identity(gateway.credentials)
    client = CLIENT_KINDS["awsiotsdk-mqtt5"](
        gateway.port, gateway.ca_file, mallory, client_id=f"{alice.identity_id}-x"
    )
    with pytest.raises(Refused) as refused:
        client.connect()
    assert (
        "NOT_AUTHORIZED" in str(refused.value)
        or "135" in str(refused.value)
        or "0x87" in str(refused.value).lower()
    )


def test_boto3_iot_data_publish_is_authorised(gateway: Gateway) -> None:
    identity = new_identity(gateway.credentials)
    client = iot_data_client(gateway.port, gateway.ca_file, identity)
    with pytest.raises(ClientError) as denied:
        client.publish(topic=f"tidings/dev/users/someone-else/{uuid.uuid4()}", qos=1, payload=b"x")
    assert denied.value.response["Error"]["Code"] == "ForbiddenException"
    client.publish(topic=identity.topic(), qos=0, payload=b"fine")

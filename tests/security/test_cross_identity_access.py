"""One identity reaching for another's data, against the whole local stack over real sockets:
login over HTTPS, GetCredentialsForIdentity over the Cognito protocol, SigV4 on the channels
API, SigV4 WebSocket MQTT on the gateway. Every attempt is refused the way AWS refuses it."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from infra.local.iot import mqtt_codec as mq
from infra.local.stack.local_stack import LocalStack
from tests.support.identities import Identity
from tests.support.local_stack import (
    add_user,
    cognito_client,
    credentials_for,
    login_over_https,
)
from tests.support.openapi import api_document
from tests.support.raw_http import Answer, assert_error_json, exchange, request_bytes
from tests.support.raw_mqtt import RawClient

LOGIN_KEY = "cognito-identity.amazonaws.com"


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    add_user(shared_stack, ALICE, f"{ALICE}-security-1", {"acme"})
    add_user(shared_stack, BOB, f"{BOB}-security-1", {"globex"})
    return shared_stack


ALICE, BOB = "alice-xid", "bob-xid"  # the stack is shared: names of this module's own


def login(stack: LocalStack, user: str) -> dict[str, Any]:
    """POST /v1/login over HTTPS with the user's password."""
    return login_over_https(stack, user, f"{user}-security-1")


def credentials(stack: LocalStack, answer: dict[str, Any]) -> Identity:
    """GetCredentialsForIdentity with the login's OpenID token, as a client makes it."""
    return Identity(answer["identityId"], credentials_for(stack, answer))


@pytest.fixture(scope="module")
def alice(stack: LocalStack) -> tuple[dict[str, Any], Identity]:
    answer = login(stack, ALICE)
    return answer, credentials(stack, answer)


@pytest.fixture(scope="module")
def bob(stack: LocalStack) -> tuple[dict[str, Any], Identity]:
    answer = login(stack, BOB)
    return answer, credentials(stack, answer)


def api_port(stack: LocalStack) -> int:
    return int(stack.api_url.split(":")[2].split("/")[0])


def signed_get(stack: LocalStack, identity: Identity, raw_target: str) -> Answer:
    """GET ``/dev<raw_target>`` signed (execute-api) by ``identity``, sent byte for byte."""
    port = api_port(stack)
    target = f"/{stack.config.stage}{raw_target}"
    request = AWSRequest(method="GET", url=f"https://localhost:{port}{target}")
    SigV4Auth(
        Credentials(identity.access_key, identity.secret_key, identity.token),
        "execute-api",
        "us-east-1",
    ).add_auth(request)
    head = [("Host", f"localhost:{port}"), *request.headers.items()]
    answer = exchange(port, request_bytes("GET", target, head), ca_file=stack.ca_file)
    api_document().check(
        "GET", raw_target.split("?")[0], answer.status, answer.headers, answer.body
    )
    return answer


# --- Cognito: a token for one identity does not buy another's credentials -------------------


def test_one_identitys_token_does_not_buy_anothers_credentials(stack: LocalStack, alice, bob):
    (alice_answer, _), (bob_answer, _) = alice, bob
    client = cognito_client(stack)
    with pytest.raises(ClientError) as swapped:
        client.get_credentials_for_identity(
            IdentityId=bob_answer["identityId"], Logins={LOGIN_KEY: alice_answer["token"]}
        )
    assert swapped.value.response["Error"]["Code"] == "NotAuthorizedException"
    with pytest.raises(ClientError) as tampered:
        client.get_credentials_for_identity(
            IdentityId=alice_answer["identityId"],
            Logins={LOGIN_KEY: alice_answer["token"][:-6] + "AAAAAA"},
        )
    assert tampered.value.response["Error"]["Code"] == "NotAuthorizedException"


# --- the channels API --------------------------------------------------------------------


def test_one_identitys_credentials_do_not_read_anothers_channel(stack: LocalStack, alice, bob):
    (_, me), (_, other) = alice, bob
    own = signed_get(stack, me, f"/v1/channels/users/{me.identity_id}/todos")
    assert own.status == 200, own.body
    theirs = signed_get(stack, me, f"/v1/channels/users/{other.identity_id}/todos")
    assert theirs.status == 403, theirs.body
    assert assert_error_json(theirs)["error"] in {"forbidden", "access_denied"}
    board = signed_get(stack, me, "/v1/channels/tenants/globex/board")
    assert board.status == 403, board.body


def test_path_tricks_never_reach_another_identitys_channel(stack: LocalStack, alice, bob):
    (_, me), (_, other) = alice, bob
    mine, theirs = me.identity_id, other.identity_id
    tricks = [
        f"/v1/channels/users/{mine}/../{theirs}/todos",
        f"/v1/channels/users/{mine}/%2e%2e/{theirs}/todos",
        f"/v1/channels/users/{mine}/..%2F{theirs}%2Ftodos",
        f"/v1/channels/users%2F{theirs}%2Ftodos",
        f"/v1/channels/users%252F{theirs}%252Ftodos",
        f"/v1/channels/users/{theirs}/todos/",
        f"/v1/channels/users/{theirs}//todos",
        f"/V1/Channels/users/{theirs}/todos",
        f"/v1/CHANNELS/users/{theirs}/todos",
        f"/v1/channels/USERS/{theirs}/todos",
        f"/v1/channels/users/{theirs}/todos%00",
        f"/v1/channels/users/{theirs}/todos/changes/",
        "/v1/channels/" + "a/" * 4000 + "todos",
        "/v1/channels/users/" + "x" * 10_000 + "/todos",
    ]
    for trick in tricks:
        answer = signed_get(stack, me, trick)
        assert 400 <= answer.status < 500, (trick[:120], answer.status, answer.body[:300])
        assert_error_json(answer)
        assert theirs.encode() not in answer.body or answer.status != 200


def test_a_double_encoded_slash_is_not_decoded_twice(stack: LocalStack, alice):
    _, me = alice
    # 'public%252Fscores' is the one-segment channel 'public%2Fscores', never 'public/scores'
    answer = signed_get(stack, me, "/v1/channels/public%252Fscores")
    assert answer.status == 400, answer.body
    assert "public/scores" not in assert_error_json(answer)["message"]
    assert signed_get(stack, me, "/v1/channels/public/scores").status == 200


def test_unsigned_and_badly_signed_channel_reads_are_refused(stack: LocalStack, alice, bob):
    (_, me), (_, other) = alice, bob
    port = api_port(stack)
    target = f"/{stack.config.stage}/v1/channels/users/{other.identity_id}/todos"
    unsigned = exchange(
        port, request_bytes("GET", target, [("Host", "localhost")]), ca_file=stack.ca_file
    )
    assert unsigned.status == 403 and assert_error_json(unsigned)
    # alice's valid signature for her own channel, replayed on bob's
    request = AWSRequest(
        method="GET",
        url=f"https://localhost:{port}/{stack.config.stage}/v1/channels/users/{me.identity_id}/todos",
    )
    SigV4Auth(
        Credentials(me.access_key, me.secret_key, me.token), "execute-api", "us-east-1"
    ).add_auth(request)
    head = [("Host", f"localhost:{port}"), *request.headers.items()]
    replayed = exchange(port, request_bytes("GET", target, head), ca_file=stack.ca_file)
    assert replayed.status == 403, replayed.body
    assert assert_error_json(replayed)["error"] == "signature_mismatch"


# --- MQTT ----------------------------------------------------------------------------------


def mqtt(stack: LocalStack, identity: Identity, level: int = 5) -> RawClient:
    client = RawClient(stack.iot_port, stack.ca_file, identity, protocol_level=level)
    assert client.status == 101, client.response_head
    return client


@pytest.mark.parametrize("level", [5, 4])
def test_connecting_with_another_identitys_client_id_is_refused(
    stack: LocalStack, alice, bob, level: int
):
    (_, me), (_, other) = alice, bob
    for client_id in (other.identity_id, f"{other.identity_id}-stolen", "anything-else"):
        client = mqtt(stack, me, level)
        try:
            ack = client.connect(client_id)
            assert ack.reason_code == (0x87 if level == 5 else 5), (client_id, ack)
            assert client.is_closed()
        finally:
            client.close()


def test_foreign_wildcard_and_reserved_subscriptions_are_refused(stack: LocalStack, alice, bob):
    (_, me), (_, other) = alice, bob
    v5 = mqtt(stack, me, 5)
    v3 = mqtt(stack, me, 4)
    try:
        assert v5.connect(f"{me.identity_id}-v5").reason_code == 0
        assert v3.connect(f"{me.identity_id}-v3").reason_code == 0
        refused = [
            f"tidings/dev/users/{other.identity_id}/todos",
            "tidings/dev/#",
            "tidings/dev/users/+/todos",
            "tidings/#",
            "#",
            "+/dev/users/+/todos",
            "tidings/dev/tenants/globex/board",
            "tidings/dev/tenants/+/board",
            "$aws/events/#",
            "$aws/events/presence/connected/+",
            f"$aws/things/{other.identity_id}/shadow/get/accepted",
            "$aws/rules/anything",
        ]
        for packet_id, topic_filter in enumerate(refused, start=1):
            assert v5.subscribe(topic_filter, packet_id=packet_id).reason_codes == [0x87], (
                topic_filter
            )
            assert v3.subscribe(topic_filter, packet_id=packet_id).reason_codes == [0x80], (
                topic_filter
            )
        own = f"tidings/dev/users/{me.identity_id}/todos"
        assert v5.subscribe(own, packet_id=100).reason_codes == [1]
        # what the refused filters would have matched does not arrive; the own channel does
        publisher = boto3.client(
            "iot-data",
            endpoint_url=f"https://localhost:{stack.iot_port}",
            verify=stack.ca_file,
            region_name="us-east-1",
            aws_access_key_id=other.access_key,
            aws_secret_access_key=other.secret_key,
            aws_session_token=other.token,
        )
        with pytest.raises(ClientError) as forged:  # bob may not publish on alice's channel
            publisher.publish(topic=own, qos=1, payload=b"forged")
        assert forged.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        v5.close()
        v3.close()


def test_another_identitys_messages_never_arrive(stack: LocalStack, alice, bob):
    (_, me), (_, other) = alice, bob
    client = mqtt(stack, me, 5)
    try:
        assert client.connect(f"{me.identity_id}-rx").reason_code == 0
        assert client.subscribe(f"tidings/dev/users/{other.identity_id}/todos").reason_codes == [
            0x87
        ]
        assert client.subscribe(f"tidings/dev/users/{me.identity_id}/todos", packet_id=2)
        dynamodb = stack.client("dynamodb")
        for owner, item_id in ((other.identity_id, "theirs"), (me.identity_id, "mine")):
            dynamodb.put_item(
                TableName=stack.tables["TodosTable"],
                Item={"owner": {"S": owner}, "id": {"S": item_id}},
            )
        message = client.recv_until(mq.Publish)
        assert isinstance(message, mq.Publish)
        assert message.topic == f"tidings/dev/users/{me.identity_id}/todos"
        assert b'"mine"' in message.payload and b"theirs" not in message.payload
    finally:
        client.close()

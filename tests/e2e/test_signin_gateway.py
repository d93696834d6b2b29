"""End to end: login → GetCredentialsForIdentity (boto3) → a real awsiotsdk client on the gateway.

The identity service and the gateway share one credential store, as in ``tidings up``: the
credentials a login buys carry the role policy and the IoT policies the login attached, and
the gateway enforces both.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.settings import OidcIssuer
from backend.change_store import Head
from backend.channels_api import ChannelsApi
from backend.tenants import UsersTableTenants
from infra.local.awsauth.credential_store import StoredCredential
from infra.local.iot.gateway import Gateway
from tests.support.identities import Identity, new_publisher
from tests.support.moto_server import SigninStack, signin_stack
from tests.support.real_clients import CLIENT_KINDS, ClientBase, Refused, iot_data_client

ISSUER = "https://idp.example.test/e2e"
ISSUER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OIDC = OidcIssuer(ISSUER, ("e2e-client",), "https://idp.example.test/e2e/jwks.json")


def issuer_jwks(_url: str) -> dict[str, Any]:
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ISSUER_KEY.public_key()))
    key.update({"kid": "e2e", "alg": "RS256"})
    return {"keys": [key]}


def id_token(sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "e2e-client",
        "sub": sub,
        "token_use": "id",
        "iat": now,
        "exp": now + 300,
        "cognito:groups": ["globex"],
    }
    return jwt.encode(claims, ISSUER_KEY, algorithm="RS256", headers={"kid": "e2e"})


@pytest.fixture(scope="module")
def stack(gateway: Gateway):
    with signin_stack(gateway.credentials, issuers=(OIDC,), jwks_fetch=issuer_jwks) as running:
        running.add_user("alice", "alice-e2e-password", ("acme",))
        running.add_user("bob", "bob-e2e-password", ("globex",))
        yield running


def identity_from(stack: SigninStack, answer: dict[str, Any]) -> Identity:
    """The credentials boto3 got from GetCredentialsForIdentity, as the test clients take them."""
    creds = stack.credentials_for(answer)
    credential = StoredCredential(
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretKey"],
        session_token=creds["SessionToken"],
        principal=answer["identityId"],
        expiration=creds["Expiration"].timestamp(),
    )
    return Identity(answer["identityId"], credential)


def password_login(stack: SigninStack, username: str) -> dict[str, Any]:
    return stack.login(
        {"method": "password", "username": username, "password": f"{username}-e2e-password"},
        source_ip="192.0.2.200",
    )


def client(
    gateway: Gateway, identity: Identity, kind: str = "awsiotsdk-mqtt5", **kwargs: Any
) -> ClientBase:
    return CLIENT_KINDS[kind](gateway.port, gateway.ca_file, identity, **kwargs)


def publish(gateway: Gateway, channel: str, payload: bytes) -> None:
    iot_data_client(gateway.port, gateway.ca_file, new_publisher(gateway.credentials)).publish(
        topic=f"tidings/dev/{channel}", qos=1, payload=payload
    )


def login_with(method: str, stack: SigninStack) -> dict[str, Any]:
    if method == "password":
        return password_login(stack, "alice")
    if method == "device":
        thing = f"device-{time.time_ns()}"
        _, secret = stack.users.add_device(thing, frozenset({"acme"}))
        return stack.login(
            {"method": "device", "thing_name": thing, "secret": secret}, source_ip="192.0.2.201"
        )
    return stack.login(
        {"method": "id_token", "id_token": id_token(f"sub-{time.time_ns()}")},
        source_ip="192.0.2.202",
    )


@pytest.mark.parametrize("method", ["password", "device", "id_token"])
def test_each_login_method_ends_in_a_client_that_receives_its_own_channel(
    method: str, stack: SigninStack, gateway: Gateway
):
    answer = login_with(method, stack)
    identity = identity_from(stack, answer)
    own = f"users/{identity.identity_id}/todos"
    assert own in answer["channels"]
    mqtt = client(gateway, identity)
    mqtt.connect()
    try:
        assert mqtt.subscribe(f"tidings/dev/{own}")
        assert mqtt.subscribe("tidings/dev/public/scores")
        publish(gateway, own, f'{{"method": "{method}"}}'.encode())
        assert mqtt.receive() == (f"tidings/dev/{own}", f'{{"method": "{method}"}}'.encode())
        publish(gateway, "public/scores", b"score")
        assert mqtt.receive() == ("tidings/dev/public/scores", b"score")
    finally:
        mqtt.disconnect()


def test_a_tenant_member_reads_its_board_and_not_another_tenants(
    stack: SigninStack, gateway: Gateway
):
    alice = identity_from(stack, password_login(stack, "alice"))  # acme
    mqtt = client(gateway, alice, kind="awsiotsdk-mqtt311")
    mqtt.connect()
    try:
        assert not mqtt.subscribe("tidings/dev/tenants/globex/board")
        assert not mqtt.subscribe("tidings/dev/tenants/+/board")
        assert mqtt.subscribe("tidings/dev/tenants/acme/board")
        publish(gateway, "tenants/globex/board", b"globex only")
        publish(gateway, "tenants/acme/board", b"acme news")
        assert mqtt.receive() == ("tidings/dev/tenants/acme/board", b"acme news")
        # awscrt's 3.1.1 client keeps a local callback for the refused "+" filter too, so it
        # may hand the acme message to the test twice; what matters is that globex never comes
        extra = drain(mqtt, 0.5)
        assert all(topic == "tidings/dev/tenants/acme/board" for topic, _ in extra), extra
    finally:
        mqtt.disconnect()


def drain(mqtt: ClientBase, wait: float) -> list[tuple[str, bytes]]:
    received = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            received.append(mqtt.messages.get(timeout=left))
        except queue.Empty:
            break
    return received


class HeadOnlyStore:
    def head(self, channel: str) -> Head:
        return Head(7, 1)


def api_status(stack: SigninStack, identity_id: str, channel: str) -> int:
    tenants = UsersTableTenants(stack.users.client, stack.users.table, ttl_s=0)
    api = ChannelsApi(stack.service.routes, HeadOnlyStore(), tenants)  # type: ignore[arg-type]
    event = {
        "httpMethod": "GET",
        "path": f"/v1/channels/{channel}",
        "pathParameters": {"channel": channel},
        "requestContext": {"identity": {"cognitoIdentityId": identity_id}},
    }
    return int(api.handle(event)["statusCode"])


def test_the_channels_api_applies_the_same_rules(stack: SigninStack):
    alice = password_login(stack, "alice")["identityId"]
    bob = password_login(stack, "bob")["identityId"]
    assert api_status(stack, alice, f"users/{alice}/todos") == 200
    assert api_status(stack, alice, f"users/{bob}/todos") == 403
    # tenants come from what the login recorded in the users table (byIdentity index)
    assert api_status(stack, alice, "tenants/acme/board") == 200
    assert api_status(stack, alice, "tenants/globex/board") == 403
    assert api_status(stack, bob, "tenants/globex/board") == 200


def test_expired_credentials_are_refused_and_the_same_token_buys_new_ones(
    stack: SigninStack, gateway: Gateway
):
    service = stack.identity.service
    original = service.config
    service.config = dataclasses.replace(original, credential_lifetime_s=2.0)
    try:
        answer = password_login(stack, "alice")
        short_lived = identity_from(stack, answer)
    finally:
        service.config = original
    time.sleep(2.2)
    with pytest.raises(Refused):
        client(gateway, short_lived).connect()
    fresh = identity_from(stack, answer)  # GetCredentialsForIdentity with the same token
    mqtt = client(gateway, fresh)
    mqtt.connect()
    mqtt.disconnect()


def test_without_the_attached_iot_policy_the_gateway_refuses(stack: SigninStack, gateway: Gateway):
    stack.add_user("ivy", "ivy-e2e-password")
    answer = password_login(stack, "ivy")
    for policy in stack.iot.list_attached_policies(target=answer["identityId"])["policies"]:
        stack.iot.detach_policy(policyName=policy["policyName"], target=answer["identityId"])
    with pytest.raises(Refused):
        client(gateway, identity_from(stack, answer)).connect()

"""POST /v1/login against moto (DynamoDB, IoT) and the local identity service, in process."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.passwords import ScryptParameters, hash_password
from auth.settings import OidcIssuer, RateLimits
from tests.support.moto_server import POOL_ID, SigninStack, signin_stack

ISSUER = "https://idp.example.test/tenant-1"
ISSUER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OIDC = OidcIssuer(ISSUER, ("web-client",), "https://idp.example.test/jwks.json")


def issuer_jwks(url: str) -> dict[str, Any]:
    assert url == OIDC.jwks_uri
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ISSUER_KEY.public_key()))
    key.update({"kid": "idp-1", "alg": "RS256"})
    return {"keys": [key]}


def id_token(sub: str = "ext-user-1", groups: list[str] | None = None, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "web-client",
        "sub": sub,
        "token_use": "id",
        "iat": now,
        "exp": now + 300,
        "cognito:groups": groups or [],
        **extra,
    }
    return jwt.encode(claims, ISSUER_KEY, algorithm="RS256", headers={"kid": "idp-1"})


class CountingIot:
    """The moto IoT client, counting the calls the login makes."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            return method(**kwargs)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def stack():
    limits = RateLimits(
        account_address_max_failures=3,
        account_hourly_max_failures=6,
        address_max_failures=8,
        window_s=600,
    )
    with signin_stack(issuers=(OIDC,), limits=limits, jwks_fetch=issuer_jwks) as running:
        running.add_user("alice", "alice-password-1", ("acme",))
        running.add_user("bob", "bob-password-1")
        yield running


@pytest.fixture
def clock(stack: SigninStack):
    fake = Clock()
    stack.service.clock = fake
    yield fake
    stack.service.clock = time.time


def password(username: str, secret: str) -> dict[str, str]:
    return {"method": "password", "username": username, "password": secret}


def test_password_login_answers_everything_a_client_needs(stack: SigninStack):
    answer = stack.login(password("alice", "alice-password-1"), source_ip="192.0.2.1")
    identity = answer["identityId"]
    assert identity.startswith("us-east-1:")
    assert answer["identityPoolId"] == POOL_ID
    assert answer["region"] == "us-east-1"
    assert answer["iot"] == {"endpoint": "localhost", "port": 8443, "topicPrefix": "tidings/dev/"}
    assert answer["api"] == {"url": "http://127.0.0.1:9/v1"}
    assert answer["channels"] == [f"users/{identity}/todos", "tenants/acme/board", "public/scores"]
    assert answer["expiresAt"].endswith("Z")
    claims = jwt.decode(answer["token"], options={"verify_signature": False})
    assert (claims["sub"], claims["aud"]) == (identity, POOL_ID)
    # the same user always gets the same identity
    again = stack.login(password("alice", "alice-password-1"), source_ip="192.0.2.1")
    assert again["identityId"] == identity


def test_iot_policies_are_attached_on_the_first_login_only(stack: SigninStack):
    counting = CountingIot(stack.iot)
    original, stack.service._iot = stack.service._iot, counting
    try:
        stack.add_user("carol", "carol-password-1", ("acme", "globex"))
        first = stack.login(password("carol", "carol-password-1"), source_ip="192.0.2.2")
        assert counting.calls.count("attach_policy") >= 3  # identity + two tenants
        attached = stack.iot.list_attached_policies(target=first["identityId"])["policies"]
        assert len(attached) == 3
        counting.calls.clear()
        for _ in range(3):
            stack.login(password("carol", "carol-password-1"), source_ip="192.0.2.2")
        assert counting.calls == []  # remembered: no AttachPolicy (15 TPS limit) on re-login
    finally:
        stack.service._iot = original


def test_a_tenant_change_attaches_and_detaches_at_the_next_login(stack: SigninStack):
    stack.add_user("dave", "dave-password-1", ("acme",))
    first = stack.login(password("dave", "dave-password-1"), source_ip="192.0.2.3")
    identity = first["identityId"]
    stack.users.set_tenants("dave", frozenset({"globex"}))
    second = stack.login(password("dave", "dave-password-1"), source_ip="192.0.2.3")
    assert second["identityId"] == identity
    names = [p["policyName"] for p in stack.iot.list_attached_policies(target=identity)["policies"]]
    assert any("tenant-globex" in n for n in names)
    assert not any("tenant-acme" in n for n in names)
    assert second["channels"][1] == "tenants/globex/board"


def test_wrong_password_unknown_user_and_bad_token_get_the_same_401(stack: SigninStack):
    answers = [
        stack.post(password("alice", "wrong"), source_ip="192.0.2.10"),
        stack.post(password("nobody", "alice-password-1"), source_ip="192.0.2.11"),
        stack.post(
            {"method": "id_token", "id_token": id_token(aud="other")}, source_ip="192.0.2.12"
        ),
        stack.post(
            {"method": "device", "thing_name": "no-such-thing", "secret": "s"},
            source_ip="192.0.2.13",
        ),
    ]
    assert {status for status, _, _ in answers} == {401}
    assert len({json.dumps(body) for _, body, _ in answers}) == 1


def test_id_token_login_maps_sub_to_a_stable_identity_and_groups_to_tenants(stack: SigninStack):
    first = stack.login(
        {"method": "id_token", "id_token": id_token(groups=["acme"])}, source_ip="192.0.2.20"
    )
    second = stack.login(
        {"method": "id_token", "id_token": id_token(groups=["acme"])}, source_ip="192.0.2.20"
    )
    assert first["identityId"] == second["identityId"]
    assert "tenants/acme/board" in first["channels"]
    other = stack.login(
        {"method": "id_token", "id_token": id_token(sub="ext-user-2")}, source_ip="192.0.2.20"
    )
    assert other["identityId"] != first["identityId"]
    assert not any(c.startswith("tenants/") for c in other["channels"])


def test_device_login(stack: SigninStack):
    _, secret = stack.users.add_device("sensor-1", frozenset({"acme"}))
    answer = stack.login(
        {"method": "device", "thing_name": "sensor-1", "secret": secret}, source_ip="192.0.2.30"
    )
    assert "tenants/acme/board" in answer["channels"]
    status, _, _ = stack.post(
        {"method": "device", "thing_name": "sensor-1", "secret": "guess"}, source_ip="192.0.2.30"
    )
    assert status == 401


def test_one_address_fills_only_its_own_bucket_for_an_account(stack: SigninStack, clock: Clock):
    stack.add_user("erin", "erin-password-1")
    for attempt in range(3):
        status, _, _ = stack.post(password("erin", f"wrong-{attempt}"), source_ip="10.0.0.1")
        assert status == 401
    # that address is refused, even with the right password, with Retry-After
    status, body, headers = stack.post(password("erin", "erin-password-1"), source_ip="10.0.0.1")
    assert (status, body["error"]) == (429, "too_many_attempts")
    assert 1 <= int(headers["Retry-After"]) <= 600
    # the owner at another address is not locked out, nor are other users
    assert stack.post(password("erin", "erin-password-1"), source_ip="10.0.1.1")[0] == 200
    assert stack.post(password("bob", "bob-password-1"), source_ip="10.0.0.1")[0] == 200
    clock.now += 601
    assert stack.post(password("erin", "erin-password-1"), source_ip="10.0.0.1")[0] == 200


def test_guesses_from_unfamiliar_addresses_are_bounded_per_hour(stack: SigninStack, clock: Clock):
    stack.add_user("fay", "fay-password-1")
    assert stack.post(password("fay", "fay-password-1"), source_ip="10.5.0.1")[0] == 200
    # six addresses, one wrong guess each: the account's hourly budget for strangers is spent
    for attempt in range(6):
        assert stack.post(password("fay", "bad"), source_ip=f"10.5.1.{attempt}")[0] == 401
    status, _, headers = stack.post(password("fay", "fay-password-1"), source_ip="10.5.2.1")
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 3600
    # the address fay signed in from before still signs her in
    assert stack.post(password("fay", "fay-password-1"), source_ip="10.5.0.1")[0] == 200
    clock.now += 3601
    assert stack.post(password("fay", "fay-password-1"), source_ip="10.5.2.1")[0] == 200


def test_an_address_stays_familiar_while_used_and_is_forgotten_after(
    stack: SigninStack, clock: Clock
):
    day = 86400

    def spend_the_strangers_budget(tag: str) -> None:
        for attempt in range(6):
            assert stack.post(password("hana", "bad"), source_ip=f"10.6.{tag}.{attempt}")[0] == 401

    stack.add_user("hana", "hana-password-1")
    assert stack.post(password("hana", "hana-password-1"), source_ip="10.6.0.1")[0] == 200
    clock.now += 20 * day  # used again after 20 of its 30 days: remembered 30 more
    assert stack.post(password("hana", "hana-password-1"), source_ip="10.6.0.1")[0] == 200
    clock.now += 25 * day
    spend_the_strangers_budget("1")
    assert stack.post(password("hana", "hana-password-1"), source_ip="10.6.0.1")[0] == 200
    clock.now += 31 * day  # 31 days after its last use: forgotten
    spend_the_strangers_budget("2")
    assert stack.post(password("hana", "hana-password-1"), source_ip="10.6.0.1")[0] == 429


def test_unknown_users_are_throttled_like_known_ones(stack: SigninStack, clock: Clock):
    for attempt in range(3):
        assert stack.post(password("ghost", f"x{attempt}"), source_ip="10.1.0.1")[0] == 401
    assert stack.post(password("ghost", "x"), source_ip="10.1.0.1")[0] == 429


def test_address_bucket_covers_many_usernames_and_id_tokens(stack: SigninStack, clock: Clock):
    address = "203.0.113.50"
    for attempt in range(8):
        status, _, _ = stack.post(password(f"spray{attempt}", "guess"), source_ip=address)
        assert status == 401
    status, _, headers = stack.post(password("bob", "bob-password-1"), source_ip=address)
    assert status == 429 and int(headers["Retry-After"]) > 0
    status, _, _ = stack.post({"method": "id_token", "id_token": id_token()}, source_ip=address)
    assert status == 429
    assert stack.post(password("bob", "bob-password-1"), source_ip="203.0.113.51")[0] == 200
    clock.now += 601
    assert stack.post(password("bob", "bob-password-1"), source_ip=address)[0] == 200


def test_failures_outside_the_window_do_not_accumulate(stack: SigninStack, clock: Clock):
    stack.add_user("frank", "frank-password-1")
    for _ in range(2):
        stack.post(password("frank", "bad"), source_ip="10.2.0.1")
    clock.now += 601
    for _ in range(2):
        stack.post(password("frank", "bad"), source_ip="10.2.0.1")
    assert stack.post(password("frank", "frank-password-1"), source_ip="10.2.0.1")[0] == 200


def test_a_success_gives_back_its_attempt_but_keeps_earlier_failures(
    stack: SigninStack, clock: Clock
):
    stack.add_user("gina", "gina-password-1")
    # successes never fill a bucket (many users behind one address) ...
    for _ in range(5):
        assert stack.post(password("gina", "gina-password-1"), source_ip="10.3.0.1")[0] == 200
    # ... and do not wipe the failures made before them: 3 per account and address
    for _ in range(2):
        assert stack.post(password("gina", "bad"), source_ip="10.3.0.1")[0] == 401
    assert stack.post(password("gina", "gina-password-1"), source_ip="10.3.0.1")[0] == 200
    assert stack.post(password("gina", "bad"), source_ip="10.3.0.1")[0] == 401
    assert stack.post(password("gina", "gina-password-1"), source_ip="10.3.0.1")[0] == 429


def test_a_weaker_stored_hash_is_upgraded_at_login(stack: SigninStack):
    weak = hash_password("hank-password-1", "scrypt", ScryptParameters(log2_n=10))
    stack.users.add_user("hank", weak, frozenset())
    stack.login(password("hank", "hank-password-1"), source_ip="10.4.0.1")
    upgraded = stack.users.get_user("hank")
    assert upgraded is not None and upgraded.secret_hash.startswith("$argon2id$")
    stack.login(password("hank", "hank-password-1"), source_ip="10.4.0.1")


def test_passwords_are_never_stored_in_clear(stack: SigninStack):
    items = stack.users.client.scan(TableName=stack.users.table)["Items"]
    assert items
    assert "alice-password-1" not in json.dumps(items)

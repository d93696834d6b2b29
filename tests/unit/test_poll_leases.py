"""Long-poll leases: the pure rules (keys, requests, lease ends, Retry-After), the channels
API's use of them with an in-memory lease store, and their settings (no I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.change_store import Head, LogEntry
from backend.channels_api import ChannelsApi
from backend.errors import ConfigurationError, StoreError
from backend.poll_leases import (
    LEASE_MARGIN_S,
    Lease,
    Refused,
    channel_key,
    delete_request,
    lease_until_ms,
    put_request,
    retry_after_s,
    slot_keys,
)
from backend.routes import load_routes
from backend.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ROUTES = load_routes(ROOT / "infra" / "routes.yaml")
ALICE = "us-east-1:11111111-1111-4111-8111-111111111111"
CHANNEL = f"users/{ALICE}/todos"


def test_keys_separate_identities_channels_and_slots() -> None:
    assert channel_key(ALICE, CHANNEL) != channel_key(ALICE, "public/scores")
    assert channel_key(ALICE, "public/scores") != channel_key("us-east-1:other", "public/scores")
    slots = slot_keys(ALICE, 4)
    assert len(set(slots)) == 4 and slots[0].endswith("#0") and slots[3].endswith("#3")
    assert not set(slots) & {channel_key(ALICE, CHANNEL)}


def test_a_lease_ends_after_the_wait_plus_the_margin() -> None:
    assert lease_until_ms(1000.0, 20.0, 10.0) == 1_030_000
    assert lease_until_ms(1000.0001, 0.5, 10.0) == 1_010_501  # rounded up, never short
    assert LEASE_MARGIN_S >= 29 - 20  # outlives the channels function past the longest wait


def test_retry_after_is_when_the_earliest_blocking_wait_ends() -> None:
    now = 1000.0
    # two waits: their leases end at 1025 and 1013 (waits end 10 s earlier)
    assert retry_after_s(now, [1_025_000, 1_013_000], 10.0) == 3
    assert retry_after_s(now, [1_013_200], 10.0) == 4  # whole seconds, rounded up
    assert retry_after_s(now, [1_009_000], 10.0) == 1  # already ending: at least 1
    assert retry_after_s(now, [], 10.0) == 1
    assert retry_after_s(now, [None], 10.0) == 20  # unknown holder: the longest wait
    assert retry_after_s(now, [10_000_000], 10.0) == 60  # capped


def test_put_takes_only_a_free_or_expired_item_and_delete_frees_only_its_own() -> None:
    request = put_request("Leases", "slot#a#0", "tok", 2_000, 1_000, "a", "public/scores")
    assert request["ConditionExpression"] == "attribute_not_exists(pk) OR until_ms < :now"
    assert request["ExpressionAttributeValues"] == {":now": {"N": "1000"}}
    assert request["Item"]["until_ms"] == {"N": "2000"}
    assert int(request["Item"]["expires"]["N"]) > 2  # TTL in seconds, after the lease
    assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    delete = delete_request("Leases", "slot#a#0", "tok")
    assert delete["Key"] == {"pk": {"S": "slot#a#0"}}
    assert delete["ConditionExpression"] == "#token = :token"
    assert delete["ExpressionAttributeValues"] == {":token": {"S": "tok"}}


class MemoryStore:
    def __init__(self, heads: list[int]) -> None:
        self.heads = heads  # successive answers of head(); the last one repeats

    def head(self, channel: str) -> Head:
        seq = self.heads.pop(0) if len(self.heads) > 1 else self.heads[0]
        if seq < 0:
            raise StoreError("DynamoDB is down")
        return Head(seq, 1)

    def read(self, channel: str, after: int, limit: int) -> list[LogEntry]:
        return [LogEntry(s, 1, f'{{"seq":{s}}}', 2_000_000_000) for s in range(after + 1, 3)]


class MemoryLeases:
    def __init__(self, refuse: Refused | None = None) -> None:
        self.refuse = refuse
        self.taken: list[tuple[str, str, float]] = []
        self.released: list[Lease] = []

    def acquire(self, identity: str, channel: str, wait_s: float) -> Lease | Refused:
        self.taken.append((identity, channel, wait_s))
        return self.refuse or Lease("t", (channel_key(identity, channel),), 0)

    def release(self, lease: Lease) -> None:
        self.released.append(lease)


def changes_event(**query: str) -> dict:
    return {
        "httpMethod": "GET",
        "path": f"/v1/channels/{CHANNEL}/changes",
        "pathParameters": {"channel": f"{CHANNEL}/changes"},
        "queryStringParameters": query,
        "requestContext": {"identity": {"cognitoIdentityId": ALICE}},
    }


def api_with(store: MemoryStore, leases: MemoryLeases) -> ChannelsApi:
    now = [1000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return ChannelsApi(
        ROUTES,
        store,  # type: ignore[arg-type]
        lambda i: frozenset(),
        clock=lambda: now[0],
        sleep=sleep,
        leases=leases,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("reason", "named"), [("channel", "waiting poll on"), ("identity", "4 waiting polls")]
)
def test_a_wait_without_a_slot_is_429_with_retry_after(reason: str, named: str) -> None:
    leases = MemoryLeases(Refused(reason, 7, 4))  # type: ignore[arg-type]
    answer = api_with(MemoryStore([0]), leases).handle(changes_event(after="0", wait="20"))
    assert answer["statusCode"] == 429
    assert answer["headers"]["Retry-After"] == "7"
    body = json.loads(answer["body"])
    assert set(body) == {"error", "message"} and body["error"] == "too_many_waits"
    assert named in body["message"] and "7 s" in body["message"]
    assert leases.taken == [(ALICE, CHANNEL, 20.0)] and leases.released == []


def test_a_wait_holds_its_lease_until_it_answers_then_gives_it_back() -> None:
    leases = MemoryLeases()
    store = MemoryStore([0, 0, 0, 2])  # the third re-read finds two changes
    answer = api_with(store, leases).handle(changes_event(after="0", wait="20"))
    assert answer["statusCode"] == 200
    assert [c["seq"] for c in json.loads(answer["body"])["changes"]] == [1, 2]
    assert len(leases.taken) == 1 and len(leases.released) == 1


def test_no_lease_without_a_wait_or_when_changes_are_there() -> None:
    leases = MemoryLeases(Refused("identity", 5, 4))  # a lease would be refused
    assert api_with(MemoryStore([2]), leases).handle(changes_event(after="0"))["statusCode"] == 200
    waited = api_with(MemoryStore([2]), leases).handle(changes_event(after="0", wait="20"))
    assert waited["statusCode"] == 200  # nothing to wait for: no slot needed
    assert leases.taken == []


def test_the_lease_is_given_back_when_the_wait_fails() -> None:
    leases = MemoryLeases()
    answer = api_with(MemoryStore([0, -1]), leases).handle(changes_event(after="0", wait="5"))
    assert answer["statusCode"] == 503
    assert len(leases.released) == 1


def test_settings_read_the_lease_table_and_the_cap() -> None:
    base = {
        "TIDINGS_STAGE": "dev",
        "TIDINGS_TABLE_CHANGELOGTABLE": "log",
        "TIDINGS_TABLE_SEQUENCETABLE": "seq",
        "TIDINGS_ROUTES_FILE": "routes.yaml",
    }
    settings = Settings.from_env(
        {**base, "TIDINGS_TABLE_POLLLEASESTABLE": "leases", "TIDINGS_MAX_WAITS_PER_IDENTITY": "2"}
    )
    assert settings.poll_leases_table == "leases" and settings.max_waits_per_identity == 2
    assert settings.table_name("PollLeasesTable") is None  # not a source table
    assert Settings.from_env(base).max_waits_per_identity == 4
    for bad in ("0", "65", "two"):
        with pytest.raises(ConfigurationError, match="TIDINGS_MAX_WAITS_PER_IDENTITY"):
            Settings.from_env({**base, "TIDINGS_MAX_WAITS_PER_IDENTITY": bad})
    with pytest.raises(ConfigurationError, match="TIDINGS_TABLE_POLLLEASESTABLE"):
        ChannelsApi.from_settings(Settings.from_env({**base, "TIDINGS_ROUTES_FILE": "x"}))

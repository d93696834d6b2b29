"""The channels API against moto: head, changes, long-poll, cursor expiry, authorisation."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from backend import aws_clients
from backend import channels_api as channels_module
from backend.change_store import Candidate, ChangeStore
from backend.channels_api import ChannelsApi
from backend.poll_leases import PollLeases, channel_key
from backend.routes import load_routes
from backend.tenants import UsersTableTenants
from infra.local.stack.template_model import load_template
from tests.events.capture_stream_events import client as moto_client
from tests.events.capture_stream_events import create_backend_tables
from tests.support.local_stack import TEMPLATE
from tests.support.moto_server import ROUTES_FILE, moto_server

ROUTES = load_routes(ROUTES_FILE)
RETENTION_S = 3600
ALICE = "us-east-1:11111111-1111-4111-8111-111111111111"
BOB = "us-east-1:22222222-2222-4222-8222-222222222222"
TODOS = f"users/{ALICE}/todos"


@pytest.fixture(scope="module")
def endpoint() -> Any:
    with moto_server() as url:
        yield url


@pytest.fixture
def tables(endpoint: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = create_backend_tables(moto_client("dynamodb", endpoint), suffix)
    names["PollLeasesTable"] = f"PollLeases{suffix}"
    load_template(TEMPLATE).create_table(
        moto_client("dynamodb", endpoint), "PollLeasesTable", names["PollLeasesTable"]
    )
    return names


def store_for(endpoint: str, tables: dict[str, str], clock: Any = time.time) -> ChangeStore:
    return ChangeStore(
        moto_client("dynamodb", endpoint),
        tables["SequenceTable"],
        tables["ChangeLogTable"],
        RETENTION_S,
        clock=clock,
    )


def add_changes(store: ChangeStore, channel: str, count: int) -> None:
    def render(event_id: str):
        return lambda seq, epoch: json.dumps(
            {"v": 1, "channel": channel, "seq": seq, "epoch": epoch, "id": event_id}
        )

    ids = [uuid.uuid4().hex for _ in range(count)]
    results = store.commit([Candidate(channel, i, render(i)) for i in ids])
    assert all(not isinstance(r, Exception) for r in results)


def get(api: ChannelsApi, identity: str | None, path: str, **query: str) -> tuple[int, dict]:
    response = api.handle(
        {
            "resource": "/v1/channels/{channel+}",
            "httpMethod": "GET",
            "path": "/v1/channels/" + path,
            "pathParameters": {"channel": path},
            "queryStringParameters": query or None,
            "requestContext": {"identity": {"cognitoIdentityId": identity}},
        }
    )
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def api_and_store(endpoint: str, tables: dict[str, str]) -> tuple[ChannelsApi, ChangeStore]:
    store = store_for(endpoint, tables)
    tenants = UsersTableTenants(moto_client("dynamodb", endpoint), tables["UsersTable"])
    moto_client("dynamodb", endpoint).put_item(
        TableName=tables["UsersTable"],
        Item={
            "pk": {"S": f"identity#{ALICE}"},
            "identityId": {"S": ALICE},
            "tenants": {"L": [{"S": "acme"}]},
        },
    )
    return ChannelsApi(ROUTES, store, tenants, poll_interval_s=0.05), store


def test_a_channel_with_no_changes_has_head_0(api_and_store) -> None:
    api, _ = api_and_store
    assert get(api, ALICE, TODOS) == (200, {"channel": TODOS, "head": 0, "epoch": 1})
    status, body = get(api, ALICE, f"{TODOS}/changes", after="0")
    assert status == 200 and body["changes"] == [] and body["head"] == 0 and body["next"] == 0


def test_head_and_changes_after_a_cursor(api_and_store) -> None:
    api, store = api_and_store
    add_changes(store, TODOS, 5)
    assert get(api, ALICE, TODOS)[1]["head"] == 5
    status, body = get(api, ALICE, f"{TODOS}/changes", after="1", limit="2")
    assert status == 200
    assert [c["seq"] for c in body["changes"]] == [2, 3]
    assert body["next"] == 3 and body["more"] is True and body["head"] == 5
    status, body = get(api, ALICE, f"{TODOS}/changes", after="3")
    assert [c["seq"] for c in body["changes"]] == [4, 5] and body["more"] is False


def test_only_authorised_identities_read(api_and_store) -> None:
    api, store = api_and_store
    add_changes(store, "tenants/acme/board", 1)
    assert get(api, BOB, TODOS)[0] == 403
    assert get(api, BOB, f"{TODOS}/changes")[0] == 403
    assert get(api, None, TODOS)[0] == 403
    assert get(api, ALICE, "tenants/acme/board")[1]["head"] == 1  # member of acme
    status, body = get(api, BOB, "tenants/acme/board")
    assert status == 403 and body["error"] == "forbidden" and body["message"]
    assert get(api, ALICE, "tenants/globex/board")[0] == 403
    assert get(api, BOB, "public/scores")[0] == 200


@pytest.mark.parametrize(
    ("path", "query", "named"),
    [
        (f"{TODOS}/changes", {"after": "-1"}, "after"),
        (f"{TODOS}/changes", {"after": "abc"}, "after"),
        (f"{TODOS}/changes", {"limit": "0"}, "limit"),
        (f"{TODOS}/changes", {"limit": "1001"}, "limit"),
        (f"{TODOS}/changes", {"wait": "21"}, "wait"),
        (f"{TODOS}/changes", {"wait": "soon"}, "wait"),
        (f"{TODOS}/changes", {"since": "3"}, "since"),
        (f"{TODOS}/changes", {"epoch": "0"}, "epoch"),
        (TODOS, {"after": "1"}, "after"),
        ("users/a b/todos", {}, "'a b'"),
        ("users/x/todos/a/b/c/d", {}, "slashes"),
        ("nothing/here", {}, "matches no route"),
        ("", {}, "missing"),
    ],
)
def test_malformed_requests_are_400_naming_the_problem(api_and_store, path, query, named) -> None:
    api, _ = api_and_store
    status, body = get(api, ALICE, path, **query)
    assert status == 400 and body["error"] == "bad_request"
    assert named in body["message"]


def test_other_methods_and_paths() -> None:
    api = ChannelsApi(ROUTES, store=None, tenants=lambda i: frozenset())  # type: ignore[arg-type]
    identity = {"identity": {"cognitoIdentityId": ALICE}}
    answer = api.handle(
        {"httpMethod": "POST", "path": f"/v1/channels/{TODOS}", "requestContext": identity}
    )
    assert answer["statusCode"] == 405
    answer = api.handle({"httpMethod": "GET", "path": "/v2/x", "requestContext": identity})
    assert answer["statusCode"] == 404 and json.loads(answer["body"])["error"] == "not_found"


def test_cursor_beyond_head_or_from_another_epoch_is_410(api_and_store) -> None:
    api, store = api_and_store
    add_changes(store, TODOS, 2)
    status, body = get(api, ALICE, f"{TODOS}/changes", after="7")
    assert status == 410 and body == {**body, "error": "cursor_expired", "head": 2, "epoch": 1}
    status, body = get(api, ALICE, f"{TODOS}/changes", after="1", epoch="2")
    assert status == 410 and body["head"] == 2 and body["epoch"] == 1
    assert get(api, ALICE, f"{TODOS}/changes", after="1", epoch="1")[0] == 200


def test_cursor_older_than_the_retention_is_410_never_a_silent_gap(
    endpoint: str, tables: dict[str, str]
) -> None:
    old = store_for(endpoint, tables, clock=lambda: time.time() - RETENTION_S - 60)
    add_changes(old, TODOS, 2)  # written long ago: past the retention (TTL not yet swept)
    add_changes(store_for(endpoint, tables), TODOS, 2)
    api = ChannelsApi(ROUTES, store_for(endpoint, tables), lambda i: frozenset())
    status, body = get(api, ALICE, f"{TODOS}/changes", after="0")
    assert status == 410
    assert body["error"] == "cursor_expired" and body["head"] == 4 and body["epoch"] == 1
    assert "retention" in body["message"]
    status, body = get(api, ALICE, f"{TODOS}/changes", after="2")
    assert status == 200 and [c["seq"] for c in body["changes"]] == [3, 4]


def test_long_poll_returns_as_soon_as_a_change_arrives(api_and_store) -> None:
    api, store = api_and_store
    add_changes(store, TODOS, 1)
    timer = threading.Timer(0.5, add_changes, (store, TODOS, 1))
    timer.start()
    started = time.monotonic()
    status, body = get(api, ALICE, f"{TODOS}/changes", after="1", wait="10")
    elapsed = time.monotonic() - started
    timer.join()
    assert status == 200 and [c["seq"] for c in body["changes"]] == [2]
    assert 0.4 < elapsed < 5


def test_long_poll_times_out_empty(api_and_store) -> None:
    api, _ = api_and_store
    started = time.monotonic()
    status, body = get(api, ALICE, f"{TODOS}/changes", after="0", wait="1")
    assert status == 200 and body["changes"] == [] and body["next"] == 0
    assert 0.9 < time.monotonic() - started < 3


def test_the_lambda_handler_wires_itself_from_the_environment(
    endpoint: str, tables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_changes(store_for(endpoint, tables), TODOS, 3)
    env = {
        "TIDINGS_STAGE": "dev",
        "TIDINGS_TABLE_CHANGELOGTABLE": tables["ChangeLogTable"],
        "TIDINGS_TABLE_SEQUENCETABLE": tables["SequenceTable"],
        "TIDINGS_TABLE_USERSTABLE": tables["UsersTable"],
        "TIDINGS_TABLE_POLLLEASESTABLE": tables["PollLeasesTable"],
        "TIDINGS_ROUTES_FILE": str(ROUTES_FILE),
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",  # Lambda sets both
        "AWS_ACCESS_KEY_ID": "moto",
        "AWS_SECRET_ACCESS_KEY": "moto",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws_clients.clear_caches()
    channels_module.clear_caches()
    try:
        from backend.channels_handler import lambda_handler

        event = {
            "httpMethod": "GET",
            "path": f"/v1/channels/{TODOS}/changes",
            "pathParameters": {"channel": f"{TODOS}/changes"},
            "queryStringParameters": {"after": "1"},
            "requestContext": {"identity": {"cognitoIdentityId": ALICE}},
        }
        answer = lambda_handler(event, None)
        assert answer["statusCode"] == 200, answer["body"]
        assert [c["seq"] for c in json.loads(answer["body"])["changes"]] == [2, 3]
    finally:
        aws_clients.clear_caches()
        channels_module.clear_caches()


# ------------------------------------------------------------------ long-poll limits


def limited_api(endpoint: str, tables: dict[str, str], cap: int) -> ChannelsApi:
    dynamodb = moto_client("dynamodb", endpoint)
    dynamodb.put_item(
        TableName=tables["UsersTable"],
        Item={
            "pk": {"S": f"identity#{ALICE}"},
            "identityId": {"S": ALICE},
            "tenants": {"L": [{"S": "acme"}]},
        },
    )
    return ChannelsApi(
        ROUTES,
        store_for(endpoint, tables),
        UsersTableTenants(dynamodb, tables["UsersTable"]),
        poll_interval_s=0.05,
        leases=PollLeases(dynamodb, tables["PollLeasesTable"], cap),
    )


def get_with_headers(
    api: ChannelsApi, identity: str, path: str, **query: str
) -> tuple[int, dict, dict]:
    response = api.handle(
        {
            "httpMethod": "GET",
            "path": "/v1/channels/" + path,
            "pathParameters": {"channel": path},
            "queryStringParameters": query or None,
            "requestContext": {"identity": {"cognitoIdentityId": identity}},
        }
    )
    return response["statusCode"], json.loads(response["body"]), response["headers"]


class Waiting:
    """A long-poll in a thread; ``result`` once it answered."""

    def __init__(self, api: ChannelsApi, identity: str, channel: str, wait: str) -> None:
        self.result: tuple[int, dict, dict] | None = None
        self.thread = threading.Thread(
            target=lambda: setattr(
                self,
                "result",
                get_with_headers(api, identity, f"{channel}/changes", after="0", wait=wait),
            )
        )
        self.thread.start()

    def join(self) -> tuple[int, dict, dict]:
        self.thread.join(30)
        assert self.result is not None
        return self.result


def wait_until_held(endpoint: str, tables: dict[str, str], identity: str, channel: str) -> None:
    """Until the lease item of ``identity``'s wait on ``channel`` exists (the wait started)."""
    dynamodb = moto_client("dynamodb", endpoint)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = dynamodb.get_item(
            TableName=tables["PollLeasesTable"],
            Key={"pk": {"S": channel_key(identity, channel)}},
            ConsistentRead=True,
        )
        if "Item" in found:
            return
        time.sleep(0.02)
    raise AssertionError(f"the wait of {identity} on {channel} never took its lease")


def test_a_second_concurrent_wait_on_one_channel_is_429_at_once(
    endpoint: str, tables: dict[str, str]
) -> None:
    api = limited_api(endpoint, tables, cap=4)
    first = Waiting(api, ALICE, TODOS, "3")
    wait_until_held(endpoint, tables, ALICE, TODOS)
    started = time.monotonic()
    status, body, headers = get_with_headers(api, ALICE, f"{TODOS}/changes", after="0", wait="3")
    assert time.monotonic() - started < 2.5  # answered without waiting its 3 s
    assert status == 429 and set(body) == {"error", "message"}
    assert body["error"] == "too_many_waits" and TODOS in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 3
    # reading without waiting needs no slot, and another identity is not held up
    assert get(api, ALICE, f"{TODOS}/changes", after="0")[0] == 200
    assert get_with_headers(api, BOB, "public/scores/changes", after="0", wait="0.2")[0] == 200
    assert first.join()[0] == 200
    # the slot was given back when the first wait answered: it is reusable
    status, _, _ = get_with_headers(api, ALICE, f"{TODOS}/changes", after="0", wait="0.2")
    assert status == 200


def test_an_identity_may_hold_only_its_cap_of_waits(endpoint: str, tables: dict[str, str]) -> None:
    api = limited_api(endpoint, tables, cap=2)
    waits = [Waiting(api, ALICE, TODOS, "3"), Waiting(api, ALICE, "public/scores", "3")]
    wait_until_held(endpoint, tables, ALICE, TODOS)
    wait_until_held(endpoint, tables, ALICE, "public/scores")
    status, body, headers = get_with_headers(
        api, ALICE, "tenants/acme/board/changes", after="0", wait="3"
    )
    assert status == 429 and body["error"] == "too_many_waits"
    assert "2 waiting polls" in body["message"]
    assert int(headers["Retry-After"]) >= 1
    # Bob's waits are his own
    assert get_with_headers(api, BOB, "public/scores/changes", after="0", wait="0.2")[0] == 200
    add_changes(api.store, TODOS, 1)  # ends the first wait early: its slot is free again
    assert [c["seq"] for c in waits[0].join()[1]["changes"]] == [1]
    status, _, _ = get_with_headers(api, ALICE, "tenants/acme/board/changes", after="0", wait="0.2")
    assert status == 200
    assert waits[1].join()[0] == 200

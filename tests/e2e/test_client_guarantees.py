"""The Python clients' guarantees against the whole local stack where they need the local
stack's own powers: each change once and in order through connection cuts, a gateway restart
and a WebSocket outage (poll fallback). Each test runs on the threaded client and on the
async one (``async for change in sub`` on an event loop). Continuity loss and refusals, which
need only a stack's outputs, are in the acceptance suite (tests/acceptance/)."""

from __future__ import annotations

import random
import threading
import time
from contextlib import AbstractContextManager

import pytest

from client_sdk import ClientOptions, Password, Tidings
from infra.local.stack.local_stack import LocalStack
from tests.support.client_kinds import KINDS, ClientUnderTest, open_client
from tests.support.local_stack import add_user
from tests.support.recorder import Recorder, assert_exactly_once_in_order

PASSWORD = "correct-horse-battery"


def write_todos(
    stack: LocalStack, owner: str, count: int, start: int = 0, pause_s: float = 0.0
) -> None:
    dynamodb = stack.client("dynamodb")
    for n in range(start, start + count):
        dynamodb.put_item(
            TableName=stack.tables["TodosTable"],
            Item={"owner": {"S": owner}, "id": {"S": f"item{n % 10}"}, "n": {"N": str(n)}},
        )
        if pause_s:
            time.sleep(pause_s)


def client_options(stack: LocalStack, **overrides) -> ClientOptions:
    return ClientOptions(
        ca_file=stack.ca_file,
        cognito_endpoint=stack.identity_url,
        min_backoff_ms=200,
        max_backoff_ms=2000,
        **overrides,
    )


def connect(stack: LocalStack, user: str, **overrides) -> Tidings:
    """The threaded client, signed in as ``user``."""
    options = client_options(stack, **overrides)
    return Tidings.connect(stack.api_url, Password(user, PASSWORD), options=options)


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    for kind in KINDS:
        for user in ("cut", "restart", "poll"):
            add_user(shared_stack, f"{user}-{kind}", PASSWORD, {"acme"})
    return shared_stack


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def client_of(
    kind: str, stack: LocalStack, user: str, **overrides
) -> AbstractContextManager[ClientUnderTest]:
    """The client of ``kind`` signed in as ``user`` (each kind its own user)."""
    options = client_options(stack, **overrides)
    return open_client(kind, stack.api_url, Password(f"{user}-{kind}", PASSWORD), options)


def test_500_changes_once_and_in_order_through_5_connection_cuts(
    stack: LocalStack, kind: str
) -> None:
    recorder = Recorder()
    with client_of(kind, stack, "cut") as client:
        client.subscribe("users/me/todos", recorder)
        writer = threading.Thread(
            target=write_todos, args=(stack, client.identity_id, 500), kwargs={"pause_s": 0.01}
        )
        writer.start()
        rng = random.Random(7)
        cuts = 0
        while cuts < 5:
            time.sleep(rng.uniform(0.3, 1.2))
            cuts += stack.run_on_gateway(stack.gateway.drop_clients, client.identity_id) > 0
        writer.join()
        assert recorder.wait_for(500, 90)
        time.sleep(1.0)  # any late duplicate would show up now
        assert client.stats["reconnects"] >= 5
    assert_exactly_once_in_order(recorder, 500)
    assert recorder.lost == []


def test_gateway_restart_mid_stream_loses_nothing(stack: LocalStack, kind: str) -> None:
    recorder = Recorder()
    with client_of(kind, stack, "restart") as client:
        client.subscribe("users/me/todos", recorder)
        writer = threading.Thread(
            target=write_todos, args=(stack, client.identity_id, 200), kwargs={"pause_s": 0.02}
        )
        writer.start()
        time.sleep(1.0)
        stack.restart_gateway(down_s=1.0)
        writer.join()
        assert recorder.wait_for(200, 120)
        time.sleep(1.0)
    assert_exactly_once_in_order(recorder, 200)
    assert recorder.lost == []


def test_websocket_blocked_falls_back_to_polling_then_returns_to_push(
    stack: LocalStack, kind: str
) -> None:
    recorder = Recorder()
    with client_of(kind, stack, "poll", fallback_after_s=2.0, poll_wait_s=2.0) as client:
        client.subscribe("users/me/todos", recorder)
        write_todos(stack, client.identity_id, 20)
        assert recorder.wait_for(20, 30) and client.state in ("live", "catching_up")
        stack.run_on_gateway(stack.gateway.block_mqtt)
        try:
            deadline = time.time() + 30
            while client.state != "polling" and time.time() < deadline:
                time.sleep(0.2)
            assert client.state == "polling"
            write_todos(stack, client.identity_id, 50, start=20)
            assert recorder.wait_for(70, 60)
            assert client.state == "polling" and client.stats["polls"] > 0
        finally:
            stack.run_on_gateway(stack.gateway.unblock_mqtt)
        deadline = time.time() + 60
        while client.state not in ("live", "catching_up") and time.time() < deadline:
            time.sleep(0.2)
        assert client.state in ("live", "catching_up")
        write_todos(stack, client.identity_id, 30, start=70)
        assert recorder.wait_for(100, 60)
        time.sleep(1.0)
    assert_exactly_once_in_order(recorder, 100)
    assert recorder.lost == []

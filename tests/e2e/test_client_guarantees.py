"""The Python client's guarantees against the whole local stack: each change once and in order
through connection cuts, a gateway restart, a WebSocket outage (poll fallback), credential
and token expiry; continuity loss reported; another user's channel refused."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from client_sdk import AccessDenied, ClientOptions, ContinuityLost, Tidings
from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, stack_config

PASSWORD = "correct-horse-battery"


class Recorder:
    """Collects what the application callback sees."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.lost: list[tuple[str, ContinuityLost]] = []
        self._changed = threading.Condition()

    def on_change(self, change) -> None:
        with self._changed:
            self.seqs.append(int(change["seq"]))
            self._changed.notify_all()

    def on_lost(self, channel: str, lost: ContinuityLost) -> None:
        with self._changed:
            self.lost.append((channel, lost))
            self._changed.notify_all()

    def wait_for(self, last_seq: int, timeout: float) -> bool:
        deadline = time.time() + timeout
        with self._changed:
            while not self.seqs or self.seqs[-1] < last_seq:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True


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


def connect(stack: LocalStack, user: str, **overrides) -> Tidings:
    options = ClientOptions(
        ca_file=stack.ca_file,
        cognito_endpoint=stack.identity_url,
        min_backoff_ms=200,
        max_backoff_ms=2000,
        **overrides,
    )
    return Tidings.connect(
        stack.api_url, "password", username=user, password=PASSWORD, options=options
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(stack_config()) as running:
        for user in ("cut", "restart", "poll", "lost", "alice", "bob"):
            add_user(running, user, PASSWORD, {"acme"})
        yield running


def assert_exactly_once_in_order(recorder: Recorder, count: int) -> None:
    assert recorder.seqs == list(range(1, count + 1)), (
        f"{len(recorder.seqs)} deliveries; first problem near "
        f"{next((i for i, s in enumerate(recorder.seqs) if s != i + 1), None)}"
    )


def test_500_changes_once_and_in_order_through_5_connection_cuts(stack: LocalStack) -> None:
    recorder = Recorder()
    with connect(stack, "cut") as client:
        client.subscribe("users/me/todos", recorder.on_change, on_continuity_lost=recorder.on_lost)
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


def test_gateway_restart_mid_stream_loses_nothing(stack: LocalStack) -> None:
    recorder = Recorder()
    with connect(stack, "restart") as client:
        client.subscribe("users/me/todos", recorder.on_change)
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


def test_websocket_blocked_falls_back_to_polling_then_returns_to_push(
    stack: LocalStack,
) -> None:
    recorder = Recorder()
    with connect(stack, "poll", fallback_after_s=2.0, poll_wait_s=2.0) as client:
        client.subscribe("users/me/todos", recorder.on_change)
        write_todos(stack, client.identity_id, 20)
        assert recorder.wait_for(20, 30) and client.mode == "push"
        stack.run_on_gateway(stack.gateway.block_mqtt)
        try:
            deadline = time.time() + 30
            while client.mode != "poll" and time.time() < deadline:
                time.sleep(0.2)
            assert client.mode == "poll"
            write_todos(stack, client.identity_id, 50, start=20)
            assert recorder.wait_for(70, 60)
            assert client.mode == "poll" and client.stats["polls"] > 0
        finally:
            stack.run_on_gateway(stack.gateway.unblock_mqtt)
        deadline = time.time() + 60
        while client.mode != "push" and time.time() < deadline:
            time.sleep(0.2)
        assert client.mode == "push"
        write_todos(stack, client.identity_id, 30, start=70)
        assert recorder.wait_for(100, 60)
        time.sleep(1.0)
    assert_exactly_once_in_order(recorder, 100)


def test_cursor_older_than_retention_reports_continuity_lost(stack: LocalStack) -> None:
    recorder = Recorder()
    with connect(stack, "lost") as client:
        channel = f"users/{client.identity_id}/todos"
        write_todos(stack, client.identity_id, 5)
        dynamodb = stack.client("dynamodb")
        log = stack.tables["ChangeLogTable"]
        deadline = time.time() + 30
        while time.time() < deadline:
            count = dynamodb.query(
                TableName=log,
                KeyConditionExpression="channel = :c",
                ExpressionAttributeValues={":c": {"S": channel}},
            )["Count"]
            if count == 5:
                break
            time.sleep(0.2)
        for seq in (1, 2, 3):  # DynamoDB's TTL removed the oldest entries
            dynamodb.delete_item(
                TableName=log, Key={"channel": {"S": channel}, "seq": {"N": str(seq)}}
            )
        client.subscribe(
            "users/me/todos", recorder.on_change, after=0, on_continuity_lost=recorder.on_lost
        )
        deadline = time.time() + 30
        while not recorder.lost and time.time() < deadline:
            time.sleep(0.1)
        assert recorder.lost and recorder.lost[0][0] == channel
        assert recorder.lost[0][1].head == 5 and recorder.lost[0][1].reason == "cursor_expired"
        write_todos(stack, client.identity_id, 1, start=5)
        assert recorder.wait_for(6, 30)
    assert recorder.seqs == [6]


def test_another_users_channel_is_refused_at_once(stack: LocalStack) -> None:
    with connect(stack, "alice") as alice, connect(stack, "bob") as bob:
        started = time.time()
        with pytest.raises(AccessDenied):
            bob.subscribe(f"users/{alice.identity_id}/todos", lambda c: None)
        assert time.time() - started < 10  # refused, not retried forever
        assert bob.subscribe("users/me/todos", lambda c: None).cursor == 0

"""The Python client under the long-poll limits: polling more channels than its identity may
long-poll at once, it honours 429 ``too_many_waits`` and its ``Retry-After`` (no stream of
refused requests) and still delivers every change of every channel once and in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from client_sdk import ClientOptions, Password, Tidings
from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, stack_config

PASSWORD = "poll-limits-password-1"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    config = stack_config(parameters={"MaxWaitsPerIdentity": "1"})
    with LocalStack(config) as running:
        add_user(running, "polly", PASSWORD, {"acme"})
        yield running


class Seen:
    def __init__(self) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.changed = threading.Condition()

    def on_change(self, change) -> None:
        with self.changed:
            self.seqs.setdefault(change["channel"], []).append(int(change["seq"]))
            self.changed.notify_all()

    def wait_for(self, expected: dict[str, list[int]], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.seqs == expected, timeout)


def test_polling_beyond_the_wait_cap_backs_off_and_keeps_every_change(stack: LocalStack) -> None:
    options = ClientOptions(
        ca_file=stack.ca_file,
        cognito_endpoint=stack.identity_url,
        fallback_after_s=1.0,
        poll_wait_s=3.0,
        min_backoff_ms=200,
        max_backoff_ms=2000,
    )
    seen = Seen()
    with Tidings.connect(stack.api_url, Password("polly", PASSWORD), options=options) as client:
        mine = f"users/{client.identity_id}/todos"
        channels = [mine, "public/scores", "tenants/acme/board"]
        for channel in channels:
            client.subscribe(channel, seen.on_change)
        stack.run_on_gateway(stack.gateway.block_mqtt)
        try:
            deadline = time.time() + 30
            while client.state != "polling" and time.time() < deadline:
                time.sleep(0.1)
            assert client.state == "polling"
            # three channels polled, one long-poll allowed: the others are refused with 429
            calls_before = client.stats["api_calls"]
            time.sleep(6.0)
            calls = client.stats["api_calls"] - calls_before
            assert calls < 50, f"{calls} API calls in 6 s: refused polls are not backed off"
            dynamodb = stack.client("dynamodb")
            for n in range(3):
                dynamodb.put_item(
                    TableName=stack.tables["TodosTable"],
                    Item={"owner": {"S": client.identity_id}, "id": {"S": f"t{n}"}},
                )
                dynamodb.put_item(
                    TableName=stack.tables["ScoresTable"],
                    Item={"game": {"S": "go"}, "player": {"S": f"p{n}"}, "score": {"N": "1"}},
                )
                dynamodb.put_item(
                    TableName=stack.tables["BoardsTable"],
                    Item={"tenant": {"S": "acme"}, "id": {"S": f"b{n}"}},
                )
            expected = {channel: [1, 2, 3] for channel in channels}
            assert seen.wait_for(expected, 60), seen.seqs
            assert client.state == "polling"
            time.sleep(1.0)  # a late duplicate would show up now
            assert seen.seqs == expected
        finally:
            stack.run_on_gateway(stack.gateway.unblock_mqtt)

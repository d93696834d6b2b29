"""The stream pump against moto's DynamoDB Streams: a throttled publisher invocation (the
function never ran) is retried until it runs (not counted as a failed attempt, never bisected,
never sent to the on-failure destination), and a ``LATEST`` mapping reads its stream from the
moment ``start()`` returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.functions.runtime import THROTTLED, FunctionError
from infra.local.functions.stream_pump import MappingSettings, StreamPump
from tests.support.moto_server import moto_server
from tests.support.streams import todos_stream


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def stream(endpoint: str) -> tuple[Any, str]:
    """A fresh Todos table with 10 writes; (streams client, stream ARN)."""
    return todos_stream(endpoint)


class ThrottledFirst:
    """Throttled ``throttles`` times (as the local Lambda runtime refuses), then runs."""

    def __init__(self, throttles: int) -> None:
        self.throttles = throttles
        self.calls = 0
        self.delivered: list[int] = []
        self.batch_sizes: list[int] = []

    def __call__(self, event: dict) -> dict:
        self.calls += 1
        if self.throttles:
            self.throttles -= 1
            raise FunctionError("Publisher", THROTTLED, "Rate Exceeded")
        self.batch_sizes.append(len(event["Records"]))
        self.delivered += [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in event["Records"]]
        return {"batchItemFailures": []}


# no retry allowed and bisecting on: a throttle counted as a failure would lose the batch
STRICT = MappingSettings(batch_size=10, bisect_on_error=True, maximum_retry_attempts=0)


def test_a_throttled_batch_is_retried_until_it_runs_and_never_lost(stream) -> None:
    streams, arn = stream
    failed: list[dict] = []
    handler = ThrottledFirst(throttles=4)
    pump = StreamPump(streams, arn, handler, STRICT, on_failure=failed.append, poll_interval_s=0.01)
    assert pump.drain(timeout_s=30) == 10
    assert handler.delivered == list(range(10)) and handler.batch_sizes == [10]  # not bisected
    assert failed == [] and pump.throttled == 4 and handler.calls == 5
    assert all(shard.attempts == 0 and shard.throttles == 0 for shard in pump.shards.values())


def test_the_running_pump_backs_off_and_retries_throttles(stream) -> None:
    streams, arn = stream
    failed: list[dict] = []
    handler = ThrottledFirst(throttles=6)
    pump = StreamPump(streams, arn, handler, STRICT, on_failure=failed.append, poll_interval_s=0.01)
    pump.start()
    try:
        deadline = time.monotonic() + 30
        while len(handler.delivered) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pump.stop()
    assert handler.delivered == list(range(10)) and failed == []
    assert pump.throttled == 6


def test_a_function_error_still_counts_and_goes_to_the_destination(stream) -> None:
    streams, arn = stream
    failed: list[dict] = []

    def broken(event: dict) -> dict:
        raise FunctionError("Publisher", "Runtime.ExitError", "boom")

    settings = MappingSettings(batch_size=10, maximum_retry_attempts=0)
    pump = StreamPump(
        streams, arn, broken, settings, on_failure=failed.append, poll_interval_s=0.01
    )
    pump.drain(timeout_s=30)
    assert len(failed) == 1 and failed[0]["batchSize"] == 10 and pump.throttled == 0


class _SlowIterators:
    """moto's Streams client, with ``GetShardIterator`` answering late (as under load)."""

    def __init__(self, streams: Any) -> None:
        self._streams = streams

    def __getattr__(self, name: str) -> Any:
        return getattr(self._streams, name)

    def get_shard_iterator(self, **params: Any) -> Any:
        time.sleep(1.0)
        return self._streams.get_shard_iterator(**params)


def test_a_latest_mapping_delivers_a_write_made_right_after_start(endpoint: str) -> None:
    """``start()`` returns once the mapping reads its stream: with ``LATEST``, a write made
    right after it is delivered, however late the shard iterators come."""
    from tests.events.capture_stream_events import client

    streams, arn = todos_stream(endpoint, writes=0)
    table = arn.split("/")[1]
    handler = ThrottledFirst(throttles=0)
    latest = MappingSettings(batch_size=10, starting_position="LATEST")
    pump = StreamPump(_SlowIterators(streams), arn, handler, latest, poll_interval_s=0.05)
    pump.start()
    try:
        client("dynamodb", endpoint).put_item(
            TableName=table, Item={"owner": {"S": "o"}, "id": {"S": "late"}, "n": {"N": "7"}}
        )
        deadline = time.monotonic() + 30
        while not handler.delivered and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pump.stop()
    assert handler.delivered == [7]

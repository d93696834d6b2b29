"""The local stream pump's event source mapping semantics, against moto's DynamoDB Streams."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from infra.local.functions.stream_pump import MappingSettings, StreamPump
from infra.local.functions.streams_wire import WireStreamsClient
from tests.events.capture_stream_events import client, create_example_tables
from tests.support.moto_server import moto_server
from tests.support.streams import todos_stream


@pytest.fixture(scope="module")
def endpoint() -> Any:
    with moto_server() as url:
        yield url


@pytest.fixture
def stream(endpoint: str) -> tuple[Any, str]:
    """A fresh Todos table with 10 writes; (streams client, stream ARN)."""
    return todos_stream(endpoint)


class Handler:
    """Records every batch; answers with the responses queued in ``answers`` (then success)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.batches: list[list[int]] = []

    def __call__(self, event: dict) -> Any:
        numbers = [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in event["Records"]]
        self.batches.append(numbers)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(event)
        return answer or {"batchItemFailures": []}


def fail_at(position: int):
    def answer(event: dict) -> dict:
        number = event["Records"][position]["dynamodb"]["SequenceNumber"]
        return {"batchItemFailures": [{"itemIdentifier": number}]}

    return answer


def test_records_arrive_as_lambda_events_in_batches(stream) -> None:
    streams, arn = stream
    seen: list[dict] = []
    pump = StreamPump(streams, arn, lambda e: seen.extend(e["Records"]), MappingSettings(4))
    assert pump.drain() == 10
    assert pump.invocations == 3
    first = seen[0]
    assert first["eventSourceARN"] == arn and first["eventSource"] == "aws:dynamodb"
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    assert [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in seen] == list(range(10))


def test_partial_failure_retries_from_the_reported_record(stream) -> None:
    streams, arn = stream
    handler = Handler(fail_at(2))
    pump = StreamPump(streams, arn, handler, MappingSettings(batch_size=5))
    assert pump.drain() == 10
    assert handler.batches == [[0, 1, 2, 3, 4], [2, 3, 4, 5, 6], [7, 8, 9]]


def test_an_error_or_unknown_identifier_retries_the_whole_batch(stream) -> None:
    streams, arn = stream
    unknown = {"batchItemFailures": [{"itemIdentifier": "nope"}]}
    handler = Handler(RuntimeError("boom"), unknown)
    pump = StreamPump(streams, arn, handler, MappingSettings(batch_size=10))
    assert pump.drain() == 10
    assert handler.batches == [list(range(10))] * 3


def test_without_reported_failures_a_response_acknowledges_everything(stream) -> None:
    streams, arn = stream
    handler = Handler(fail_at(3))
    settings = MappingSettings(batch_size=10, report_batch_item_failures=False)
    assert StreamPump(streams, arn, handler, settings).drain() == 10
    assert handler.batches == [list(range(10))]


def test_bisect_splits_a_failing_batch(stream) -> None:
    streams, arn = stream
    handler = Handler(RuntimeError("whole"), RuntimeError("first half"))
    settings = MappingSettings(batch_size=10, bisect_on_error=True)
    assert StreamPump(streams, arn, handler, settings).drain() == 10
    assert handler.batches == [list(range(10)), list(range(5)), [0, 1, 2], list(range(3, 10))]


def test_after_the_retries_the_failed_records_go_to_the_on_failure_destination(stream) -> None:
    streams, arn = stream
    poison = Handler(*[fail_at(1)] + [fail_at(0)] * 3)  # record 1 always fails
    dead: list[dict] = []
    settings = MappingSettings(batch_size=4, maximum_retry_attempts=2)
    pump = StreamPump(streams, arn, poison, settings, on_failure=dead.append)
    assert pump.drain() == 10
    assert poison.batches == [[0, 1, 2, 3]] + [[1, 2, 3, 4]] * 3 + [[5, 6, 7, 8], [9]]
    (failure,) = dead
    assert failure["batchSize"] == 4 and failure["streamArn"] == arn


def test_records_written_during_an_invocation_form_the_next_batch_together(endpoint) -> None:
    """Running in threads, the batch after a slow invocation holds every record written
    meanwhile (the invoking thread reads them before it cuts the next batch)."""
    dynamodb = client("dynamodb", endpoint)
    suffix = uuid.uuid4().hex[:8]
    create_example_tables(dynamodb, suffix)
    table = "Todos" + suffix
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    entered, release = threading.Event(), threading.Event()
    handler = Handler()

    def slow_first(event: dict) -> Any:
        answer = handler(event)
        if len(handler.batches) == 1:
            entered.set()
            assert release.wait(10)
        return answer

    def write(number: int) -> None:
        dynamodb.put_item(
            TableName=table,
            Item={"owner": {"S": "o"}, "id": {"S": f"i{number}"}, "n": {"N": str(number)}},
        )
        pump.wake()  # what the local stack's notifier does on every stream record

    pump = StreamPump(
        client("dynamodbstreams", endpoint),
        arn,
        slow_first,
        MappingSettings(100),
        poll_interval_s=5.0,
    )
    pump.start()
    try:
        write(0)
        assert entered.wait(10)
        write(1)
        time.sleep(0.3)  # the reader is woken while the invocation still runs
        for number in range(2, 6):
            write(number)
        time.sleep(0.3)
        release.set()
        deadline = time.monotonic() + 10
        while sum(len(b) for b in handler.batches) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        release.set()
        pump.stop()
    assert handler.batches == [[0], [1, 2, 3, 4, 5]]


def test_the_wire_client_gives_the_pump_the_same_events_as_boto3(endpoint) -> None:
    """Records read as DynamoDB's JSON (WireStreamsClient) become the same Lambda events as
    records read through boto3, for every attribute type and event kind."""
    dynamodb = client("dynamodb", endpoint)
    suffix = uuid.uuid4().hex[:8]
    create_example_tables(dynamodb, suffix)
    table = "Todos" + suffix
    item = {
        "owner": {"S": "o"},
        "id": {"S": "all"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\xff"},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "ss": {"SS": ["x", "y"]},
        "ns": {"NS": ["1", "2"]},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": True}, {"B": b"\x03"}]}}},
    }
    dynamodb.put_item(TableName=table, Item=item)
    dynamodb.put_item(TableName=table, Item={**item, "n": {"N": "2"}})
    dynamodb.delete_item(TableName=table, Key={"owner": {"S": "o"}, "id": {"S": "all"}})
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = client("dynamodbstreams", endpoint)
    wire = WireStreamsClient(streams, Credentials("local", "local"))
    events: list[list[dict]] = []
    for reader in (streams, wire):
        seen: list[dict] = []
        assert StreamPump(reader, arn, lambda e, seen=seen: seen.extend(e["Records"])).drain() == 3
        events.append(seen)
    assert [r["eventName"] for r in events[0]] == ["INSERT", "MODIFY", "REMOVE"]
    assert events[0][0]["dynamodb"]["NewImage"]["b"] == {"B": "AP8="}  # base64, as Lambda's
    assert events[1] == events[0]


def test_the_wire_client_raises_boto3s_error_for_an_unknown_iterator(endpoint) -> None:
    streams = client("dynamodbstreams", endpoint)
    wire = WireStreamsClient(streams, Credentials("local", "local"))
    with pytest.raises(ClientError) as caught:
        wire.get_records(ShardIterator="not-an-iterator")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Invalid ShardIterator" in caught.value.response["Error"]["Message"]

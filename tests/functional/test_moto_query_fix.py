"""The local stack's fast DynamoDB Query answers exactly as moto's own query does.

moto's ``Table.query`` sorts the whole table for every call; the fix reads one partition and
bisects it. Both run here on the same tables with the same arguments, and over HTTP with
boto3 paging through a partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.local.motohost.fixes.query import apply_dynamodb_query_fix
from tests.events.capture_stream_events import client as moto_client
from tests.support.fuzz import examples
from tests.support.moto_server import moto_server

OPERATORS = ["EQ", "LT", "LE", "GT", "GE", "BETWEEN", None]


def _tables() -> dict[str, Any]:
    """Two in-process moto tables (number and string sort keys), three partitions each."""
    from moto.dynamodb.models import DynamoDBBackend

    backend = DynamoDBBackend("us-east-1", "123456789012")
    tables = {}
    for kind in ("N", "S"):
        name = f"t{kind}"
        backend.create_table(
            name,
            schema=[
                {"AttributeName": "channel", "KeyType": "HASH"},
                {"AttributeName": "seq", "KeyType": "RANGE"},
            ],
            throughput=None,
            attr=[
                {"AttributeName": "channel", "AttributeType": "S"},
                {"AttributeName": "seq", "AttributeType": kind},
            ],
            global_indexes=None,
            indexes=None,
            streams=None,
            billing_mode="PAY_PER_REQUEST",
            sse_specification=None,
            tags=[],
            deletion_protection_enabled=False,
            warm_throughput=None,
        )
        for channel in ("a", "b", "c"):
            # inserted out of order, with gaps, and with a few large items
            for n in [*range(60, 0, -3), *range(1, 60, 3), 7, 100]:
                value = str(n) if kind == "N" else f"{n:04d}"
                body = "x" * (300_000 if n % 29 == 0 else 10)
                backend.put_item(
                    name,
                    {"channel": {"S": channel}, "seq": {kind: value}, "body": {"S": body}},
                )
        tables[kind] = backend.get_table(name)
    return tables


TABLES = _tables()


def _value(kind: str, n: int) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType({kind: str(n) if kind == "N" else f"{n:04d}"})


def _run(query: Any, table: Any, args: tuple[Any, ...]) -> Any:
    items, scanned, last = query(table, *args)
    return [item.to_json() for item in items], scanned, last


@given(
    kind=st.sampled_from(["N", "S"]),
    channel=st.sampled_from(["a", "b", "zz"]),
    operator=st.sampled_from(OPERATORS),
    low=st.integers(-2, 105),
    span=st.integers(0, 40),
    limit=st.one_of(st.none(), st.integers(1, 30)),
    start=st.one_of(st.none(), st.integers(-2, 105)),
    forward=st.booleans(),
    projected=st.booleans(),
)
@settings(max_examples=examples(400), deadline=None)
def test_same_answer_as_moto(
    kind: str,
    channel: str,
    operator: str | None,
    low: int,
    span: int,
    limit: int | None,
    start: int | None,
    forward: bool,
    projected: bool,
) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    apply_dynamodb_query_fix()
    table = TABLES[kind]
    bounds = [] if operator is None else [_value(kind, low)]
    if operator == "BETWEEN":
        bounds.append(_value(kind, low + span))
    start_key = None
    if start is not None:
        start_key = {"channel": {"S": channel}, "seq": _value(kind, start).to_json()}
    args = (
        DynamoType({"S": channel}),
        operator,
        bounds,
        limit,
        start_key,
        forward,
        [["seq"]] if projected else None,
    )
    items, scanned, last = _run(Table.query, table, args)
    moto_items, moto_scanned, moto_last = _run(Table._tidings_original_query, table, args)
    assert (items, scanned) == (moto_items, moto_scanned)
    if moto_last is not None:
        assert last == moto_last
    # DynamoDB returns the last key whenever the page stopped at the limit
    if limit is not None and len(items) == limit:
        assert last is not None
        assert last["seq"].to_json() == items[-1]["Attributes"]["seq"]
    elif moto_last is None:
        assert last is None


@pytest.fixture()
def dynamodb() -> Iterator[Any]:
    with moto_server() as url:
        client = moto_client("dynamodb", url)
        client.create_table(
            TableName="log",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "channel", "AttributeType": "S"},
                {"AttributeName": "seq", "AttributeType": "N"},
            ],
            KeySchema=[
                {"AttributeName": "channel", "KeyType": "HASH"},
                {"AttributeName": "seq", "KeyType": "RANGE"},
            ],
        )
        yield client


def test_paging_over_http(dynamodb: Any) -> None:
    for channel in ("one", "two"):
        for seq in range(1, 251):
            dynamodb.put_item(
                TableName="log",
                Item={"channel": {"S": channel}, "seq": {"N": str(seq)}, "v": {"S": channel}},
            )
    seen: list[int] = []
    start: dict[str, Any] | None = None
    pages = 0
    while True:
        extra = {"ExclusiveStartKey": start} if start else {}
        answer = dynamodb.query(
            TableName="log",
            KeyConditionExpression="channel = :c AND seq > :after",
            ExpressionAttributeValues={":c": {"S": "two"}, ":after": {"N": "40"}},
            Limit=64,
            ConsistentRead=True,
            **extra,
        )
        pages += 1
        seen += [int(item["seq"]["N"]) for item in answer["Items"]]
        assert all(item["v"]["S"] == "two" for item in answer["Items"])
        start = answer.get("LastEvaluatedKey")
        if start is None:
            break
    assert seen == list(range(41, 251))
    assert pages == 4
    newest = dynamodb.query(
        TableName="log",
        KeyConditionExpression="channel = :c",
        ExpressionAttributeValues={":c": {"S": "one"}},
        ScanIndexForward=False,
        Limit=3,
    )
    assert [int(item["seq"]["N"]) for item in newest["Items"]] == [250, 249, 248]
    assert newest["LastEvaluatedKey"] == {"channel": {"S": "one"}, "seq": {"N": "248"}}


ITEM = {
    "pk": {"S": "k"},
    "n": {"N": "12.5"},
    "b": {"B": b"\x00\xffbytes"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "l": {"L": [{"S": "x"}, {"N": "3"}, {"B": b"\x03"}]},
    "m": {"M": {"inner": {"BOOL": True}, "nil": {"NULL": True}, "u": {"S": "é✓"}}},
    "f": {"BOOL": False},
}
KEY = {"pk": {"S": "k"}}
RESULTS = {
    "GetItem": [{"Item": ITEM}, {}],
    "PutItem": [{}, {"Attributes": ITEM}],
    "UpdateItem": [
        {"Attributes": ITEM, "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 1.0}}
    ],
    "DeleteItem": [{"Attributes": ITEM}],
    "Query": [
        {"Count": 2, "ScannedCount": 2, "Items": [ITEM, KEY], "LastEvaluatedKey": KEY},
        {"Count": 0, "ScannedCount": 0, "Items": []},
    ],
    "Scan": [{"Count": 1, "ScannedCount": 3, "Items": [ITEM]}],
    "BatchGetItem": [{"Responses": {"t": [ITEM, KEY]}, "UnprocessedKeys": {}}],
    "BatchWriteItem": [{"UnprocessedItems": {}}],
    "TransactGetItems": [{"Responses": [{"Item": ITEM}, {}]}],
    "TransactWriteItems": [{}],
}


@pytest.mark.parametrize(
    ("operation", "result"),
    [(operation, result) for operation, results in RESULTS.items() for result in results],
)
def test_item_answers_written_as_moto_writes_them(operation: str, result: dict) -> None:
    import json

    from moto.core.responses import ActionContext, get_serializer_class, get_service_model
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    from infra.local.motohost.fixes.item_responses import apply_dynamodb_response_fix

    apply_dynamodb_response_fix()
    service = get_service_model("dynamodb")
    context = ActionContext(
        service,
        service.operation_model(operation),
        get_serializer_class("dynamodb", "json"),
        DynamoHandler(),
    )
    fast = DynamoResult(result).execute_result(context)
    slow = DynamoResult._tidings_original_execute_result(DynamoResult(result), context)
    assert fast[0] == slow[0] == 200
    assert fast[1] == slow[1]
    assert json.loads(fast[2]) == json.loads(slow[2])


def test_other_answers_keep_moto_serializer(dynamodb: Any) -> None:
    table = dynamodb.describe_table(TableName="log")["Table"]
    assert table["CreationDateTime"].year >= 2024  # a timestamp, which json.dumps cannot write
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["channel", "seq"]


def test_every_type_round_trips_over_http(dynamodb: Any) -> None:
    item = {
        "channel": {"S": "c"},
        "seq": {"N": "1"},
        **{k: v for k, v in ITEM.items() if k != "pk"},
    }
    dynamodb.put_item(TableName="log", Item=item)
    key = {"channel": {"S": "c"}, "seq": {"N": "1"}}
    got = dynamodb.get_item(TableName="log", Key=key)["Item"]
    queried = dynamodb.query(
        TableName="log",
        KeyConditionExpression="channel = :c",
        ExpressionAttributeValues={":c": {"S": "c"}},
    )["Items"]
    batch = dynamodb.batch_get_item(RequestItems={"log": {"Keys": [key]}})["Responses"]["log"]
    for answer in (got, queried[0], batch[0]):
        assert answer["b"] == {"B": b"\x00\xffbytes"}
        assert sorted(answer["bs"]["BS"]) == [b"\x01", b"\x02"]
        assert answer["m"] == ITEM["m"]
        assert answer["l"] == ITEM["l"]
        assert sorted(answer["ns"]["NS"]) == ["1", "2"]
        assert answer["n"] == {"N": "12.5"}


def test_get_records_answers_written_as_moto_writes_them(dynamodb: Any) -> None:
    import json

    from moto.core.responses import (
        ActionContext,
        ActionResult,
        get_serializer_class,
        get_service_model,
    )
    from moto.dynamodbstreams.models import dynamodbstreams_backends
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    from infra.local.motohost.fixes.get_records import (
        apply_get_records_response_fix,
        get_records_body,
    )

    apply_get_records_response_fix()
    dynamodb.create_table(
        TableName="streamed",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.put_item(TableName="streamed", Item=ITEM)
    dynamodb.put_item(TableName="streamed", Item={**ITEM, "n": {"N": "13"}})  # MODIFY
    dynamodb.delete_item(TableName="streamed", Key=KEY)  # REMOVE
    streams = moto_client("dynamodbstreams", dynamodb.meta.endpoint_url)
    arn = dynamodb.describe_table(TableName="streamed")["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]  # over HTTP, fixed
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    assert records[1]["dynamodb"]["NewImage"]["m"] == ITEM["m"]
    assert records[0]["dynamodb"]["ApproximateCreationDateTime"].year >= 2024

    service = get_service_model("dynamodbstreams")
    context = ActionContext(
        service,
        service.operation_model("GetRecords"),
        get_serializer_class("dynamodbstreams", "json"),
        DynamoDBStreamsHandler(),
    )
    backend = dynamodbstreams_backends["123456789012"]["us-east-1"]
    result = backend.get_records(
        backend.get_shard_iterator(arn, shard, "TRIM_HORIZON", None).arn, 1000
    )
    assert len(result["Records"]) == 3
    status, headers, body = ActionResult(result).execute_result(context)  # moto's own writer
    assert status == 200 and headers["Content-Type"] == "application/x-amz-json-1.0"
    assert json.loads(get_records_body(result)) == json.loads(body)

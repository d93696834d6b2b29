"""moto's fast lane answers DynamoDB and DynamoDB Streams calls exactly as moto's own road.

Two moto processes, one with the fast lane and one without (``TIDINGS_MOTO_FAST_LANE=0``),
receive the same calls through boto3 and through raw HTTP; every answer (result, or error
code, message and HTTP status) must be the same once what differs by nature (request ids,
creation times, a stream record's size, which moto measures with its creation time in it) is
masked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def start_moto(fast: bool) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "TIDINGS_MOTO_FAST_LANE": "1" if fast else "0", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.motohost.process", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("READY "), line
    return process, f"http://127.0.0.1:{line.split()[1]}"


@pytest.fixture(scope="module")
def endpoints() -> Iterator[tuple[str, str]]:
    fast, fast_url = start_moto(True)
    slow, slow_url = start_moto(False)
    try:
        yield fast_url, slow_url
    finally:
        for process in (fast, slow):
            process.terminate()
            process.wait(timeout=10)


def clients(url: str) -> tuple[Any, Any]:
    options: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": REGION,
        "aws_access_key_id": "AKIAFASTLANE",
        "aws_secret_access_key": "secret",
        "config": Config(retries={"max_attempts": 1}),
    }
    return boto3.client("dynamodb", **options), boto3.client("dynamodbstreams", **options)


_MASKS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?"), "<time>"),
    (re.compile(r"datetime\.datetime\([^)]*\)"), "<time>"),
    (re.compile(r"'SizeBytes': \d+"), "'SizeBytes': <n>"),  # moto counts the time's text
]


def masked(value: Any) -> str:
    text = repr(value)
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def outcome(call: Callable[[], Any]) -> str:
    """A call's answer without its metadata, or its error's code, message and status."""
    try:
        answer = dict(call())
    except ClientError as exc:
        error = exc.response["Error"]
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        extra = {k: v for k, v in exc.response.items() if k not in ("Error", "ResponseMetadata")}
        return masked(("error", error.get("Code"), error.get("Message"), status, extra))
    answer.pop("ResponseMetadata", None)
    return masked(answer)


def scenario(dynamodb: Any, streams: Any) -> list[str]:
    """Every DynamoDB and Streams call the stack makes, with their errors; the answers."""
    results: list[str] = []
    run = results.append
    table = "Lane"
    run(
        outcome(
            lambda: (
                dynamodb.create_table(
                    TableName=table,
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "N"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                    StreamSpecification={
                        "StreamEnabled": True,
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    },
                )["TableDescription"]["KeySchema"]
                and {}
            )
        )
    )
    item = {
        "pk": {"S": "a"},
        "sk": {"N": "1"},
        "blob": {"B": b"\x00\xffbytes"},
        "set": {"SS": ["x", "y"]},
        "nums": {"NS": ["1", "2.5"]},
        "blobs": {"BS": [b"\x01", b"\x02"]},
        "nested": {"M": {"l": {"L": [{"N": "3"}, {"NULL": True}, {"BOOL": False}]}}},
    }
    run(outcome(lambda: dynamodb.put_item(TableName=table, Item=item)))
    run(outcome(lambda: dynamodb.put_item(TableName=table, Item=item, ReturnValues="ALL_OLD")))
    for sk in range(2, 8):
        run(
            outcome(
                lambda sk=sk: dynamodb.put_item(
                    TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": str(sk)}}
                )
            )
        )
    run(
        outcome(
            lambda: dynamodb.put_item(
                TableName=table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        )
    )
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    run(outcome(lambda: dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)))
    run(
        outcome(
            lambda: dynamodb.get_item(TableName=table, Key={"pk": {"S": "no"}, "sk": {"N": "1"}})
        )
    )
    run(outcome(lambda: dynamodb.get_item(TableName="Missing", Key=key)))
    run(
        outcome(
            lambda: dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #c = if_not_exists(#c, :zero) + :one",
                ExpressionAttributeNames={"#c": "count"},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )
        )
    )
    run(outcome(lambda: dynamodb.update_item(TableName=table, Key=key, UpdateExpression="SET")))
    query = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p AND sk > :s",
        "ExpressionAttributeValues": {":p": {"S": "a"}, ":s": {"N": "1"}},
        "Limit": 3,
    }
    first = {}

    def page() -> Any:
        answer = dynamodb.query(**query)
        first.update(answer)
        return answer

    run(outcome(page))
    run(outcome(lambda: dynamodb.query(**query, ExclusiveStartKey=first["LastEvaluatedKey"])))
    run(outcome(lambda: dynamodb.query(**query, ScanIndexForward=False)))
    run(outcome(lambda: dynamodb.scan(TableName=table, Limit=4)))
    run(
        outcome(
            lambda: dynamodb.batch_get_item(
                RequestItems={table: {"Keys": [key, {"pk": {"S": "a"}, "sk": {"N": "2"}}]}}
            )
        )
    )
    run(
        outcome(
            lambda: dynamodb.batch_write_item(
                RequestItems={
                    table: [
                        {"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"N": "1"}}}},
                        {"DeleteRequest": {"Key": {"pk": {"S": "a"}, "sk": {"N": "7"}}}},
                    ]
                }
            )
        )
    )
    put_b2 = {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "sk": {"N": "2"}}}}
    run(outcome(lambda: dynamodb.transact_write_items(TransactItems=[put_b2])))
    run(
        outcome(
            lambda: dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": {"pk": {"S": "b"}, "sk": {"N": "3"}},
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": key,
                            "UpdateExpression": "SET #c = :v",
                            "ConditionExpression": "#c = :wrong",
                            "ExpressionAttributeNames": {"#c": "count"},
                            "ExpressionAttributeValues": {":v": {"N": "9"}, ":wrong": {"N": "5"}},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                ]
            )
        )
    )
    run(outcome(lambda: dynamodb.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD")))
    run(outcome(lambda: dynamodb.describe_table(TableName="Missing")))
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    run(outcome(lambda: {"n": len(streams.list_streams(TableName=table)["Streams"])}))
    run(
        outcome(
            lambda: {
                "shards": len(streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"])
            }
        )
    )
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

    def records() -> Any:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        answer = streams.get_records(ShardIterator=iterator, Limit=100)
        return {
            "Records": [
                {
                    k: v
                    for k, v in r.items()
                    if k not in ("eventID", "awsRegion")  # random per process
                }
                for r in answer["Records"]
            ]
        }

    run(outcome(records))
    run(outcome(lambda: streams.get_records(ShardIterator="not-an-iterator")))
    return results


def raw_calls(url: str) -> list[tuple[int, str]]:
    """Unusual requests that boto3 would not send: what status and body each gets."""
    answers = []
    cases = [
        ("DynamoDB_20120810.ListTables", b"{}"),
        ("DynamoDB_20120810.GetItem", b"{not json"),
        ("DynamoDB_20120810.NoSuchOperation", b"{}"),
        ("DynamoDBStreams_20120810.ListStreams", b"{}"),
    ]
    for target, body in cases:
        request = urllib.request.Request(
            url + "/",
            data=body,
            method="POST",
            headers={
                "X-Amz-Target": target,
                "Content-Type": "application/x-amz-json-1.0",
                "Authorization": (
                    "AWS4-HMAC-SHA256 Credential=AKIAFASTLANE/20260101/us-east-1/dynamodb/"
                    "aws4_request, SignedHeaders=host, Signature=00"
                ),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), sort_keys=True)
        answers.append((status, masked(text)))
    return answers


def test_the_fast_lane_answers_as_moto_does(endpoints: tuple[str, str]) -> None:
    fast_url, slow_url = endpoints
    fast = scenario(*clients(fast_url))
    slow = scenario(*clients(slow_url))
    assert len(fast) == len(slow) > 25
    for index, (mine, theirs) in enumerate(zip(fast, slow, strict=True)):
        assert mine == theirs, f"call {index} differs"
    assert any("ConditionalCheckFailed" in line for line in fast)
    assert any("TransactionCanceled" in line for line in fast)
    assert any("ResourceNotFoundException" in line for line in fast)


def test_unusual_requests_get_aws_answers(endpoints: tuple[str, str]) -> None:
    """Well-formed calls boto3 would not make get moto's answers; a body that is no JSON and
    an operation that does not exist get AWS's 400s (moto's own road answers a bare 500)."""
    fast_url, slow_url = endpoints
    fast, slow = raw_calls(fast_url), raw_calls(slow_url)
    assert fast[0] == slow[0] and fast[0][0] == 200
    assert fast[3] == slow[3] and fast[3][0] == 200
    assert fast[1][0] == 400 and "#SerializationException" in fast[1][1]
    assert fast[2][0] == 400 and "#UnknownOperationException" in fast[2][1]
    assert "NoSuchOperation is not a dynamodb operation" in fast[2][1]

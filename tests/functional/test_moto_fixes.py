"""The local stack's TransactWriteItems keeps DynamoDB's all-or-nothing semantics.

Also the fixes that serve it: remembered condition expressions
(``infra.local.motohost.fixes.condition_cache``) and item requests handled one at a time
(``infra.local.motohost.fixes.isolation``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local.motohost.fixes.transactions import apply_dynamodb_transaction_fixes
from tests.support.moto_server import moto_server


@pytest.fixture()
def dynamodb() -> Iterator[object]:
    apply_dynamodb_transaction_fixes()
    with moto_server() as url:
        client = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        client.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
        yield client


def put(pk: str, condition: str | None = None) -> dict:
    op: dict = {"TableName": "t", "Item": {"pk": {"S": pk}, "v": {"N": "1"}}}
    if condition:
        op["ConditionExpression"] = condition
    return {"Put": op}


def test_all_or_nothing(dynamodb) -> None:
    dynamodb.transact_write_items(TransactItems=[put("a"), put("b")])
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                put("c", "attribute_not_exists(pk)"),
                put("a", "attribute_not_exists(pk)"),
            ]
        )
    error = cancelled.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in error["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert "Item" not in dynamodb.get_item(TableName="t", Key={"pk": {"S": "c"}})


def test_conditions_see_the_state_before_the_transaction(dynamodb) -> None:
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": {"S": "counter"}},
                    "UpdateExpression": "SET head = :one",
                    "ConditionExpression": "attribute_not_exists(head)",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            put("claim", "attribute_not_exists(pk)"),
        ]
    )
    item = dynamodb.get_item(TableName="t", Key={"pk": {"S": "counter"}})["Item"]
    assert item["head"] == {"N": "1"}


def test_two_actions_on_one_item_are_refused(dynamodb) -> None:
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(TransactItems=[put("x"), put("x")])
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"  # as DynamoDB answers it
    assert error["Message"] == "Transaction request cannot include multiple operations on one item"
    assert "Item" not in dynamodb.get_item(TableName="t", Key={"pk": {"S": "x"}})


def test_concurrent_transactions_on_one_counter_never_both_win(dynamodb) -> None:
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "n"}, "head": {"N": "0"}})
    wins: list[int] = []

    def bump(worker: int) -> None:
        for _ in range(20):
            while True:
                head = int(
                    dynamodb.get_item(TableName="t", Key={"pk": {"S": "n"}}, ConsistentRead=True)[
                        "Item"
                    ]["head"]["N"]
                )
                try:
                    dynamodb.transact_write_items(
                        TransactItems=[
                            {
                                "Update": {
                                    "TableName": "t",
                                    "Key": {"pk": {"S": "n"}},
                                    "UpdateExpression": "SET head = :new",
                                    "ConditionExpression": "head = :old",
                                    "ExpressionAttributeValues": {
                                        ":new": {"N": str(head + 1)},
                                        ":old": {"N": str(head)},
                                    },
                                }
                            }
                        ]
                    )
                except ClientError:
                    continue
                wins.append(head + 1)
                break

    threads = [threading.Thread(target=bump, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == list(range(1, 81))  # every value won exactly once


def test_remembered_conditions_still_check_their_own_values(dynamodb) -> None:
    from infra.local.motohost.fixes.condition_cache import apply_condition_cache

    apply_condition_cache()
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "k"}, "v": {"N": "1"}})
    for _round in range(2):  # the second round is answered from remembered parses
        for expected, ok in (("1", True), ("7", False), ("2", True), ("2", False)):
            new = str(int(expected) + 1)
            call = dict(
                TableName="t",
                Key={"pk": {"S": "k"}},
                UpdateExpression="SET v = :new",
                ConditionExpression="v = :expected",
                ExpressionAttributeValues={":expected": {"N": expected}, ":new": {"N": new}},
            )
            if ok:
                dynamodb.update_item(**call)
            else:
                with pytest.raises(ClientError) as failed:
                    dynamodb.update_item(**call)
                assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        dynamodb.put_item(TableName="t", Item={"pk": {"S": "k"}, "v": {"N": "1"}})
        with pytest.raises(ClientError) as taken:
            dynamodb.put_item(
                TableName="t",
                Item={"pk": {"S": "k"}},
                ConditionExpression=("attribute_not_exists(pk)"),
            )
        assert taken.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_remembered_conditions_keep_their_validation_errors(dynamodb) -> None:
    from infra.local.motohost.fixes.condition_cache import apply_condition_cache

    apply_condition_cache()
    for _ in range(2):
        with pytest.raises(ClientError) as unused:
            dynamodb.put_item(
                TableName="t",
                Item={"pk": {"S": "u"}},
                ConditionExpression="attribute_not_exists(pk)",
                ExpressionAttributeNames={"#unused": "x"},
            )
        assert "unused" in unused.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as invalid:
            dynamodb.put_item(
                TableName="t", Item={"pk": {"S": "u"}}, ConditionExpression="attribute_not_exists("
            )
        assert invalid.value.response["Error"]["Code"] == "ValidationException"


def test_a_read_never_sees_half_an_update(dynamodb) -> None:
    """``infra.local.motohost.fixes.isolation``: no read sees half an update.

    moto creates a missing item with its key first, then applies the update in place.
    """
    current = {"key": "", "done": False}
    seen_partial: list[dict] = []

    def read() -> None:
        while not current["done"]:
            key = current["key"]
            if key:
                item = dynamodb.get_item(TableName="t", Key={"pk": {"S": key}}).get("Item")
                if item is not None and "head" not in item:
                    seen_partial.append(item)

    readers = [threading.Thread(target=read) for _ in range(3)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave moto's threads as often as possible
    for reader in readers:
        reader.start()
    try:
        for n in range(400):
            current["key"] = f"head#{n}"
            dynamodb.update_item(
                TableName="t",
                Key={"pk": {"S": f"head#{n}"}},
                UpdateExpression="SET head = :h, epoch = :e",
                ConditionExpression="attribute_not_exists(pk)",
                ExpressionAttributeValues={":h": {"N": "1"}, ":e": {"N": "1"}},
            )
    finally:
        current["done"] = True
        for reader in readers:
            reader.join()
        sys.setswitchinterval(switch)
    assert seen_partial == []

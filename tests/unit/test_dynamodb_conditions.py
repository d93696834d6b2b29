"""DynamoDB's condition keys taken from request bodies (``dynamodb:LeadingKeys``,
``dynamodb:Select``, ``dynamodb:ReturnValues``), and the permissions MotoAuth asks for with
them: pure logic, key schemas from a dictionary."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from infra.local.motohost.auth import Permission, _request, permissions, service_info
from infra.local.motohost.dynamodb_conditions import (
    LEADING_KEYS,
    RETURN_VALUES,
    SELECT,
    batch_condition_keys,
    condition_keys,
    partition_key,
)

ALICE, BOB = "us-east-1:alice", "us-east-1:bob"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/todos"
SCHEMAS: dict[tuple[str, str | None], list[dict[str, str]]] = {
    ("todos", None): [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "id", "KeyType": "RANGE"},
    ],
    ("todos", "byDue"): [
        {"AttributeName": "due", "KeyType": "HASH"},
        {"AttributeName": "owner", "KeyType": "RANGE"},
    ],
    ("scores", None): [{"AttributeName": "game", "KeyType": "HASH"}],
}


def schemas(table: str, index: str | None) -> Sequence[Mapping[str, Any]] | None:
    name = table.rsplit("/", 1)[-1]
    return SCHEMAS.get((name, index))


def key(owner: str, item_id: str = "1") -> dict[str, Any]:
    return {"owner": {"S": owner}, "id": {"S": item_id}}


def test_partition_key_is_the_hash_attribute() -> None:
    assert partition_key(SCHEMAS[("todos", None)]) == "owner"
    assert partition_key(SCHEMAS[("todos", "byDue")]) == "due"
    assert partition_key([]) is None
    assert partition_key(None) is None


@pytest.mark.parametrize(
    ("operation", "part", "expected"),
    [
        ("GetItem", {"TableName": "todos", "Key": key(ALICE)}, [ALICE]),
        ("DeleteItem", {"TableName": "todos", "Key": key(BOB)}, [BOB]),
        ("UpdateItem", {"TableName": "todos", "Key": key(ALICE)}, [ALICE]),
        ("PutItem", {"TableName": "todos", "Item": {**key(BOB), "title": {"S": "x"}}}, [BOB]),
        ("Put", {"TableName": "todos", "Item": key(ALICE)}, [ALICE]),
        ("ConditionCheck", {"TableName": "todos", "Key": key(BOB)}, [BOB]),
        # table by ARN, numeric partition keys
        ("GetItem", {"TableName": TABLE_ARN, "Key": key(ALICE)}, [ALICE]),
        ("GetItem", {"TableName": "scores", "Key": {"game": {"N": "42"}}}, ["42"]),
    ],
)
def test_item_calls_lead_with_their_items_partition_key(
    operation: str, part: dict[str, Any], expected: list[str]
) -> None:
    assert condition_keys(operation, part, schemas) == {LEADING_KEYS: expected}


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {
                "KeyConditionExpression": "#o = :o AND begins_with(id, :p)",
                "ExpressionAttributeNames": {"#o": "owner"},
                "ExpressionAttributeValues": {":o": {"S": BOB}, ":p": {"S": "2026"}},
            },
            [BOB],
        ),
        (
            {
                "KeyConditionExpression": "id > :i AND #o = :o",
                "ExpressionAttributeNames": {"#o": "owner"},
                "ExpressionAttributeValues": {":o": {"S": ALICE}, ":i": {"S": "1"}},
            },
            [ALICE],
        ),
        (
            {
                "KeyConditions": {
                    "owner": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": ALICE}]}
                }
            },
            [ALICE],
        ),
        (
            {
                "IndexName": "byDue",
                "KeyConditionExpression": "due = :d",
                "ExpressionAttributeValues": {":d": {"S": "2026-11-29"}},
            },
            ["2026-11-29"],
        ),
    ],
    ids=["expression", "partition-second", "legacy-key-conditions", "index"],
)
def test_a_query_leads_with_its_partition(part: dict[str, Any], expected: list[str]) -> None:
    assert condition_keys("Query", {"TableName": "todos", **part}, schemas) == {
        LEADING_KEYS: expected
    }


def test_a_scan_names_no_partition_and_an_unknown_table_none_either() -> None:
    assert condition_keys("Scan", {"TableName": "todos"}, schemas) == {}
    assert condition_keys("GetItem", {"TableName": "nope", "Key": key(ALICE)}, schemas) == {}
    # a request without the key (moto refuses it) or with an unparsable key condition
    assert (
        condition_keys("PutItem", {"TableName": "todos", "Item": {"id": {"S": "1"}}}, schemas) == {}
    )
    broken = {"TableName": "todos", "KeyConditionExpression": "owner = = :o AND AND"}
    assert condition_keys("Query", broken, schemas) == {}


def test_select_and_return_values_are_taken_when_named() -> None:
    assert condition_keys("Scan", {"TableName": "todos", "Select": "COUNT"}, schemas) == {
        SELECT: ["COUNT"]
    }
    put = {"TableName": "todos", "Item": key(ALICE), "ReturnValues": "ALL_OLD"}
    assert condition_keys("PutItem", put, schemas) == {
        LEADING_KEYS: [ALICE],
        RETURN_VALUES: ["ALL_OLD"],
    }
    assert RETURN_VALUES not in condition_keys("GetItem", {**put, "Key": key(ALICE)}, schemas)


def test_a_batch_leads_with_every_partition_of_its_table() -> None:
    writes = [
        {"PutRequest": {"Item": key(ALICE, "1")}},
        {"PutRequest": {"Item": key(ALICE, "2")}},
        {"DeleteRequest": {"Key": key(BOB)}},
    ]
    assert batch_condition_keys("BatchWriteItem", "todos", writes, schemas) == {
        LEADING_KEYS: [ALICE, BOB]
    }
    gets = {"Keys": [key(BOB), key(ALICE)], "ConsistentRead": True}
    assert batch_condition_keys("BatchGetItem", "todos", gets, schemas) == {
        LEADING_KEYS: [BOB, ALICE]
    }
    assert batch_condition_keys("BatchWriteItem", "nope", writes, schemas) == {}


# --------------------------------------------------------------------------- permissions


def needed(operation: str, body: dict[str, Any]) -> list[Permission]:
    data = json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "HTTP_X_AMZ_TARGET": f"DynamoDB_20120810.{operation}",
        "CONTENT_TYPE": "application/x-amz-json-1.0",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    return permissions(
        service_info("dynamodb"),
        _request(environ, data),
        region="us-east-1",
        account_id="123456789012",
        key_schemas=schemas,
    )


def leading(permission: Permission) -> list[str] | None:
    found = dict(permission.context).get(LEADING_KEYS)
    return None if found is None else list(found)


def test_each_permission_carries_its_own_parts_keys() -> None:
    (put,) = needed("PutItem", {"TableName": "todos", "Item": key(ALICE)})
    assert (put.action, put.resource, leading(put)) == ("dynamodb:PutItem", TABLE_ARN, [ALICE])
    transaction = needed(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "todos", "Item": key(ALICE)}},
                {"Delete": {"TableName": "todos", "Key": key(BOB)}},
            ]
        },
    )
    assert [(p.action, leading(p)) for p in transaction] == [
        ("dynamodb:PutItem", [ALICE]),
        ("dynamodb:DeleteItem", [BOB]),
    ]
    batch = needed(
        "BatchWriteItem",
        {
            "RequestItems": {
                "todos": [{"PutRequest": {"Item": key(ALICE)}}],
                "scores": [{"DeleteRequest": {"Key": {"game": {"S": "chess"}}}}],
            }
        },
    )
    assert [(p.resource.rsplit("/", 1)[-1], leading(p)) for p in batch] == [
        ("todos", [ALICE]),
        ("scores", ["chess"]),
    ]
    (scan,) = needed("Scan", {"TableName": "todos"})
    assert scan.context == ()


def test_without_key_schemas_no_partition_is_known() -> None:
    data = json.dumps({"TableName": "todos", "Item": key(ALICE)}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem",
    }
    (put,) = permissions(
        service_info("dynamodb"), _request(environ, data), region="us-east-1", account_id="1"
    )
    assert put.context == ()

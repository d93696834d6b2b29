"""A TransactWriteItems that fails leaves no stream record, so the publisher pushes nothing.

DynamoDB writes a transaction's stream records only when it commits. The local stack's
transaction (``infra.local.motohost.fixes.transactions``) applies its actions one by one and
rolls back with ``put_item``/``delete_item`` when one fails midway; every one of those writes
used to append a stream record (the applied action's INSERT, the rollback's REMOVE), which
the publisher then numbered, logged and pushed: changes DynamoDB never emits.

The failing transaction below puts a new item, then updates another with an expression
that refers to a missing attribute: the put is applied before the update fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from backend.change_store import ChangeStore
from backend.publisher import Publisher
from backend.routes import load_routes
from backend.settings import Settings
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.functions.stream_pump import MappingSettings, StreamPump
from infra.local.iot.gateway import Gateway
from tests.events.capture_stream_events import client as moto_client
from tests.events.capture_stream_events import create_backend_tables, create_example_tables
from tests.support.identities import REGION, Identity, identity_policies, new_publisher
from tests.support.moto_server import ROUTES_FILE, moto_server
from tests.support.real_clients import PahoWebSocket

OWNER = f"{REGION}:5d0c2f4e-9a7b-4c1d-8e2f-3b4a5c6d7e8f"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto in server mode with every local stack fix (as ``tidings up`` runs it)."""
    with moto_server() as url:
        yield url


@pytest.fixture
def todos(endpoint: str) -> dict[str, str]:
    """Fresh example tables (streams on); logical id → name."""
    return create_example_tables(moto_client("dynamodb", endpoint), uuid.uuid4().hex[:8])


def todo(item_id: str) -> dict[str, Any]:
    return {"owner": {"S": OWNER}, "id": {"S": item_id}, "title": {"S": item_id}}


def fail_after_a_put(dynamodb: Any, table: str) -> ClientError:
    """A transaction whose first action (a put) is applied before its second one fails."""
    with pytest.raises(ClientError) as failed:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": todo("ghost")}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"owner": {"S": OWNER}, "id": {"S": "counted"}},
                        "UpdateExpression": "SET n = missing + :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
    return failed.value


def stream_records(endpoint: str, table: str) -> list[dict[str, Any]]:
    """Every record of the table's stream, read with GetRecords through the moto server."""
    dynamodb = moto_client("dynamodb", endpoint)
    streams = moto_client("dynamodbstreams", endpoint)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    return records


def test_a_transaction_that_fails_midway_adds_no_stream_record(
    endpoint: str, todos: dict[str, str]
) -> None:
    dynamodb = moto_client("dynamodb", endpoint)
    table = todos["TodosTable"]
    dynamodb.put_item(TableName=table, Item=todo("before"))
    error = fail_after_a_put(dynamodb, table)
    assert error.response["Error"]["Code"] == "ValidationException", error.response
    # rolled back: the put that was applied is undone
    key = {"owner": {"S": OWNER}, "id": {"S": "ghost"}}
    assert "Item" not in dynamodb.get_item(TableName=table, Key=key)
    dynamodb.put_item(TableName=table, Item=todo("after"))
    records = stream_records(endpoint, table)
    assert [(r["eventName"], r["dynamodb"]["Keys"]["id"]["S"]) for r in records] == [
        ("INSERT", "before"),
        ("INSERT", "after"),
    ]
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert numbers == sorted(numbers) and len(set(numbers)) == 2


def test_a_committed_transaction_still_adds_one_record_per_action(
    endpoint: str, todos: dict[str, str]
) -> None:
    dynamodb = moto_client("dynamodb", endpoint)
    table, boards = todos["TodosTable"], todos["BoardsTable"]
    dynamodb.put_item(TableName=table, Item=todo("old"))
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": todo("new")}},
            {"Delete": {"TableName": table, "Key": {"owner": {"S": OWNER}, "id": {"S": "old"}}}},
            {
                "Put": {
                    "TableName": boards,
                    "Item": {"tenant": {"S": "acme"}, "id": {"S": "b"}},
                }
            },
        ]
    )
    assert [
        (r["eventName"], r["dynamodb"]["Keys"]["id"]["S"]) for r in stream_records(endpoint, table)
    ] == [("INSERT", "old"), ("INSERT", "new"), ("REMOVE", "old")]
    assert [r["eventName"] for r in stream_records(endpoint, boards)] == ["INSERT"]


class RecordingIot:
    """The real iot-data client (on the local gateway), remembering what was published."""

    reports_sent = True

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.published: list[dict[str, Any]] = []

    def publish(self, topic: str, qos: int, payload: bytes, on_sent: Any = None) -> None:
        self.inner.publish(topic=topic, qos=qos, payload=payload)
        self.published.append(json.loads(payload))
        if on_sent is not None:
            on_sent()


def test_the_publisher_pushes_and_logs_nothing_of_a_failed_transaction(
    endpoint: str, todos: dict[str, str], gateway: Gateway
) -> None:
    dynamodb = moto_client("dynamodb", endpoint)
    backend_tables = create_backend_tables(dynamodb, uuid.uuid4().hex[:8])
    settings = Settings(
        stage="dev",
        change_log_table=backend_tables["ChangeLogTable"],
        sequence_table=backend_tables["SequenceTable"],
        users_table=backend_tables["UsersTable"],
        routes_file=str(ROUTES_FILE),
        tables={logical.upper(): name for logical, name in todos.items()},
    )
    role = new_publisher(gateway.credentials)
    iot = RecordingIot(
        boto3.client(
            "iot-data",
            endpoint_url=gateway.endpoint,
            verify=str(gateway.ca_file),
            region_name=REGION,
            aws_access_key_id=role.access_key,
            aws_secret_access_key=role.secret_key,
            aws_session_token=role.token,
        )
    )
    executor = ThreadPoolExecutor(4)
    store = ChangeStore(
        dynamodb,
        settings.sequence_table,
        settings.change_log_table,
        settings.retention_s,
        executor=executor,
    )
    publisher = Publisher(settings, load_routes(ROUTES_FILE), store, iot, executor=executor)
    table = todos["TodosTable"]
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    pump = StreamPump(
        moto_client("dynamodbstreams", endpoint), arn, publisher.handle, MappingSettings()
    )
    channel = f"users/{OWNER}/todos"
    credential = mint_temporary_credential(
        OWNER, identity_policies(), variables={"cognito-identity.amazonaws.com:sub": OWNER}
    )
    gateway.credentials.put(credential)
    subscriber = PahoWebSocket(gateway.port, gateway.ca_file, Identity(OWNER, credential))
    subscriber.connect()
    try:
        assert subscriber.subscribe(f"tidings/dev/{channel}")
        fail_after_a_put(dynamodb, table)
        dynamodb.put_item(TableName=table, Item=todo("real"))
        delivered = pump.drain()
        topic, payload = subscriber.receive()
        pushed = json.loads(payload)
    finally:
        subscriber.disconnect()
        executor.shutdown()
    assert topic == f"tidings/dev/{channel}"
    assert (pushed["seq"], pushed["op"], pushed["keys"]["id"]) == (1, "insert", "real")
    assert iot.published == [pushed]
    assert [json.loads(e.envelope) for e in store.read(channel, 0, 100)] == [pushed]
    assert store.head(channel).seq == 1
    assert delivered == 1  # the stream held the real write only

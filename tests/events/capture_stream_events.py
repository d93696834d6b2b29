"""Regenerate the ``stream_*.json`` fixtures: real DynamoDB stream records from moto.

Run ``.venv/bin/python tests/events/capture_stream_events.py``. It starts moto in server mode,
creates the example app's tables (physical names ``Todos``, ``Boards``, ``Scores``,
``DeviceSettings``), makes the writes below, reads each table's stream and writes the records in
the shape Lambda delivers them (``infra.local.functions.stream_pump.to_lambda_record``) as
``{"Records": [...]}`` events.

``stream_todos_ttl_expiry.json`` is the captured REMOVE with the ``userIdentity`` that DynamoDB
adds to a TTL deletion (moto does not run TTL), added here and marked in the file name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from infra.local.functions.stream_pump import to_lambda_record  # noqa: E402
from tests.support.moto_server import moto_server  # noqa: E402

OWNER = "us-east-1:0b6b3b5e-7c1d-4b8e-9a51-3f0c6f7b2a10"
REGION = "us-east-1"

EXAMPLE_TABLES = {
    # logical id: (physical name, partition key, sort key)
    "TodosTable": ("Todos", "owner", "id"),
    "BoardsTable": ("Boards", "tenant", "id"),
    "ScoresTable": ("Scores", "game", "player"),
    "DeviceSettingsTable": ("DeviceSettings", "thing", "setting"),
}


def client(service: str, endpoint: str, **kwargs: Any) -> Any:
    """A boto3 client on moto (quiet werkzeug request logging)."""
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
        **kwargs,
    )


def create_example_tables(dynamodb: Any, suffix: str = "") -> dict[str, str]:
    """Create the example app's tables (streams NEW_AND_OLD_IMAGES); logical id → name."""
    names = {}
    for logical, (name, hash_key, range_key) in EXAMPLE_TABLES.items():
        physical = name + suffix
        dynamodb.create_table(
            TableName=physical,
            KeySchema=[
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": hash_key, "AttributeType": "S"},
                {"AttributeName": range_key, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        names[logical] = physical
    return names


def create_backend_tables(dynamodb: Any, suffix: str = "") -> dict[str, str]:
    """The backend's tables (ChangeLogTable, SequenceTable, UsersTable) as template.yaml
    declares them; logical id → name."""
    from infra.local.stack.template_model import load_template

    template = load_template(Path(__file__).resolve().parents[2] / "infra" / "template.yaml")
    names = {
        "ChangeLogTable": f"ChangeLog{suffix}",
        "SequenceTable": f"Sequence{suffix}",
        "UsersTable": f"Users{suffix}",
    }
    for logical_id, name in names.items():
        template.create_table(dynamodb, logical_id, name)
    return names


def _records(endpoint: str, table: str) -> list[dict[str, Any]]:
    dynamodb = client("dynamodb", endpoint)
    streams = client("dynamodbstreams", endpoint)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    records = []
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    return [to_lambda_record(record, arn) for record in records]


def capture(out_dir: Path = HERE) -> list[Path]:
    """Make the writes, capture the streams, write the fixtures; returns the files written."""
    with moto_server() as endpoint:
        dynamodb = client("dynamodb", endpoint)
        create_example_tables(dynamodb)
        todo = {
            "owner": {"S": OWNER},
            "id": {"S": "t1"},
            "title": {"S": "Buy milk ✓"},
            "done": {"BOOL": False},
            "price": {"N": "0.1"},
            "big": {"N": "123456789012345678901234567890.123456789"},
            "count": {"N": "7"},
            "tags": {"SS": ["home", "shop"]},
            "ratings": {"NS": ["1.5", "2"]},
            "meta": {"M": {"nested": {"L": [{"N": "3.14159"}, {"NULL": True}]}}},
            "blob": {"B": b"\x00\x01tidings"},
        }
        dynamodb.put_item(TableName="Todos", Item=todo)
        dynamodb.update_item(
            TableName="Todos",
            Key={"owner": todo["owner"], "id": todo["id"]},
            UpdateExpression="SET done = :d, price = :p",
            ExpressionAttributeValues={":d": {"BOOL": True}, ":p": {"N": "0.30"}},
        )
        dynamodb.delete_item(TableName="Todos", Key={"owner": todo["owner"], "id": todo["id"]})
        dynamodb.put_item(
            TableName="Boards",
            Item={"tenant": {"S": "acme"}, "id": {"S": "b1"}, "name": {"S": "Roadmap"}},
        )
        for score in ("10", "25.5"):
            dynamodb.put_item(
                TableName="Scores",
                Item={
                    "game": {"S": "chess"},
                    "player": {"S": "ann"},
                    "score": {"N": score},
                    "secret": {"S": "not routed"},
                },
            )
        dynamodb.put_item(
            TableName="DeviceSettings",
            Item={"thing": {"S": "sensor-1"}, "setting": {"S": "interval"}, "seconds": {"N": "30"}},
        )
        todos = _records(endpoint, "Todos")
        events = {
            "stream_todos.json": {"Records": todos},
            "stream_boards.json": {"Records": _records(endpoint, "Boards")},
            "stream_scores.json": {"Records": _records(endpoint, "Scores")},
            "stream_device_settings.json": {"Records": _records(endpoint, "DeviceSettings")},
        }
        expiry = dict(todos[-1])
        expiry["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        events["stream_todos_ttl_expiry.json"] = {"Records": [expiry]}
    written = []
    for name, event in events.items():
        path = out_dir / name
        path.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in capture():
        print(path)

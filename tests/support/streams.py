"""A DynamoDB stream with a few records in it, on a moto server, for stream-pump tests."""

from __future__ import annotations

import uuid
from typing import Any

from tests.events.capture_stream_events import client, create_example_tables


def todos_stream(endpoint: str, writes: int = 10) -> tuple[Any, str]:
    """A fresh Todos table with ``writes`` items written: (streams client, stream ARN)."""
    dynamodb = client("dynamodb", endpoint)
    suffix = uuid.uuid4().hex[:8]
    create_example_tables(dynamodb, suffix)
    for index in range(writes):
        dynamodb.put_item(
            TableName="Todos" + suffix,
            Item={"owner": {"S": "o"}, "id": {"S": f"i{index}"}, "n": {"N": str(index)}},
        )
    arn = dynamodb.describe_table(TableName="Todos" + suffix)["Table"]["LatestStreamArn"]
    return client("dynamodbstreams", endpoint), arn

"""DynamoDB's item answers written with ``json.dumps``, not botocore's shape walker.

moto 5.2.5 writes every DynamoDB answer by walking botocore's output shape value by value,
which took over half of a 1,000-item Query's time. DynamoDB answers in JSON
(``application/x-amz-json-1.0``), blobs in base64.

The fix writes the answers of the item operations (get, put, update, delete, query, scan,
batch and transaction calls) with ``json.dumps`` instead: the same JSON, blobs in base64 as
the shape walker writes them. Anything else (a timestamp, an error, another operation) still
goes through moto's serializer.
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["apply", "apply_dynamodb_response_fix"]

# Operations whose answers hold only strings, numbers, booleans, blobs, lists and maps.
_ITEM_OPERATIONS = frozenset(
    {
        "BatchGetItem",
        "BatchWriteItem",
        "DeleteItem",
        "GetItem",
        "PutItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "TransactWriteItems",
        "UpdateItem",
    }
)
_JSON_CONTENT_TYPE = "application/x-amz-json-1.0"


def apply_dynamodb_response_fix() -> None:
    """Write the answers of DynamoDB's item operations with ``json.dumps`` (idempotent)."""
    from moto.core import serialize
    from moto.dynamodb import responses

    result_class: Any = responses.DynamoResult
    if getattr(result_class, "_tidings_fixed", False):
        return
    original = result_class.execute_result

    def execute_result(self: Any, context: Any) -> Any:
        if (
            context.operation_model.name in _ITEM_OPERATIONS
            and issubclass(context.serializer_class, serialize.BaseJSONSerializer)
            and isinstance(self.result, dict)
        ):
            try:
                body = json.dumps(self.result, default=_blob)
            except TypeError:  # a value only moto's serializer knows how to write
                return original(self, context)
            return 200, {"Content-Type": _JSON_CONTENT_TYPE}, body
        return original(self, context)

    result_class.execute_result = execute_result
    result_class._tidings_original_execute_result = original  # for the comparing test
    result_class._tidings_fixed = True


apply = apply_dynamodb_response_fix


def _blob(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON: {type(value).__name__}")

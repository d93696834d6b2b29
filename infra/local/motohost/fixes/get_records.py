"""DynamoDB Streams' ``GetRecords`` answers written with ``json.dumps``; unknown iterators refused.

moto 5.2.5 writes every ``GetRecords`` answer (read for every batch the pump delivers) by
walking botocore's output shape value by value, and answers an iterator the stream never
handed out with HTTP 500 (a ``KeyError``). DynamoDB Streams answers in JSON, and refuses an
unknown iterator with HTTP 400 ``ValidationException``.

The fix writes the answer with ``json.dumps`` instead: the same JSON, ``B``/``BS`` values in
base64 and timestamps as epoch seconds, as the shape walker writes them. An iterator the
stream never handed out gets AWS's 400 ``ValidationException``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["apply", "apply_get_records_response_fix", "get_records_body"]

_JSON_CONTENT_TYPE = "application/x-amz-json-1.0"  # DynamoDB Streams speaks DynamoDB's JSON


def apply_get_records_response_fix() -> None:
    """Write DynamoDB Streams' ``GetRecords`` answers with ``json.dumps`` (idempotent).

    An iterator the stream never handed out gets AWS's 400 ``ValidationException`` instead
    of moto's 500.
    """
    from moto.core import responses as core_responses
    from moto.core import serialize
    from moto.dynamodbstreams import responses

    handler: Any = responses.DynamoDBStreamsHandler
    if getattr(handler, "_tidings_fixed", False):
        return
    original = handler.get_records

    class JsonResult(core_responses.ActionResult):
        def execute_result(self, context: Any) -> Any:
            if not issubclass(context.serializer_class, serialize.BaseJSONSerializer):
                return super().execute_result(context)
            return 200, {"Content-Type": _JSON_CONTENT_TYPE}, get_records_body(self.result)

    def get_records(self: Any) -> Any:
        iterator = self._get_param("ShardIterator")
        if iterator not in self.backend.shard_iterators:  # moto would fail with a KeyError
            from moto.core.exceptions import JsonRESTError

            raise JsonRESTError("ValidationException", f"Invalid ShardIterator: {iterator!r}")
        result = original(self)
        if type(result) is core_responses.ActionResult and isinstance(result.result, dict):
            return JsonResult(result.result)
        return result

    handler.get_records = get_records
    handler._tidings_original_get_records = original  # for the comparing test
    handler._tidings_fixed = True


apply = apply_get_records_response_fix


def get_records_body(result: Any) -> str:
    """The JSON text of a ``GetRecords`` answer (``result`` as moto's backend returns it)."""
    from moto.core import serialize

    return json.dumps(_records_json(result, serialize.TimestampSerializer._timestamp_unixtimestamp))


def _records_json(value: Any, unixtime: Any) -> Any:
    """A GetRecords answer as moto's shape walker writes it: ``B``/``BS`` values in base64
    (of their text when moto holds them as text), timestamps as epoch seconds."""
    import datetime

    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "B" and isinstance(item, str | bytes):
                out[key] = _base64_text(item)
            elif key == "BS" and isinstance(item, list):
                out[key] = [_base64_text(member) for member in item]
            else:
                out[key] = _records_json(item, unixtime)
        return out
    if isinstance(value, list):
        return [_records_json(item, unixtime) for item in value]
    if isinstance(value, datetime.datetime):
        return unixtime(value)
    return value


def _base64_text(value: str | bytes) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(data).decode("ascii")

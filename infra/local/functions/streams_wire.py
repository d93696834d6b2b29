"""The stream pump's ``GetRecords``: one signed POST, records kept as DynamoDB sent them.

Through boto3, every ``GetRecords`` answer is parsed into Python values (datetimes, bytes)
that the pump then turns back into the JSON shape Lambda delivers. :class:`WireStreamsClient`
sends the same signed request (``X-Amz-Target: DynamoDBStreams_20120810.GetRecords``) on a
kept-alive connection and hands the records over as they came: the pump builds Lambda's
event from them directly (``returns_wire``). ``DescribeStream`` and ``GetShardIterator``,
called rarely, go through the boto3 client it wraps.
"""

from __future__ import annotations

import json
from typing import Any

from backend.signed_http import CONNECTION_ERRORS, SignedPoster, client_error

__all__ = ["WireStreamsClient"]

_HEADERS = {
    "X-Amz-Target": "DynamoDBStreams_20120810.GetRecords",
    "Content-Type": "application/x-amz-json-1.0",
}


class WireStreamsClient:
    """A boto3 ``dynamodbstreams`` client whose ``get_records`` returns the wire JSON."""

    returns_wire = True  # get_records' records are DynamoDB JSON, not boto3's Python values

    def __init__(self, client: Any, credentials: Any, *, max_attempts: int = 2) -> None:
        """``client`` is a boto3 ``dynamodbstreams`` client; ``credentials`` botocore's."""
        self._client = client
        self._poster = SignedPoster.for_client(client, credentials, pool_size=2)
        self.max_attempts = max_attempts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_records(self, **params: Any) -> dict[str, Any]:
        """``GetRecords`` with boto3's call shape; errors raise botocore's ``ClientError``."""
        body = json.dumps(params).encode("utf-8")
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, answer = self._poster.post("/", body, _HEADERS)
            except CONNECTION_ERRORS:
                if attempt == self.max_attempts:
                    raise
                continue
            if status >= 300:
                raise client_error(status, answer, "GetRecords")
            parsed: dict[str, Any] = json.loads(answer or b"{}")
            return parsed
        raise AssertionError("unreachable")  # the last attempt returns or raises

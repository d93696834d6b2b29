"""Lambda handler of the publisher (DynamoDB stream event source mapping with
``FunctionResponseTypes: [ReportBatchItemFailures]``)."""

from __future__ import annotations

from typing import Any

import backend.aws_clients  # noqa: F401  (boto3 imported at init, not on the first record)
from backend.publisher import handle_stream_event


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish one batch of stream records; returns ``batchItemFailures``."""
    return handle_stream_event(event)

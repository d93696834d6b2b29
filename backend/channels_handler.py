"""Lambda handler of the channels API (API Gateway REST proxy, ``/v1/channels/{channel+}``)."""

from __future__ import annotations

from typing import Any

import backend.aws_clients  # noqa: F401  (boto3 imported at init, not on the first request)
from backend.channels_api import handle_api_event


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one channels API request."""
    return handle_api_event(event)

"""A Lambda handler for local-runtime tests: echoes what it was given."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if (event.get("queryStringParameters") or {}).get("fail") == "1":
        raise ValueError("asked to fail")
    if (event.get("queryStringParameters") or {}).get("exit") == "1":
        os._exit(3)  # the worker process dies mid-invocation
    if (event.get("queryStringParameters") or {}).get("sleep"):
        time.sleep(float(event["queryStringParameters"]["sleep"]))
    body = {
        "event": event,
        "env": os.environ.get("ECHO_SETTING"),
        "function": context.function_name,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "pid": os.getpid(),
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }

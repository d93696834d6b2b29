"""One local Lambda execution environment: imports a handler, then serves invocations.

Imports the handler (Lambda's init phase), says so with :data:`READY_LINE`, then reads one
JSON request per line on stdin (``{"id", "event"}``) and writes one JSON line per answer on
stdout (``{"result"}`` or ``{"errorType", "errorMessage"}``). The handler's own
prints go to stderr, where the local stack shows them as the function's log.

The context's ``invoked_function_arn`` names the region of ``AWS_REGION`` (set for every
function, as on AWS) and the account of ``TIDINGS_LOCAL_ACCOUNT_ID`` (the local stack's
account; Lambda has no such variable, its runtime knows the account itself).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

ACCOUNT_ID_VARIABLE = "TIDINGS_LOCAL_ACCOUNT_ID"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account, the local stack's
DEFAULT_REGION = "us-east-1"
READY_LINE = '{"ready":true}\n'
"""Written once the handler is imported, before the first invocation is read."""


class LambdaContext:
    """The attributes of the Lambda context object that handlers use."""

    def __init__(
        self,
        name: str,
        request_id: str,
        timeout_s: float,
        memory_mb: int,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.aws_request_id = request_id
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the invocation times out."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(argv: list[str]) -> int:
    """``python -m infra.local.functions.worker HANDLER NAME TIMEOUT MEMORY``"""
    handler_path, name, timeout_s, memory_mb = argv[0], argv[1], float(argv[2]), int(argv[3])
    region = os.environ.get("AWS_REGION") or DEFAULT_REGION
    account_id = os.environ.get(ACCOUNT_ID_VARIABLE) or DEFAULT_ACCOUNT_ID
    module_name, _, function_name = handler_path.rpartition(".")
    out = sys.stdout
    sys.stdout = sys.stderr  # handler prints are logs, not answers
    handler: Any = getattr(importlib.import_module(module_name), function_name)
    gc.freeze()  # the imported modules are for good: keep them out of full collections
    out.write(READY_LINE)  # the init phase is over: invocations are timed from here on
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(
            name, request["id"], timeout_s, memory_mb, region=region, account_id=account_id
        )
        try:
            answer: dict[str, Any] = {"result": handler(request["event"], context)}
        except Exception as exc:
            traceback.print_exc()
            answer = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        out.write(json.dumps(answer, default=str) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

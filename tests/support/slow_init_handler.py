"""A handler whose init phase (its import) takes ``SLOW_INIT_S`` seconds."""

from __future__ import annotations

import os
import time
from typing import Any

time.sleep(float(os.environ.get("SLOW_INIT_S", "0")))


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Answer at once with the event."""
    return {"statusCode": 200, "body": "initialised", "event": event}

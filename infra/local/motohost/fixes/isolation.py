"""DynamoDB item requests handled one at a time, so no read sees half a write.

moto 5.2.5 applies an ``UpdateItem`` in place, and creates a missing item first with its key
alone: a ``GetItem`` at the same moment saw an item without the updated attributes (the
channels API read a head without ``head``). DynamoDB's reads never see half a write. The fix
handles moto's item requests (``DynamoHandler``'s get, put, update, delete, query, scan, batch
and transaction calls) one at a time, under one lock, each with its answer built before the
next starts.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["apply", "apply_dynamodb_isolation_fix"]

# DynamoHandler methods that read or write items; each builds its whole answer itself.
_ITEM_HANDLERS = (
    "batch_get_item",
    "batch_write_item",
    "delete_item",
    "get_item",
    "put_item",
    "query",
    "scan",
    "transact_get_items",
    "transact_write_items",
    "update_item",
)


def apply_dynamodb_isolation_fix() -> None:
    """Handle DynamoDB item requests one at a time, so no read sees half a write (idempotent)."""
    import functools

    from moto.dynamodb import responses

    handler: Any = responses.DynamoHandler
    if getattr(handler, "_tidings_isolated", False):
        return
    lock = threading.RLock()

    def isolated(method: Any) -> Any:
        @functools.wraps(method)
        def handle(self: Any) -> Any:
            with lock:
                return method(self)

        return handle

    for name in _ITEM_HANDLERS:
        setattr(handler, name, isolated(getattr(handler, name)))
    handler._tidings_isolated = True


apply = apply_dynamodb_isolation_fix

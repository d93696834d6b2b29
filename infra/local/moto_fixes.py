"""Two fixes to moto's DynamoDB that the local stack needs to behave like DynamoDB.

moto runs in the local stack's own process (``ThreadedMotoServer``), so they are applied to
it in-process, once:

* moto's ``TransactWriteItems`` deep-copies a table for every action of a transaction (to
  roll back on failure); the copies are identical, so one copy per table and call keeps the
  behaviour and saves a 99-action transaction against a large change log 98 copies;
* the copy races concurrent transactions ("dictionary changed size during iteration" →
  HTTP 500), which DynamoDB's isolation never shows: transactions are serialised.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

__all__ = ["apply_dynamodb_transaction_fixes"]

_applied = False
_guard = threading.Lock()


def apply_dynamodb_transaction_fixes() -> None:
    """Patch moto's DynamoDB backend (idempotent)."""
    global _applied
    with _guard:
        if _applied:
            return
        from moto.dynamodb import models as moto_models
        from moto.dynamodb.models.table import Table

        models: Any = moto_models

        real_copy = models.copy
        local = threading.local()
        lock = threading.Lock()

        def deepcopy(obj: Any, *args: Any) -> Any:
            memo = getattr(local, "memo", None)
            if memo is None or not isinstance(obj, Table):
                return real_copy.deepcopy(obj, *args)
            if id(obj) not in memo:
                memo[id(obj)] = real_copy.deepcopy(obj, *args)
            return memo[id(obj)]

        original = models.DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: Any) -> Any:
            with lock:
                local.memo = {}
                try:
                    return original(self, transact_items)
                finally:
                    local.memo = None

        models.copy = SimpleNamespace(deepcopy=deepcopy)
        models.DynamoDBBackend.transact_write_items = transact_write_items
        _applied = True

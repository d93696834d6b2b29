"""Tenant membership for the channels API: ``identity_id -> frozenset[str]``.

The channels API takes any callable of that shape. The default reads the users table that
``auth/`` maintains (``TIDINGS_TABLE_USERSTABLE``) and expects this shape:

* a global secondary index named ``byIdentity`` whose partition key is ``identityId`` (S, the
  Cognito identity id of the user, written at login), projecting ``tenants``;
* ``tenants`` on the user's item: a string set (SS) or a list of strings (L) of tenant names.

All items of one identity are merged. Answers are cached per identity for ``ttl_s`` seconds
(default 30), so a membership change reaches the API within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from backend.errors import StoreError

__all__ = ["IDENTITY_INDEX", "UsersTableTenants"]

IDENTITY_INDEX = "byIdentity"


class UsersTableTenants:
    """The default tenant lookup: the users table's ``byIdentity`` index (see module doc)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        index_name: str = IDENTITY_INDEX,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``dynamodb`` is a boto3 DynamoDB client or a zero-argument factory of one."""
        self._dynamodb = dynamodb
        self.table = table
        self.index_name = index_name
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def __call__(self, identity_id: str) -> frozenset[str]:
        """The tenants ``identity_id`` belongs to (empty when the users table has no item)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(identity_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        tenants = self._query(identity_id)
        with self._lock:
            self._cache[identity_id] = (now + self.ttl_s, tenants)
        return tenants

    def _query(self, identity_id: str) -> frozenset[str]:
        client = self._dynamodb
        if callable(client) and not hasattr(client, "query"):
            client = self._dynamodb = client()
        try:
            answer = client.query(
                TableName=self.table,
                IndexName=self.index_name,
                KeyConditionExpression="identityId = :identity",
                ExpressionAttributeValues={":identity": {"S": identity_id}},
            )
        except Exception as exc:
            raise StoreError(f"reading tenant membership failed: {exc}") from exc
        tenants: set[str] = set()
        for item in answer.get("Items", []):
            value = item.get("tenants", {})
            if "SS" in value:
                tenants.update(value["SS"])
            elif "L" in value:
                tenants.update(entry["S"] for entry in value["L"] if "S" in entry)
        return frozenset(tenants)

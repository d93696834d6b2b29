"""What the acceptance suite creates in a stack as its operator, and removes afterwards:
password users with names of their own (through ``tidings users``) and Todos items."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.acceptance.target import Target


@dataclass(frozen=True)
class User:
    name: str
    password: str


class Users:
    """Users named ``acceptance-<role>-<random>``, so runs against one stack never meet."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._created: list[str] = []

    def add(self, role: str, tenants: Iterable[str] = ()) -> User:
        user = User(f"acceptance-{role}-{secrets.token_hex(4)}", secrets.token_urlsafe(18))
        self._target.add_user(user.name, user.password, frozenset(tenants))
        self._created.append(user.name)
        return user

    def remove_all(self) -> None:
        """Remove every user this object added (all are tried; the first failure is raised)."""
        failures: list[Exception] = []
        while self._created:
            try:
                self._target.remove_user(self._created.pop())
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


class Todos:
    """Writes Todos items with boto3, as an application does, and deletes them at the end."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._keys: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @property
    def table(self) -> str:
        return self._target.tables["TodosTable"]

    def put(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._keys.add((item["owner"]["S"], item["id"]["S"]))
        self._target.client("dynamodb").put_item(TableName=self.table, Item=item)

    def write(self, owner: str, count: int, start: int = 0, pause_s: float = 0.0) -> None:
        """``count`` new items ``item<n>`` with ``n`` from ``start``, one after another."""
        for n in range(start, start + count):
            self.put({"owner": {"S": owner}, "id": {"S": f"item{n}"}, "n": {"N": str(n)}})
            if pause_s:
                time.sleep(pause_s)

    def remove_all(self) -> None:
        dynamodb = self._target.client("dynamodb")
        with self._lock:
            keys, self._keys = sorted(self._keys), set()
        for owner, item_id in keys:
            dynamodb.delete_item(
                TableName=self.table, Key={"owner": {"S": owner}, "id": {"S": item_id}}
            )

"""``TransactWriteItems`` with DynamoDB's semantics, without whole-table copies.

moto 5.2.5 deep-copies every table a transaction touches, once per action, so that it can
roll back; against a growing change log that makes every publisher batch slower than the last
(a 100-change batch went from 0.5 s to 1.5 s over 10,000 writes), and the copy races
concurrent transactions ("dictionary changed size during iteration" → HTTP 500). moto also
appends a stream record for every write a transaction makes, and for every write of its
rollback, so a cancelled transaction left stream records behind.

DynamoDB checks every condition against the state before the transaction, writes nothing
unless all pass (``TransactionCanceledException`` with one reason per action otherwise),
isolates transactions from each other, and writes a transaction's stream records only if it
commits.

The fix replaces ``DynamoDBBackend.transact_write_items`` with one that keeps those
semantics: transactions are serialised, only the items the transaction touches are saved for
a rollback (if applying an action fails midway), and its writes' stream records are held back
until it ends and appended only if it commits: a cancelled transaction (even one rolled back
midway) leaves no stream record.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["apply", "apply_dynamodb_transaction_fixes"]

_applied = False
_guard = threading.Lock()


def apply_dynamodb_transaction_fixes() -> None:
    """Replace moto's ``DynamoDBBackend.transact_write_items`` (idempotent)."""
    global _applied
    with _guard:
        if _applied:
            return
        from moto.dynamodb import models as moto_models

        models: Any = moto_models
        lock = threading.Lock()
        original = models.DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            with lock:
                _transact(self, models, original, transact_items)

        models.DynamoDBBackend.transact_write_items = transact_write_items
        _applied = True


apply = apply_dynamodb_transaction_fixes


def _transact(backend: Any, models: Any, original: Any, items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(items) > 100:
        raise TooManyTransactionsException()
    plan: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    errors: list[Any] = []
    for entry in items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            original(backend, items)  # moto raises its own validation error
            return
        table_name = op["TableName"]
        table = backend.get_table(table_name)
        if op_type == "Put":
            attrs = op["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = op["Key"]
        marker = (str(table_name), str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        current = backend.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        failed: Any = (None, None, None)
        if condition is not None:
            check = models.get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            )
            if not check.expr(current):
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    old = current.to_json()["Attributes"]
                failed = ("ConditionalCheckFailed", ConditionalCheckFailed().message, old)
        errors.append(failed)
        plan.append((op_type, op, table_name, key))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    saved = [(name, key, backend.get_item(name, key)) for _, _, name, key in plan]
    saved = [
        (name, key, item.to_json()["Attributes"] if item else None) for name, key, item in saved
    ]
    held = _HeldStreamRecords(backend.get_table(name) for _, _, name, _ in plan)
    try:
        for op_type, op, table_name, key in plan:
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if op_type == "Put":
                backend.put_item(
                    table_name,
                    op["Item"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Delete":
                backend.delete_item(
                    table_name,
                    key,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Update":
                backend.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
    except Exception:
        try:
            for table_name, key, attributes in saved:
                if attributes is None:
                    backend.delete_item(table_name, key)
                else:
                    backend.put_item(table_name, attributes)
        finally:
            held.release(emit=False)  # a cancelled transaction leaves no stream record
        raise
    held.release(emit=True)


class _HeldStreamRecords:
    """Holds back the stream records a transaction's writes add, until it ends.

    DynamoDB writes a transaction's stream records only if it commits. moto appends one per
    write, and the rollback of a transaction that failed midway writes through ``put_item`` /
    ``delete_item`` too, so each table's shard is replaced, for the writing thread only, by
    one that keeps what it is given: appended to the real shard on commit (in order, as
    moto builds them), dropped on failure. Readers of the stream never see a held record.
    """

    def __init__(self, tables: Any) -> None:
        self._thread = threading.get_ident()
        self._held: list[tuple[Any, Any, Any]] = []
        self._tables: dict[int, tuple[Any, Any]] = {}
        for table in tables:
            shard = table.stream_shard
            if shard is not None and id(table) not in self._tables:
                self._tables[id(table)] = (table, shard)
                table.stream_shard = _HoldingShard(shard, self)

    def add(self, shard: Any, old: Any, new: Any) -> bool:
        """Keep ``(old, new)`` for ``shard`` if the transaction's thread wrote it."""
        if threading.get_ident() != self._thread:
            return False
        self._held.append((shard, old, new))
        return True

    def release(self, *, emit: bool) -> None:
        """Put the real shards back; with ``emit``, append the held records to them."""
        for table, shard in self._tables.values():
            table.stream_shard = shard
        held, self._held = self._held, []
        if emit:
            for shard, old, new in held:
                shard.add(old, new)


class _HoldingShard:
    """A table's stream shard while a transaction writes: ``add`` goes to the holder."""

    def __init__(self, shard: Any, holder: _HeldStreamRecords) -> None:
        self._shard = shard
        self._holder = holder

    def add(self, old: Any, new: Any) -> None:
        if not self._holder.add(self._shard, old, new):
            self._shard.add(old, new)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shard, name)

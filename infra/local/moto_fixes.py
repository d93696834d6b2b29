"""Fixes to moto's DynamoDB ``TransactWriteItems`` that the local stack needs.

moto runs in the local stack's own process (``ThreadedMotoServer``), so they are applied to
it in-process, once. moto 5.2.5 deep-copies every table a transaction touches, once per
action, so that it can roll back; against a growing change log that makes every publisher
batch slower than the last (a 100-change batch went from 0.5 s to 1.5 s over 10,000 writes),
and the copy races concurrent transactions ("dictionary changed size during iteration" →
HTTP 500), which DynamoDB's isolation never shows. The replacement keeps DynamoDB's
semantics: every condition is checked against the state before the transaction, nothing is
written unless all pass (``TransactionCanceledException`` with one reason per action
otherwise), and transactions are serialised. Only the items the transaction touches are
saved for a rollback, if applying an action fails midway.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["apply_dynamodb_transaction_fixes"]

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
        for table_name, key, attributes in saved:
            if attributes is None:
                backend.delete_item(table_name, key)
            else:
                backend.put_item(table_name, attributes)
        raise


def apply_stream_fix(notify: Any = None) -> None:
    """moto must not run event source mappings itself: the local stack's pump does.

    ``notify(table_name)``, if given, is called after every stream record is added, so the
    pump can read at once instead of waiting for its next poll.

    moto tries to invoke a mapped function through Docker on every stream write (spawning
    ``curl`` each time) and empties the stream when that succeeds; the mappings stay
    registered in its Lambda API, but the records are left for the pump to read.
    """
    from moto.dynamodb.models import table as moto_table

    shard: Any = moto_table.StreamShard
    if getattr(shard, "_tidings_fixed", False):
        return
    original = shard.add

    def add(self: Any, old: Any, new: Any) -> None:
        mappings = self.table.lambda_event_source_mappings
        self.table.lambda_event_source_mappings = {}
        try:
            original(self, old, new)
        finally:
            self.table.lambda_event_source_mappings = mappings
        if notify is not None:
            notify(self.table.name)

    shard.add = add
    shard._tidings_fixed = True


_COGNITO_IDENTITY_ID = r"^[a-z]{2}(-[a-z]+)+-\d:[0-9a-f-]{36}$"


def apply_iot_cognito_targets_fix() -> None:
    """IoT ``AttachPolicy``/``DetachPolicy`` accept any Cognito identity id, as AWS does.

    moto 5.2.5 accepts only identity ids its own cognito-identity issued; the local stack's
    identity service issues them instead.
    """
    import re

    from moto.iot import models as iot_models

    backend: Any = iot_models.IoTBackend
    if getattr(backend, "_tidings_fixed", False):
        return
    original = backend._get_principal
    pattern = re.compile(_COGNITO_IDENTITY_ID)

    def get_principal(self: Any, principal_arn: str) -> Any:
        if pattern.match(principal_arn):
            return {"IdentityId": principal_arn}
        return original(self, principal_arn)

    backend._get_principal = get_principal
    backend._tidings_fixed = True

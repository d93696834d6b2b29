"""The DynamoDB condition keys AWS puts in a request's IAM context.

A policy can limit a principal to some items of a table with DynamoDB's own condition keys;
the classic one gives each Cognito identity its own partition::

    "Condition": {"ForAllValues:StringEquals":
                  {"dynamodb:LeadingKeys": ["${cognito-identity.amazonaws.com:sub}"]}}

AWS evaluates such a policy against keys it takes from the request. This module takes the
same keys from a request's JSON body, for :class:`~infra.local.motohost.auth.MotoAuth`:

- ``dynamodb:LeadingKeys``: the partition key value of every item the request part touches:
  ``Key`` (GetItem, UpdateItem, DeleteItem, a transaction's Get/Update/Delete/ConditionCheck),
  ``Item`` (PutItem, a transaction's Put), each ``PutRequest.Item`` / ``DeleteRequest.Key`` of
  one table in BatchWriteItem, each of ``Keys`` of one table in BatchGetItem, and the
  partition key's equality in a Query's ``KeyConditionExpression`` (parsed by moto's own
  parser, so the partition authorised is the one moto reads) or legacy ``KeyConditions``;
  for a Query on an index, the index's partition key. A Scan names no partition: the key is
  absent, and ``ForAllValues`` is then true (IAM: "The ForAllValues set operator also returns
  true if there are no context keys in the request"), which is why such a policy must not
  allow Scan. A string or number key gives its text, a binary key its base64 text as sent.
- ``dynamodb:Select`` (Query, Scan) and ``dynamodb:ReturnValues`` (PutItem, UpdateItem,
  DeleteItem), when the request names them.

``dynamodb:Attributes`` is not derived (it needs every attribute an expression names): a
policy conditioned on it sees the key absent here.

Nothing here does I/O: the table's key schema comes from a :data:`KeySchemas` lookup
(:func:`moto_key_schemas` reads moto's backend in the moto process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "LEADING_KEYS",
    "RETURN_VALUES",
    "SELECT",
    "KeySchemas",
    "batch_condition_keys",
    "condition_keys",
    "moto_key_schemas",
    "partition_key",
]

LEADING_KEYS = "dynamodb:LeadingKeys"
SELECT = "dynamodb:Select"
RETURN_VALUES = "dynamodb:ReturnValues"

KeySchemas = Callable[[str, str | None], Sequence[Mapping[str, Any]] | None]
"""(table name or ARN, index name or None) → the KeySchema list, or None when unknown."""

Context = dict[str, list[str]]

_KEYED = frozenset(
    {"GetItem", "UpdateItem", "DeleteItem", "Get", "Update", "Delete", "ConditionCheck"}
)
_ITEM = frozenset({"PutItem", "Put"})
_RETURNS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})


def partition_key(schema: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The name of the (first) HASH attribute of a KeySchema, or None."""
    for element in schema or ():
        if isinstance(element, Mapping) and element.get("KeyType") == "HASH":
            name = element.get("AttributeName")
            return name if isinstance(name, str) else None
    return None


def condition_keys(operation: str, part: Mapping[str, Any], key_schemas: KeySchemas) -> Context:
    """The condition keys of one single-table request part.

    ``operation`` is the DynamoDB operation (``PutItem``, ``Query``, ``Scan``...) or the kind
    of a transaction item (``Put``, ``Update``, ``Delete``, ``ConditionCheck``, ``Get``);
    ``part`` its parameters (the whole body, or the transaction item's inner mapping).
    """
    context: Context = {}
    table = part.get("TableName")
    if operation in _KEYED or operation in _ITEM or operation == "Query":
        index = part.get("IndexName") if operation == "Query" else None
        schema = (
            key_schemas(table, index if isinstance(index, str) else None)
            if isinstance(table, str)
            else None
        )
        hash_key = partition_key(schema)
        if hash_key is not None:
            if operation == "Query":
                values = _query_partition(part, hash_key, schema or ())
            else:
                found = part.get("Item" if operation in _ITEM else "Key")
                values = _values([found], hash_key)
            if values is not None:
                context[LEADING_KEYS] = values
    if operation in ("Query", "Scan") and isinstance(part.get("Select"), str):
        context[SELECT] = [part["Select"]]
    if operation in _RETURNS and isinstance(part.get("ReturnValues"), str):
        context[RETURN_VALUES] = [part["ReturnValues"]]
    return context


def batch_condition_keys(
    operation: str, table: str, requests: Any, key_schemas: KeySchemas
) -> Context:
    """The condition keys of one table's share of a BatchWriteItem or BatchGetItem.

    ``requests`` is ``RequestItems[table]``: a list of ``{"PutRequest": {"Item": ...}}`` /
    ``{"DeleteRequest": {"Key": ...}}`` (write) or ``{"Keys": [...], ...}`` (get).
    """
    hash_key = partition_key(key_schemas(table, None))
    if hash_key is None:
        return {}
    items: list[Any] = []
    if operation == "BatchWriteItem" and isinstance(requests, list):
        for request in requests:
            if not isinstance(request, Mapping):
                continue
            put, delete = request.get("PutRequest"), request.get("DeleteRequest")
            if isinstance(put, Mapping):
                items.append(put.get("Item"))
            if isinstance(delete, Mapping):
                items.append(delete.get("Key"))
    elif operation == "BatchGetItem" and isinstance(requests, Mapping):
        keys = requests.get("Keys")
        items.extend(keys if isinstance(keys, list) else [])
    values = _values(items, hash_key)
    return {} if values is None else {LEADING_KEYS: values}


def _values(items: Iterable[Any], hash_key: str) -> list[str] | None:
    """The partition key values of ``items`` (each a DynamoDB-JSON item or key), in order,
    without repeats; None if no item names one."""
    out: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        text = _text(item.get(hash_key))
        if text is not None and text not in out:
            out.append(text)
    return out or None


def _text(value: Any) -> str | None:
    """The text of a scalar attribute value (``{"S": ..}``, ``{"N": ..}``, ``{"B": ..}``)."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, raw),) = value.items()
        if kind in ("S", "N", "B") and isinstance(raw, str):
            return raw
    return None


def _query_partition(
    part: Mapping[str, Any], hash_key: str, schema: Sequence[Mapping[str, Any]]
) -> list[str] | None:
    expression = part.get("KeyConditionExpression")
    if isinstance(expression, str):
        from moto.dynamodb.parsing.key_condition_expression import parse_expression

        names = part.get("ExpressionAttributeNames")
        values = part.get("ExpressionAttributeValues")
        try:
            hash_conditions, _, _ = parse_expression(
                key_condition_expression=expression,
                expression_attribute_values=dict(values) if isinstance(values, Mapping) else {},
                expression_attribute_names=dict(names) if isinstance(names, Mapping) else {},
                schema=[dict(element) for element in schema],
            )
        except Exception:  # moto refuses the same expression when it runs the query
            return None
        return _values(
            [{name: value} for name, value in hash_conditions if name == hash_key], hash_key
        )
    conditions = part.get("KeyConditions")
    if isinstance(conditions, Mapping):
        condition = conditions.get(hash_key)
        if isinstance(condition, Mapping) and condition.get("ComparisonOperator") == "EQ":
            found = condition.get("AttributeValueList")
            if isinstance(found, list):
                return _values([{hash_key: value} for value in found], hash_key)
    return None


def moto_key_schemas(account_id: str, region: str) -> KeySchemas:
    """A :data:`KeySchemas` that reads the tables of moto's DynamoDB backend (in the moto
    process): the key schema as moto holds it at the moment of the request."""

    def lookup(table: str, index: str | None) -> Sequence[Mapping[str, Any]] | None:
        from moto.dynamodb.models import dynamodb_backends

        try:
            schema = dynamodb_backends[account_id][region].get_schema(
                table_name=table, index_name=index
            )
        except Exception:  # no such table or index: moto answers the request itself
            return None
        return list(schema) if isinstance(schema, list) else None

    return lookup

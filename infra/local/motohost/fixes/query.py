"""``Query`` answered from its one partition, found by bisection.

moto 5.2.5 answers every ``Query`` by sorting every item of the whole table, then walking the
partition from its first item; reading page 10 of a channel's change log cost ~0.5 s. It
returns a ``LastEvaluatedKey`` at ``Limit`` only when another item follows.

DynamoDB reads the one partition, from the key range's start, and returns a
``LastEvaluatedKey`` whenever it stops at ``Limit``, even when no item follows.

The fix replaces ``Table.query`` for base-table queries: it reads the one partition and finds
the key range by bisection, with the same results, order, paging and limits as moto, and a
``LastEvaluatedKey`` at ``Limit`` as in DynamoDB. Index queries, tables without a sort key
and the legacy ``QueryFilter`` keep moto's own code.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

__all__ = ["apply", "apply_dynamodb_query_fix"]

# Key conditions on a sort key that select one contiguous run of the sorted partition.
_RANGE_OPERATORS = {"EQ", "=", "LT", "<", "LE", "<=", "GT", ">", "GE", ">=", "BETWEEN"}


def apply_dynamodb_query_fix() -> None:
    """Answer base-table queries from their one partition, found by bisection (idempotent).

    Index queries, tables without a sort key and the legacy ``QueryFilter`` keep moto's own
    code.
    """
    from moto.dynamodb.models import table as moto_table

    table_class: Any = moto_table.Table
    if getattr(table_class, "_tidings_query_fixed", False):
        return
    original = table_class.query

    def query(
        self: Any,
        hash_key: Any,
        range_comparison: str | None,
        range_objs: list[Any],
        limit: int,
        exclusive_start_key: dict[str, Any] | None,
        scan_index_forward: bool,
        projection_expressions: list[list[str]] | None,
        index_name: str | None = None,
        consistent_read: bool = False,
        filter_expression: Any = None,
        hash_key_conditions: Any = None,
        range_key_conditions: Any = None,
        **filter_kwargs: Any,
    ) -> tuple[list[Any], int, dict[str, Any] | None]:
        positional = (
            hash_key,
            range_comparison,
            range_objs,
            limit,
            exclusive_start_key,
            scan_index_forward,
            projection_expressions,
        )
        if (
            index_name
            or filter_kwargs
            or hash_key is None
            or self.range_key_attr is None
            or len(range_key_conditions or ()) > 1
            or (range_comparison is not None and range_comparison not in _RANGE_OPERATORS)
        ):
            return original(  # type: ignore[no-any-return]
                self,
                *positional,
                index_name,
                consistent_read,
                filter_expression,
                hash_key_conditions=hash_key_conditions,
                range_key_conditions=range_key_conditions,
                **filter_kwargs,
            )
        return _query_partition(self, moto_table, *positional, filter_expression)

    table_class.query = query
    table_class._tidings_original_query = original  # for the test that compares the two
    table_class._tidings_query_fixed = True


apply = apply_dynamodb_query_fix


def _query_partition(
    table: Any,
    moto_table: Any,
    hash_key: Any,
    range_comparison: str | None,
    range_objs: list[Any],
    limit: int | None,
    exclusive_start_key: dict[str, Any] | None,
    scan_index_forward: bool,
    projection_expressions: list[list[str]] | None,
    filter_expression: Any,
) -> tuple[list[Any], int, dict[str, Any] | None]:
    import copy

    partition = table.items.get(hash_key)  # .get: the table's defaultdict must not grow
    keyed = sorted(
        ((item.range_key.cast_value, item) for item in (partition or {}).values()),
        key=lambda pair: pair[0],
    )
    keys = [key for key, _ in keyed]
    low, high = 0, len(keyed)
    if range_comparison is not None:
        bounds = [obj.cast_value for obj in range_objs]
        low, high = _key_run(keys, range_comparison, bounds)
    if exclusive_start_key:
        start = moto_table.DynamoType(exclusive_start_key[table.range_key_attr]).cast_value
        if scan_index_forward:
            low = max(low, bisect_right(keys, start))
        else:
            high = min(high, bisect_left(keys, start))
    candidates = [item for _, item in keyed[low:high]]
    if not scan_index_forward:
        candidates.reverse()
    results: list[Any] = []
    size = 0
    last_evaluated_key = None
    for item in candidates:
        item_size = item.size()
        if results and (len(results) == limit or size + item_size > moto_table.RESULT_SIZE_LIMIT):
            last_evaluated_key = table._get_last_evaluated_key(results[-1], None)
            break
        results.append(item)
        size += item_size
    if last_evaluated_key is None and results and len(results) == limit:
        # DynamoDB stops at the limit and returns the last key even when nothing follows
        last_evaluated_key = table._get_last_evaluated_key(results[-1], None)
    scanned_count = len(results)
    results = copy.deepcopy(results)
    if filter_expression is not None:
        results = [item for item in results if filter_expression.expr(item)]
    if projection_expressions:
        results = [item.project(projection_expressions) for item in results]
    return results, scanned_count, last_evaluated_key


def _key_run(keys: list[Any], operator: str, bounds: list[Any]) -> tuple[int, int]:
    """The slice of the sorted ``keys`` that ``key <operator> bounds`` selects."""
    if operator == "BETWEEN":
        return bisect_left(keys, bounds[0]), bisect_right(keys, bounds[1])
    value = bounds[0]
    if operator in ("EQ", "="):
        return bisect_left(keys, value), bisect_right(keys, value)
    if operator in ("LT", "<"):
        return 0, bisect_left(keys, value)
    if operator in ("LE", "<="):
        return 0, bisect_right(keys, value)
    if operator in ("GT", ">"):
        return bisect_right(keys, value), len(keys)
    return bisect_left(keys, value), len(keys)  # GE

"""Fixes to moto that the local stack needs: DynamoDB transactions and queries, streams, IoT.

``apply_local_stack_fixes`` applies them all, in the process that runs moto
(``ThreadedMotoServer``), once. They are written for one moto release, :data:`MOTO_VERSION`:
:func:`check_moto_version` refuses any other (``tidings up`` and the moto process call it
before they start). moto 5.2.5 deep-copies every table a transaction touches, once per
action, so that it can roll back; against a growing change log that makes every publisher
batch slower than the last (a 100-change batch went from 0.5 s to 1.5 s over 10,000 writes),
and the copy races concurrent transactions ("dictionary changed size during iteration" →
HTTP 500), which DynamoDB's isolation never shows. The replacement keeps DynamoDB's
semantics: every condition is checked against the state before the transaction, nothing is
written unless all pass (``TransactionCanceledException`` with one reason per action
otherwise), and transactions are serialised. Only the items the transaction touches are
saved for a rollback, if applying an action fails midway. Its writes' stream records are
held back until it ends and appended only if it commits: a cancelled transaction (even one
rolled back midway) leaves no stream record, as in DynamoDB.

moto 5.2.5 answers every ``Query`` by sorting every item of the whole table, then walking the
partition from its first item; reading page 10 of a channel's change log cost ~0.5 s. The
replacement (base-table queries only) reads the one partition and finds the key range by
bisection, with the same results, order, paging and limits; like DynamoDB (and unlike moto) it
returns a ``LastEvaluatedKey`` whenever it stops at ``Limit``, even when no item follows.

moto 5.2.5 writes every DynamoDB answer by walking botocore's output shape value by value,
which took over half of a 1,000-item Query's time. Answers of the item operations (get, put,
update, delete, query, scan, batch and transaction calls) are written with ``json.dumps``
instead: the same JSON, blobs in base64 as the shape walker writes them. Anything else (a
timestamp, an error, another operation) still goes through moto's serializer. DynamoDB
Streams' ``GetRecords`` answers (read for every batch the pump delivers) are written the same
way, with their timestamps as the shape walker writes them.

moto parses a condition expression two or three times per action (validation, the
transaction's check, the write); a transaction of the publisher parsed 33 of them. Parsed
conditions are remembered by their text, names and values (the tree is read-only once
built), so ``attribute_not_exists(pk)`` is parsed once; a syntax error is answered with
HTTP 400 ``ValidationException`` as DynamoDB does (moto answers HTTP 500).

moto applies an ``UpdateItem`` in place, and creates a missing item first with its key alone:
a ``GetItem`` at the same moment saw an item without the updated attributes (the channels
API read a head without ``head``). DynamoDB's reads never see half a write, so the item
requests are handled one at a time, each with its answer built before the next starts.
"""

from __future__ import annotations

import base64
import json
import threading
from bisect import bisect_left, bisect_right
from typing import Any

__all__ = [
    "MOTO_VERSION",
    "MotoVersionError",
    "apply_condition_cache",
    "apply_dynamodb_isolation_fix",
    "apply_dynamodb_query_fix",
    "apply_dynamodb_response_fix",
    "apply_dynamodb_transaction_fixes",
    "apply_get_records_response_fix",
    "apply_iot_cognito_targets_fix",
    "apply_local_stack_fixes",
    "apply_routing_fix",
    "apply_stream_fix",
    "check_moto_version",
    "get_records_body",
]

MOTO_VERSION = "5.2.5"
"""The moto release the fixes are written for: each replaces or wraps that release's code."""

_applied = False
_guard = threading.Lock()


class MotoVersionError(RuntimeError):
    """The installed moto is not :data:`MOTO_VERSION`; the message says both and the fix."""


def _installed_moto_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("moto")
    except PackageNotFoundError:
        return None


def check_moto_version() -> None:
    """Raise :class:`MotoVersionError` unless the installed moto is :data:`MOTO_VERSION`."""
    installed = _installed_moto_version()
    if installed == MOTO_VERSION:
        return
    found = f"moto {installed} is installed" if installed else "moto is not installed"
    raise MotoVersionError(
        f"the local stack's moto fixes are written for moto {MOTO_VERSION}, but {found}: "
        f"install it with pip install 'moto[server]=={MOTO_VERSION}'"
    )


def apply_local_stack_fixes(notify: Any = None) -> None:
    """Apply every fix; ``notify`` as for :func:`apply_stream_fix` (idempotent).

    Raises :class:`MotoVersionError` (before changing anything) if the installed moto is
    not the release the fixes are written for.
    """
    check_moto_version()
    apply_dynamodb_isolation_fix()
    apply_dynamodb_transaction_fixes()
    apply_dynamodb_query_fix()
    apply_dynamodb_response_fix()
    apply_get_records_response_fix()
    apply_condition_cache()
    apply_stream_fix(notify)
    apply_routing_fix()
    apply_iot_cognito_targets_fix()


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


def apply_stream_fix(notify: Any = None) -> None:
    """moto must not run event source mappings itself: the local stack's pump does.

    ``notify(table_name)``, if given, is called after every stream record is added, so the
    pump can read at once instead of waiting for its next poll.

    moto's ``StreamShard.add`` invokes every mapped function through Docker on each stream
    write (spawning ``curl`` each time) and empties the stream when that succeeds; the
    replacement only appends the record, exactly as moto builds it. The mappings stay
    registered in moto's Lambda API; the records are left for the pump to read.
    """
    from moto.dynamodb.models import table as moto_table

    shard: Any = moto_table.StreamShard
    if getattr(shard, "_tidings_fixed", False):
        return

    def add(self: Any, old: Any, new: Any) -> None:
        view = self.table.stream_specification["StreamViewType"]
        if old is None:
            event_name = "INSERT"
        elif new is None:
            event_name = "REMOVE"
        else:
            event_name = "MODIFY"
        seq = len(self.items) + self.starting_sequence_number
        self.items.append(moto_table.StreamRecord(self.table, view, event_name, old, new, seq))
        if notify is not None:
            notify(self.table.name)

    shard.add = add
    shard._tidings_fixed = True


def apply_routing_fix() -> None:
    """Remember which moto service answers each host name (idempotent).

    moto's server works out the service of every request under one process-wide lock, and
    that lookup lists moto's package folder on disk and tries a few hundred URL patterns:
    about 1 ms per request with every other request waiting. A host name always maps to the
    same service, so the answer is kept.
    """
    from moto.moto_server import werkzeug_app

    dispatcher: Any = werkzeug_app.DomainDispatcherApplication
    if getattr(dispatcher, "_tidings_fixed", False):
        return
    original = dispatcher.get_backend_for_host
    known: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            return known[host]
        except KeyError:
            backend = original(self, host)
            if len(known) < 1000:  # the host comes from the request: keep the cache bounded
                known[host] = backend
            return backend

    dispatcher.get_backend_for_host = get_backend_for_host
    dispatcher._tidings_original_get_backend_for_host = original  # for the comparing test
    dispatcher._tidings_fixed = True


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


# Operations whose answers hold only strings, numbers, booleans, blobs, lists and maps.
_ITEM_OPERATIONS = frozenset(
    {
        "BatchGetItem",
        "BatchWriteItem",
        "DeleteItem",
        "GetItem",
        "PutItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "TransactWriteItems",
        "UpdateItem",
    }
)
_JSON_CONTENT_TYPE = "application/x-amz-json-1.0"


def apply_dynamodb_response_fix() -> None:
    """Write the answers of DynamoDB's item operations with ``json.dumps`` (idempotent)."""
    from moto.core import serialize
    from moto.dynamodb import responses

    result_class: Any = responses.DynamoResult
    if getattr(result_class, "_tidings_fixed", False):
        return
    original = result_class.execute_result

    def execute_result(self: Any, context: Any) -> Any:
        if (
            context.operation_model.name in _ITEM_OPERATIONS
            and issubclass(context.serializer_class, serialize.BaseJSONSerializer)
            and isinstance(self.result, dict)
        ):
            try:
                body = json.dumps(self.result, default=_blob)
            except TypeError:  # a value only moto's serializer knows how to write
                return original(self, context)
            return 200, {"Content-Type": _JSON_CONTENT_TYPE}, body
        return original(self, context)

    result_class.execute_result = execute_result
    result_class._tidings_original_execute_result = original  # for the comparing test
    result_class._tidings_fixed = True


def _blob(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON: {type(value).__name__}")


def apply_get_records_response_fix() -> None:
    """Write DynamoDB Streams' ``GetRecords`` answers with ``json.dumps`` (idempotent).

    An iterator the stream never handed out gets AWS's 400 ``ValidationException`` instead
    of moto's 500.
    """
    from moto.core import responses as core_responses
    from moto.core import serialize
    from moto.dynamodbstreams import responses

    handler: Any = responses.DynamoDBStreamsHandler
    if getattr(handler, "_tidings_fixed", False):
        return
    original = handler.get_records

    class JsonResult(core_responses.ActionResult):
        def execute_result(self, context: Any) -> Any:
            if not issubclass(context.serializer_class, serialize.BaseJSONSerializer):
                return super().execute_result(context)
            return 200, {"Content-Type": _JSON_CONTENT_TYPE}, get_records_body(self.result)

    def get_records(self: Any) -> Any:
        iterator = self._get_param("ShardIterator")
        if iterator not in self.backend.shard_iterators:  # moto would fail with a KeyError
            from moto.core.exceptions import JsonRESTError

            raise JsonRESTError("ValidationException", f"Invalid ShardIterator: {iterator!r}")
        result = original(self)
        if type(result) is core_responses.ActionResult and isinstance(result.result, dict):
            return JsonResult(result.result)
        return result

    handler.get_records = get_records
    handler._tidings_original_get_records = original  # for the comparing test
    handler._tidings_fixed = True


def get_records_body(result: Any) -> str:
    """The JSON text of a ``GetRecords`` answer (``result`` as moto's backend returns it)."""
    from moto.core import serialize

    return json.dumps(_records_json(result, serialize.TimestampSerializer._timestamp_unixtimestamp))


def _records_json(value: Any, unixtime: Any) -> Any:
    """A GetRecords answer as moto's shape walker writes it: ``B``/``BS`` values in base64
    (of their text when moto holds them as text), timestamps as epoch seconds."""
    import datetime

    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "B" and isinstance(item, str | bytes):
                out[key] = _base64_text(item)
            elif key == "BS" and isinstance(item, list):
                out[key] = [_base64_text(member) for member in item]
            else:
                out[key] = _records_json(item, unixtime)
        return out
    if isinstance(value, list):
        return [_records_json(item, unixtime) for item in value]
    if isinstance(value, datetime.datetime):
        return unixtime(value)
    return value


def _base64_text(value: str | bytes) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(data).decode("ascii")


def apply_condition_cache(size: int = 1024) -> None:
    """Remember parsed condition expressions, the ``size`` most recent (idempotent)."""
    from collections import OrderedDict

    from moto.dynamodb import comparisons
    from moto.dynamodb.exceptions import MockValidationException

    parser_class: Any = comparisons.ConditionExpressionParser
    if getattr(parser_class, "_tidings_fixed", False):
        return
    original = parser_class.parse
    parsed: OrderedDict[tuple[Any, ...], tuple[Any, list[str], list[str]]] = OrderedDict()
    lock = threading.Lock()

    def parse(self: Any) -> Any:
        if self.condition_expression is None:
            return original(self)
        try:
            key = (
                self.condition_expression,
                json.dumps(self.expression_attribute_names, sort_keys=True),
                json.dumps(self.expression_attribute_values, sort_keys=True),
            )
        except (TypeError, ValueError):
            return original(self)
        with lock:
            hit = parsed.get(key)
            if hit is not None:
                parsed.move_to_end(key)
        if hit is None:
            try:
                tree = original(self)  # an invalid expression is not kept
            except ValueError as exc:  # moto answers a syntax error with HTTP 500; AWS, 400
                raise MockValidationException(f"Invalid expression: {exc}") from exc
            hit = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            with lock:
                parsed[key] = hit
                while len(parsed) > size:
                    parsed.popitem(last=False)
        tree, names, values = hit
        self.expr_attr_names_found = list(names)
        self.expr_attr_values_found = list(values)
        return tree

    parser_class.parse = parse
    parser_class._tidings_fixed = True


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

"""Long-poll leases: how many waiting polls an identity may hold open at once.

A waiting poll (``GET /v1/channels/<channel>/changes?wait=<s>`` with ``s > 0`` and nothing
new yet) holds one Lambda execution for up to its whole wait. Without a bound, one identity's
polls, well inside the stage's request throttle, would take every execution the channels
function may use and delay or refuse everyone else's requests. So the channels API lets an
identity hold at most **one waiting poll per channel** and at most **``max_per_identity``
waiting polls over all channels** (``TIDINGS_MAX_WAITS_PER_IDENTITY``, default 4). A request
that would wait and gets no slot is answered at once: 429 ``too_many_waits`` with
``Retry-After``. A request with ``wait=0``, or one whose changes are already there, never
waits and takes no slot.

**Semantics chosen.** A second waiting poll of an identity on a channel it already waits on
is refused; it does not supersede the first. Superseding would need the first waiter to watch
its lease (a read per waiting poll every interval) and would still let a client keep several
executions busy on one channel while the superseded ones notice. A refusal costs a well-behaved
client little: the poll already waiting gets the same changes, and a client that lost its
connection mid-wait (a phone changing networks) can read with ``wait=0`` (no slot needed) and
long-poll again after ``Retry-After``, which is when the old wait ends at the latest.
``Retry-After`` is the number of whole seconds (at least 1) until the earliest blocking wait
ends.

**Where the slots live.** Waits of one identity run in any number of Lambda instances, so
the slots are items of a DynamoDB table (``PollLeasesTable`` in the template: partition key
``pk`` (S), TTL attribute ``expires``):

* ``channel#<identity>#<channel>`` — the identity's waiting poll on that channel;
* ``slot#<identity>#<k>`` for ``k`` in ``0 .. max_per_identity-1`` — its wait slots.

Each holds ``token`` (random, one per request), ``until_ms`` (the lease's end) and
``expires`` (the TTL, which only tidies up: an expired lease is free whether or not DynamoDB
has deleted it yet).

**Acquire** is a conditional ``PutItem`` of the channel item, then of the slots in order
until one succeeds, each on ``attribute_not_exists(pk) OR until_ms < :now``; when no slot is
free the channel item is deleted again. **Release** is a conditional ``DeleteItem`` of each
item on ``token = :mine``, so a request whose lease ran out and was taken over never frees
someone else's. A lease ends at the wait's end plus :data:`LEASE_MARGIN_S`, longer than the
channels function may run past the longest wait (timeout 29 s, wait at most 20 s), so a
Lambda that crashes or times out mid-wait frees its slots by itself, and a live one keeps
them until it answers. The channels role may only ``PutItem`` and ``DeleteItem`` this table.

Pure logic (keys, request shapes, lease ends, ``Retry-After``) is separate from the I/O in
:class:`PollLeases`, which translates botocore errors: a failed acquire is a
:class:`~backend.errors.StoreError` (the API answers 503); a failed release is logged and
left to expire.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from backend.errors import StoreError

__all__ = [
    "LEASE_MARGIN_S",
    "Lease",
    "PollLeases",
    "Refused",
    "channel_key",
    "delete_request",
    "lease_until_ms",
    "put_request",
    "retry_after_s",
    "slot_keys",
]

LEASE_MARGIN_S = 10.0
"""How long a lease outlives its wait: covers the channels function's timeout (29 s) past
the longest wait (20 s)."""
TTL_ATTRIBUTE = "expires"
TTL_GRACE_S = 3600  # the item is kept (expired) a while after the lease ends: tidying only
MAX_RETRY_AFTER_S = 60
UNKNOWN_WAIT_S = 20.0  # a blocker whose lease could not be read: assume the longest wait
_CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Lease:
    """The items one waiting poll holds; give it back with :meth:`PollLeases.release`."""

    token: str
    keys: tuple[str, ...]
    until_ms: int


@dataclass(frozen=True)
class Refused:
    """No slot: ``reason`` says which limit, ``retry_after_s`` when one should be free."""

    reason: Literal["channel", "identity"]
    retry_after_s: int
    limit: int


def channel_key(identity: str, channel: str) -> str:
    """The item of an identity's waiting poll on one channel."""
    return f"channel#{identity}#{channel}"


def slot_keys(identity: str, count: int) -> list[str]:
    """The items of an identity's ``count`` wait slots, in the order they are tried."""
    return [f"slot#{identity}#{k}" for k in range(count)]


def lease_until_ms(now_s: float, wait_s: float, margin_s: float = LEASE_MARGIN_S) -> int:
    """When a lease taken at ``now_s`` for a ``wait_s`` wait ends (ms since the epoch)."""
    return math.ceil((now_s + wait_s + margin_s) * 1000)


def retry_after_s(
    now_s: float,
    blocking_until_ms: Iterable[int | None],
    margin_s: float = LEASE_MARGIN_S,
) -> int:
    """Whole seconds until the earliest blocking wait ends (its lease's end less the margin).

    At least 1, at most :data:`MAX_RETRY_AFTER_S`; a blocker whose end is unknown counts as
    ending after the longest wait.
    """
    ends = [
        (until / 1000 - margin_s) if until is not None else now_s + UNKNOWN_WAIT_S
        for until in blocking_until_ms
    ]
    if not ends:
        return 1
    seconds = math.ceil(min(ends) - now_s)
    return max(1, min(MAX_RETRY_AFTER_S, seconds))


def put_request(
    table: str, key: str, token: str, until_ms: int, now_ms: int, identity: str, channel: str
) -> dict[str, Any]:
    """The conditional ``PutItem`` that takes ``key`` unless a live lease holds it."""
    return {
        "TableName": table,
        "Item": {
            "pk": {"S": key},
            "token": {"S": token},
            "until_ms": {"N": str(until_ms)},
            TTL_ATTRIBUTE: {"N": str(until_ms // 1000 + TTL_GRACE_S)},
            "identity": {"S": identity},
            "channel": {"S": channel},
        },
        "ConditionExpression": "attribute_not_exists(pk) OR until_ms < :now",
        "ExpressionAttributeValues": {":now": {"N": str(now_ms)}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def delete_request(table: str, key: str, token: str) -> dict[str, Any]:
    """The conditional ``DeleteItem`` that frees ``key`` only if ``token`` still holds it."""
    return {
        "TableName": table,
        "Key": {"pk": {"S": key}},
        "ConditionExpression": "#token = :token",
        "ExpressionAttributeNames": {"#token": "token"},
        "ExpressionAttributeValues": {":token": {"S": token}},
    }


def _until_of(item: Mapping[str, Any] | None) -> int | None:
    try:
        return int((item or {})["until_ms"]["N"])
    except (KeyError, TypeError, ValueError):
        return None


class PollLeases:
    """Long-poll slots in DynamoDB (see the module docstring for the rules)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        max_per_identity: int = 4,
        *,
        clock: Callable[[], float] = time.time,
        margin_s: float = LEASE_MARGIN_S,
        new_token: Callable[[], str] = lambda: uuid.uuid4().hex,
        logger: Any = None,
    ) -> None:
        """``dynamodb`` is a boto3 DynamoDB client (or a zero-argument callable returning one)."""
        if max_per_identity < 1:
            raise ValueError("max_per_identity must be at least 1")
        self._dynamodb = dynamodb
        self.table = table
        self.max_per_identity = max_per_identity
        self._clock = clock
        self.margin_s = margin_s
        self._new_token = new_token
        self.logger = logger

    @property
    def dynamodb(self) -> Any:
        """The DynamoDB client (resolved lazily when a factory was given)."""
        if callable(self._dynamodb) and not hasattr(self._dynamodb, "put_item"):
            self._dynamodb = self._dynamodb()
        return self._dynamodb

    def acquire(self, identity: str, channel: str, wait_s: float) -> Lease | Refused:
        """Take the identity's lease on ``channel`` and one of its slots for ``wait_s``.

        Returns the :class:`Lease`, or :class:`Refused` when a limit is reached; raises
        :class:`StoreError` when DynamoDB fails.
        """
        token = self._new_token()
        now = self._clock()
        until = lease_until_ms(now, wait_s, self.margin_s)
        now_ms = int(now * 1000)

        def take(key: str) -> tuple[bool, int | None]:
            return self._put(put_request(self.table, key, token, until, now_ms, identity, channel))

        own_channel = channel_key(identity, channel)
        taken, holder_until = take(own_channel)
        if not taken:
            return Refused(
                "channel", retry_after_s(now, [holder_until], self.margin_s), self.max_per_identity
            )
        blockers: list[int | None] = []
        for key in slot_keys(identity, self.max_per_identity):
            try:
                taken, holder_until = take(key)
            except StoreError:
                self._delete(own_channel, token)
                raise
            if taken:
                return Lease(token, (own_channel, key), until)
            blockers.append(holder_until)
        self._delete(own_channel, token)
        return Refused(
            "identity", retry_after_s(now, blockers, self.margin_s), self.max_per_identity
        )

    def release(self, lease: Lease) -> None:
        """Give the lease's items back; never raises (a lease left behind expires)."""
        for key in reversed(lease.keys):
            self._delete(key, lease.token)

    # ------------------------------------------------------------------------------ I/O
    def _put(self, request: dict[str, Any]) -> tuple[bool, int | None]:
        """(True, None) if the item was taken, (False, holder's until_ms) if a lease holds it."""
        try:
            self.dynamodb.put_item(**request)
        except Exception as exc:
            if _error_code(exc) == _CONDITION_FAILED:
                return False, _until_of(getattr(exc, "response", {}).get("Item"))
            raise StoreError(
                f"taking a long-poll slot failed ({_error_code(exc) or type(exc).__name__}): {exc}"
            ) from exc
        return True, None

    def _delete(self, key: str, token: str) -> None:
        try:
            self.dynamodb.delete_item(**delete_request(self.table, key, token))
        except Exception as exc:
            if _error_code(exc) == _CONDITION_FAILED:
                return  # it expired and another request holds it now: not ours to free
            if self.logger is not None:
                self.logger.warning(
                    "freeing long-poll slot %s failed (it expires by itself): %s", key, exc
                )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""

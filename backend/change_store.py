"""Per-channel sequence numbers and the change log, in DynamoDB.

Two tables (names from the settings):

* **sequence table**, partition key ``pk`` (S), TTL attribute ``expires``:
  ``head#<channel>`` → ``head`` (the channel's last seq) and ``epoch``;
  ``event#<channel>#<eventID>`` → the ``seq``/``epoch`` that stream event got on that channel
  (the idempotency claim; kept for the retention, and at least the stream's 24 h).
* **change log table**, partition key ``channel`` (S), sort key ``seq`` (N), TTL attribute
  ``expires``: ``epoch``, ``id`` (eventID), ``at`` and the full envelope (``env``, or
  zlib-compressed in ``envz`` when large).

**How a seq is assigned.** One ``TransactWriteItems`` per group of changes writes, all or
nothing: the counter (``SET head = :new`` on condition ``head = :expected``), one claim per
(channel, eventID) (condition ``attribute_not_exists``) and one change-log entry per change.
So a seq exists only together with its log entry and its claim, a redelivered event finds its
claim and gets its old seq back (it is never given a second one), and two writers racing for a
channel cannot both win: the loser's transaction is cancelled, it re-reads the counter and the
claims, and tries again. A plain conditional put of the claim next to an atomic counter
(``ADD head 1``) was the alternative; it burns a seq whenever the claim put loses a race or
the process dies between the two calls, which leaves a permanent gap, so it was not used.
One transaction carries the changes of several channels (up to DynamoDB's 100 actions and
4 MB), so a 100-record batch costs a handful of calls; transactions of one round run
concurrently, and a channel with more changes than fit takes several rounds, in order.

**Known heads.** A warm store remembers the head each of its commits left (up to
``KNOWN_HEADS`` channels). When every channel of a batch is known, it skips reading counters
and claims and goes straight to the transaction: its conditions check the same things, so a
stale head (another writer moved it) or a redelivered event (its claim exists) cancels the
transaction, and the store then reads the counters and claims and carries on as above. A
batch of new changes then costs one DynamoDB call instead of two.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from backend.errors import StoreError

__all__ = [
    "Candidate",
    "ChangeStore",
    "Committed",
    "Head",
    "LogEntry",
]

HEAD_PREFIX = "head#"
CLAIM_PREFIX = "event#"
TTL_ATTRIBUTE = "expires"
STREAM_RETENTION_S = 24 * 3600
MAX_TRANSACTION_ACTIONS = 100
MAX_TRANSACTION_BYTES = 3_500_000  # DynamoDB allows 4 MB; keep a margin for attribute overhead
COMPRESS_ABOVE_BYTES = 64 * 1024
MAX_ENTRY_BYTES = 390 * 1024  # DynamoDB items are at most 400 KB
KNOWN_HEADS = 10_000  # channels whose head a warm store remembers


@dataclass(frozen=True)
class Head:
    """A channel's last seq (0 when it has none) and its epoch."""

    seq: int
    epoch: int


@dataclass(frozen=True)
class LogEntry:
    """One stored change."""

    seq: int
    epoch: int
    envelope: str
    expires: int


@dataclass(frozen=True)
class Candidate:
    """A change to number and log: ``render(seq, epoch)`` gives its full envelope text."""

    channel: str
    event_id: str
    render: Callable[[int, int], str]


@dataclass(frozen=True)
class Committed:
    """The seq a candidate holds; ``fresh`` is False when an earlier delivery had assigned it."""

    seq: int
    epoch: int
    envelope: str
    fresh: bool


@dataclass
class _Chunk:
    channel: str
    items: list[tuple[int, Candidate]]  # (position in the commit call, candidate)
    envelopes: list[str] = field(default_factory=list)

    def size(self) -> int:
        return sum(len(e) for e in self.envelopes) + 400 * len(self.items)


class _Cancelled(Exception):
    pass


class ChangeStore:
    """The sequence counters, idempotency claims and change log of every channel."""

    def __init__(
        self,
        dynamodb: Any,
        sequence_table: str,
        change_log_table: str,
        retention_s: int,
        *,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 8,
    ) -> None:
        """``dynamodb`` is a boto3 DynamoDB client (or a zero-argument callable returning one)."""
        self._dynamodb = dynamodb
        self.sequence_table = sequence_table
        self.change_log_table = change_log_table
        self.retention_s = retention_s
        self._executor = executor
        self._clock = clock
        self._max_attempts = max_attempts
        self._known: dict[str, Head] = {}  # channel -> head after this store's last commit
        self._known_lock = threading.Lock()

    @property
    def dynamodb(self) -> Any:
        """The DynamoDB client (resolved lazily when a factory was given)."""
        if callable(self._dynamodb) and not hasattr(self._dynamodb, "transact_write_items"):
            self._dynamodb = self._dynamodb()
        return self._dynamodb

    # ------------------------------------------------------------------------------ writing
    def commit(self, candidates: Sequence[Candidate]) -> list[Committed | StoreError]:
        """Give every candidate its seq and log it; results are in the candidates' order.

        Candidates of one channel are numbered in the order given. When a channel's group
        fails (after retries), that candidate and every later one of the same channel get a
        :class:`StoreError` and nothing after it is numbered, so the channel keeps no gap.
        """
        results: list[Committed | StoreError | None] = [None] * len(candidates)
        by_channel: dict[str, list[tuple[int, Candidate]]] = {}
        for position, candidate in enumerate(candidates):
            by_channel.setdefault(candidate.channel, []).append((position, candidate))
        heads: dict[str, Head | None]
        claims: dict[tuple[str, str], tuple[int, int]]
        with self._known_lock:
            known = {channel: self._known.get(channel) for channel in by_channel}
        if all(head is not None for head in known.values()):
            heads, claims = dict(known), {}  # the transaction's conditions check both
        else:
            heads, claims = self._read_state(
                list(by_channel), [(c.channel, c.event_id) for c in candidates]
            )
        pending: dict[str, list[tuple[int, Candidate]]] = {}
        for channel, items in by_channel.items():
            for position, candidate in items:
                claim = claims.get((channel, candidate.event_id))
                if claim is not None:
                    seq, epoch = claim
                    results[position] = Committed(seq, epoch, candidate.render(seq, epoch), False)
                else:
                    pending.setdefault(channel, []).append((position, candidate))
        failed: set[str] = set()
        for round_chunks in self._rounds(pending):
            live = [chunk for chunk in round_chunks if chunk.channel not in failed]
            groups = self._pack(live, heads)
            outcomes = self._map(lambda g: self._commit_group(g, heads, results), groups)
            for group, error in zip(groups, outcomes, strict=True):
                if error is not None:
                    for chunk in group:
                        failed.add(chunk.channel)
                        for position, _ in chunk.items:
                            if results[position] is None:
                                results[position] = error
        self._remember(
            {c: h for c, h in heads.items() if h is not None and c not in failed}, forget=failed
        )
        final: list[Committed | StoreError] = []
        for position, result in enumerate(results):
            if result is None:  # a later chunk of a channel that failed earlier
                channel = candidates[position].channel
                result = StoreError(f"not numbered: an earlier change of {channel} failed")
            final.append(result)
        return final

    def _remember(self, heads: dict[str, Head], forget: set[str]) -> None:
        with self._known_lock:
            for channel in forget:  # read again next time
                self._known.pop(channel, None)
            for channel, head in heads.items():
                self._known.pop(channel, None)  # most recently used last
                self._known[channel] = head
            while len(self._known) > KNOWN_HEADS:
                del self._known[next(iter(self._known))]

    def _map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self._executor is None:
            return [function(item) for item in items]
        return list(self._executor.map(function, items))

    @staticmethod
    def _rounds(pending: dict[str, list[tuple[int, Candidate]]]) -> Iterator[list[_Chunk]]:
        per_chunk = (MAX_TRANSACTION_ACTIONS - 1) // 2
        chunked = {
            channel: [items[i : i + per_chunk] for i in range(0, len(items), per_chunk)]
            for channel, items in pending.items()
        }
        depth = max((len(c) for c in chunked.values()), default=0)
        for index in range(depth):
            yield [
                _Chunk(channel, chunks[index])
                for channel, chunks in chunked.items()
                if index < len(chunks)
            ]

    def _pack(self, chunks: list[_Chunk], heads: dict[str, Head | None]) -> list[list[_Chunk]]:
        groups: list[list[_Chunk]] = []
        actions = size = 0
        for chunk in chunks:
            self._render(chunk, heads)
            need, weight = 1 + 2 * len(chunk.items), chunk.size()
            if (
                not groups
                or actions + need > MAX_TRANSACTION_ACTIONS
                or (size + weight > MAX_TRANSACTION_BYTES and groups[-1])
            ):
                groups.append([])
                actions = size = 0
            groups[-1].append(chunk)
            actions += need
            size += weight
        return groups

    @staticmethod
    def _render(chunk: _Chunk, heads: dict[str, Head | None]) -> None:
        head = heads.get(chunk.channel) or Head(0, 1)
        chunk.envelopes = [
            candidate.render(head.seq + offset, head.epoch)
            for offset, (_, candidate) in enumerate(chunk.items, start=1)
        ]

    def _commit_group(
        self,
        group: list[_Chunk],
        heads: dict[str, Head | None],
        results: list[Committed | StoreError | None],
    ) -> StoreError | None:
        for attempt in range(self._max_attempts):
            group = [chunk for chunk in group if chunk.items]
            if not group:
                return None
            for chunk in group:
                self._render(chunk, heads)
            try:
                self._transact(group, heads)
            except _Cancelled:
                if attempt + 1 < self._max_attempts:
                    time.sleep(random.uniform(0, 0.01 * 2**attempt))
                    self._refresh(group, heads, results)
                continue
            except StoreError as exc:
                return exc
            for chunk in group:
                head = heads.get(chunk.channel) or Head(0, 1)
                for offset, ((position, _), envelope) in enumerate(
                    zip(chunk.items, chunk.envelopes, strict=True), start=1
                ):
                    results[position] = Committed(head.seq + offset, head.epoch, envelope, True)
                heads[chunk.channel] = Head(head.seq + len(chunk.items), head.epoch)
            return None
        channels = ", ".join(sorted(chunk.channel for chunk in group))
        return StoreError(
            f"sequence numbers for {channels} kept conflicting with another "
            f"writer after {self._max_attempts} attempts"
        )

    def _refresh(
        self,
        group: list[_Chunk],
        heads: dict[str, Head | None],
        results: list[Committed | StoreError | None],
    ) -> None:
        """After a cancelled transaction: re-read counters and claims; drop claimed items."""
        fresh_heads, claims = self._read_state(
            [chunk.channel for chunk in group],
            [(chunk.channel, c.event_id) for chunk in group for _, c in chunk.items],
        )
        heads.update(fresh_heads)
        for chunk in group:
            kept = []
            for position, candidate in chunk.items:
                claim = claims.get((chunk.channel, candidate.event_id))
                if claim is None:
                    kept.append((position, candidate))
                else:
                    seq, epoch = claim
                    results[position] = Committed(seq, epoch, candidate.render(seq, epoch), False)
            chunk.items = kept

    def _transact(self, group: list[_Chunk], heads: dict[str, Head | None]) -> None:
        now = int(self._clock())
        log_expires = str(now + self.retention_s)
        claim_expires = str(now + max(self.retention_s, STREAM_RETENTION_S) + 3600)
        actions: list[dict[str, Any]] = []
        for chunk in group:
            head = heads.get(chunk.channel)
            base = head or Head(0, 1)
            new_head = base.seq + len(chunk.items)
            update: dict[str, Any] = {
                "TableName": self.sequence_table,
                "Key": {"pk": {"S": HEAD_PREFIX + chunk.channel}},
                "UpdateExpression": "SET head = :new, epoch = :epoch",
                "ExpressionAttributeValues": {
                    ":new": {"N": str(new_head)},
                    ":epoch": {"N": str(base.epoch)},
                },
            }
            if head is None:
                update["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                update["ConditionExpression"] = "head = :expected AND epoch = :epoch"
                update["ExpressionAttributeValues"][":expected"] = {"N": str(head.seq)}
            actions.append({"Update": update})
            for offset, ((_, candidate), envelope) in enumerate(
                zip(chunk.items, chunk.envelopes, strict=True), start=1
            ):
                seq = str(base.seq + offset)
                actions.append(
                    {
                        "Put": {
                            "TableName": self.sequence_table,
                            "Item": {
                                "pk": {"S": f"{CLAIM_PREFIX}{chunk.channel}#{candidate.event_id}"},
                                "seq": {"N": seq},
                                "epoch": {"N": str(base.epoch)},
                                TTL_ATTRIBUTE: {"N": claim_expires},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
                actions.append(
                    {
                        "Put": {
                            "TableName": self.change_log_table,
                            "Item": {
                                "channel": {"S": chunk.channel},
                                "seq": {"N": seq},
                                "epoch": {"N": str(base.epoch)},
                                "id": {"S": candidate.event_id},
                                TTL_ATTRIBUTE: {"N": log_expires},
                                **_envelope_attribute(envelope, chunk.channel, seq),
                            },
                            "ConditionExpression": "attribute_not_exists(channel)",
                        }
                    }
                )
        try:
            self.dynamodb.transact_write_items(TransactItems=actions)
        except Exception as exc:
            code = _error_code(exc)
            if code in (
                "TransactionCanceledException",
                "ConditionalCheckFailedException",
                "TransactionConflictException",
            ):
                raise _Cancelled from exc
            raise StoreError(
                f"writing the change log failed ({code or type(exc).__name__}): {exc}"
            ) from exc

    def _read_state(
        self, channels: Sequence[str], claims: Sequence[tuple[str, str]]
    ) -> tuple[dict[str, Head | None], dict[tuple[str, str], tuple[int, int]]]:
        keys = [HEAD_PREFIX + channel for channel in channels]
        keys += [f"{CLAIM_PREFIX}{channel}#{event_id}" for channel, event_id in claims]
        keys = list(dict.fromkeys(keys))
        batches = [keys[i : i + 100] for i in range(0, len(keys), 100)]
        items = [item for found in self._map(self._batch_get, batches) for item in found]
        heads: dict[str, Head | None] = dict.fromkeys(channels)
        found_claims: dict[tuple[str, str], tuple[int, int]] = {}
        wanted = {
            f"{CLAIM_PREFIX}{channel}#{event_id}": (channel, event_id)
            for channel, event_id in claims
        }
        for item in items:
            pk = item["pk"]["S"]
            if pk.startswith(HEAD_PREFIX):
                heads[pk[len(HEAD_PREFIX) :]] = Head(
                    int(item["head"]["N"]), int(item["epoch"]["N"])
                )
            elif pk in wanted:
                found_claims[wanted[pk]] = (int(item["seq"]["N"]), int(item["epoch"]["N"]))
        return heads, found_claims

    def _batch_get(self, keys: list[str]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            self.sequence_table: {
                "Keys": [{"pk": {"S": key}} for key in keys],
                "ConsistentRead": True,
            }
        }
        items: list[dict[str, Any]] = []
        for attempt in range(10):
            try:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
            except Exception as exc:
                raise StoreError(f"reading sequence counters failed: {exc}") from exc
            items.extend(answer.get("Responses", {}).get(self.sequence_table, []))
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(0.01 * 2**attempt)
        raise StoreError("reading sequence counters was throttled; try again")

    # ------------------------------------------------------------------------------ reading
    def head(self, channel: str) -> Head:
        """The channel's head seq and epoch; a channel with no changes has head 0, epoch 1."""
        try:
            answer = self.dynamodb.get_item(
                TableName=self.sequence_table,
                Key={"pk": {"S": HEAD_PREFIX + channel}},
                ConsistentRead=True,
            )
        except Exception as exc:
            raise StoreError(f"reading the head of {channel} failed: {exc}") from exc
        item = answer.get("Item")
        if item is None:
            return Head(0, 1)
        return Head(int(item["head"]["N"]), int(item["epoch"]["N"]))

    def read(self, channel: str, after: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` stored changes with ``seq > after``, in order (expired ones too)."""
        try:
            answer = self.dynamodb.query(
                TableName=self.change_log_table,
                KeyConditionExpression="channel = :channel AND seq > :after",
                ExpressionAttributeValues={
                    ":channel": {"S": channel},
                    ":after": {"N": str(after)},
                },
                Limit=limit,
                ConsistentRead=True,
            )
        except Exception as exc:
            raise StoreError(f"reading the change log of {channel} failed: {exc}") from exc
        return [_entry(item) for item in answer.get("Items", [])]

    def now(self) -> float:
        """The store's clock (seconds since the epoch)."""
        return self._clock()


def _envelope_attribute(envelope: str, channel: str, seq: str) -> dict[str, Any]:
    data = envelope.encode()
    if len(data) <= COMPRESS_ABOVE_BYTES:
        return {"env": {"S": envelope}}
    packed = zlib.compress(data, 6)
    if len(packed) > MAX_ENTRY_BYTES:
        raise StoreError(
            f"the change {channel}#{seq} is {len(data)} bytes "
            f"({len(packed)} compressed), too large for the change log"
        )
    return {"envz": {"B": packed}}


def _entry(item: dict[str, Any]) -> LogEntry:
    packed = item.get("envz")
    envelope = zlib.decompress(packed["B"]).decode() if packed else item["env"]["S"]
    return LogEntry(
        seq=int(item["seq"]["N"]),
        epoch=int(item["epoch"]["N"]),
        envelope=envelope,
        expires=int(item[TTL_ATTRIBUTE]["N"]),
    )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def default_executor(workers: int) -> ThreadPoolExecutor:
    """A thread pool for concurrent DynamoDB and iot-data calls."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tidings")

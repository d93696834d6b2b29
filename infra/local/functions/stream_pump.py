"""The local stack's stream pump: DynamoDB Streams (moto) → a handler, as an event source mapping.

It reads every shard of a table's stream and invokes a handler with Lambda-shaped DynamoDB
stream events, following the semantics of ``AWS::Lambda::EventSourceMapping``:

* at most ``batch_size`` records per invocation, one shard's records in order, and up to
  ``maximum_batching_window_s`` spent gathering a batch;
* with ``report_batch_item_failures``, a response ``{"batchItemFailures": [{"itemIdentifier":
  <SequenceNumber>}]}`` acknowledges the records before that one and retries from it; an
  identifier that is not in the batch, or a handler that raises, fails the whole batch;
* with ``bisect_on_error``, a batch that fails without progress is retried as its first half
  (and so on down to one record); a success returns to the full batch size;
* after ``maximum_retry_attempts`` retries without progress (``-1``: until the record
  expires) the failing batch is handed to ``on_failure`` (the on-failure destination) and
  skipped;
* an invocation that Lambda throttles (``TooManyRequestsException``: the function never ran)
  is retried with exponential backoff (from ``poll_interval_s`` up to
  :data:`MAX_THROTTLE_BACKOFF_S`) until it runs: it is not a function error, so it counts
  against neither ``maximum_retry_attempts`` nor bisecting, and never sends the batch to the
  on-failure destination (Lambda retries throttles until the records expire).

Run in threads (:meth:`StreamPump.start`), reading and invoking overlap as in Lambda's
poller: one thread reads the stream as soon as it is woken (a bounded read-ahead of
``READ_AHEAD_BATCHES`` batches per shard) while another invokes the handler with one batch
per shard at a time. While an invocation runs and the next batch already waits, the reader
leaves new records in the stream; the invoking thread reads them the moment the invocation
returns, so the next batch holds everything written meanwhile instead of only what was read
before. :meth:`poll` and :meth:`drain` do both in the caller's thread, one step at a time.

The handler is any ``event -> response`` callable: the publisher in-process, or a function
worker of the local Lambda runtime. The streams client is passed in (botocore 1.44 needs an
explicit endpoint or ``account_id_endpoint_mode="disabled"`` for DynamoDB Streams): a boto3
client, or one whose ``returns_wire`` says ``get_records`` hands over DynamoDB's own JSON
(:class:`~infra.local.functions.streams_wire.WireStreamsClient`).
"""

from __future__ import annotations

import base64
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.local.functions.runtime import THROTTLED

__all__ = ["MappingSettings", "ShardState", "StreamPump", "to_lambda_record"]

Handler = Callable[[dict[str, Any]], Any]
READ_AHEAD_BATCHES = 10
MAX_THROTTLE_BACKOFF_S = 5.0
_log = logging.getLogger("tidings.stream_pump")


@dataclass(frozen=True)
class MappingSettings:
    """The event source mapping's settings that change the pump's behaviour."""

    batch_size: int = 100
    maximum_batching_window_s: float = 0.0
    report_batch_item_failures: bool = True
    bisect_on_error: bool = False
    maximum_retry_attempts: int = -1
    starting_position: str = "TRIM_HORIZON"  # or "LATEST"


@dataclass
class ShardState:
    """Where the pump is in one shard: its iterator and the records not yet acknowledged."""

    shard_id: str
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    batch_limit: int | None = None  # smaller than the batch size while bisecting
    closed: bool = False
    first_pending_at: float = 0.0  # when the oldest pending record was read (monotonic)
    retry_at: float = 0.0  # a batch that failed without progress waits until then
    throttles: int = 0  # throttled invocations in a row (for the backoff)


class _Throttled(Exception):
    """The handler did not run: Lambda throttled the invocation."""


def to_lambda_record(
    record: Mapping[str, Any], stream_arn: str, *, wire: bool = False
) -> dict[str, Any]:
    """A ``GetRecords`` record (as boto3 returns it; ``wire``: as DynamoDB sent it) in the
    shape Lambda delivers it."""
    body = dict(record["dynamodb"])
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, datetime.datetime):
        body["ApproximateCreationDateTime"] = int(created.timestamp())
    elif isinstance(created, int | float):
        body["ApproximateCreationDateTime"] = int(created)
    if not wire:
        for image in ("Keys", "NewImage", "OldImage"):
            if image in body:
                body[image] = {name: _wire_value(value) for name, value in body[image].items()}
    out: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", stream_arn.split(":")[3]),
        "dynamodb": body,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:
        out["userIdentity"] = dict(record["userIdentity"])
    return out


def _wire_value(value: Mapping[str, Any]) -> dict[str, Any]:
    ((kind, content),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(content).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(item).decode("ascii") for item in content]}
    if kind == "M":
        return {"M": {k: _wire_value(v) for k, v in content.items()}}
    if kind == "L":
        return {"L": [_wire_value(v) for v in content]}
    return {kind: content}


class StreamPump:
    """Feeds one table's stream to a handler; call :meth:`poll` or run it in a thread."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Handler,
        settings: MappingSettings | None = None,
        *,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        poll_interval_s: float = 0.05,
    ) -> None:
        """``streams`` is a boto3 ``dynamodbstreams`` client."""
        self.streams = streams
        self._wire = bool(getattr(streams, "returns_wire", False))  # records as DynamoDB sent them
        self.stream_arn = stream_arn
        self.handler = handler
        self.settings = settings or MappingSettings()
        self.on_failure = on_failure
        self.poll_interval_s = poll_interval_s
        self.shards: dict[str, ShardState] = {}
        self.invocations = 0
        self.throttled = 0  # invocations refused for lack of concurrency (then retried)
        self.discover_interval_s = 1.0
        self._discovered_at = float("-inf")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ready = threading.Condition()  # guards every shard's ``pending``
        self._invoking = False
        self._read_lock = threading.Lock()  # one GetRecords at a time: shard iterators move
        self._unread = False  # records may be in the stream that the reader left there
        self._notified = False  # someone calls wake() on every write: no need to guess
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------- reading
    def _discover(self) -> None:
        now = time.monotonic()
        if self.shards and now - self._discovered_at < self.discover_interval_s:
            return  # shards change rarely: one DescribeStream a second, not one a poll
        self._discovered_at = now
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self.shards:
                continue
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn,
                ShardId=shard_id,
                ShardIteratorType=self.settings.starting_position,
            )["ShardIterator"]
            self.shards[shard_id] = ShardState(shard_id, iterator)

    def _fill(self, shard: ShardState) -> None:
        """Read from the shard until a batch is full, the window closes or nothing is new."""
        deadline = time.monotonic() + self.settings.maximum_batching_window_s
        while len(shard.pending) < self.settings.batch_size and shard.iterator is not None:
            fetched = self._read(shard)
            if len(shard.pending) >= self.settings.batch_size or time.monotonic() >= deadline:
                return
            if not fetched:
                time.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))

    def _read(self, shard: ShardState) -> int:
        """One ``GetRecords`` from where the shard's iterator stands; returns the records read."""
        assert shard.iterator is not None
        answer = self.streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        shard.iterator = answer.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True
        fetched = answer.get("Records", [])
        self._add_pending(
            shard, [to_lambda_record(r, self.stream_arn, wire=self._wire) for r in fetched]
        )
        return len(fetched)

    def _add_pending(self, shard: ShardState, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        with self._ready:
            if not shard.pending:
                shard.first_pending_at = time.monotonic()
            shard.pending.extend(records)
            self._ready.notify_all()

    def _read_ahead(self, shard: ShardState) -> int:
        """One ``GetRecords`` if the shard's read-ahead has room; returns the records read.

        While a batch is being invoked and the next one is already waiting, reading again
        would only add calls: the invoking thread's read after the invocation (:meth:`_catch_up`)
        gathers everything new at once.
        """
        with self._ready:
            full = len(shard.pending) >= READ_AHEAD_BATCHES * self.settings.batch_size
            waiting = bool(shard.pending) and self._invoking
        if shard.iterator is None:
            return 0
        if full or waiting:
            self._unread = True  # read when the invocation returns
            return 0
        return self._read(shard)

    def _read_pass(self, only_if_unread: bool = False) -> int:
        """Read every shard once (with room); returns the records read.

        With ``only_if_unread``, nothing is read unless a write was reported that no read has
        taken yet; a read already under way is waited for either way.
        """
        with self._read_lock:
            if only_if_unread and not self._unread:
                return 0
            self._unread = False
            self._discover()
            return sum(self._read_ahead(shard) for shard in list(self.shards.values()))

    # ---------------------------------------------------------------------------- invoking
    def poll(self) -> int:
        """One pass over every shard: deliver at most one batch each; returns records acked."""
        self._discover()
        acked = 0
        for shard in list(self.shards.values()):
            self._fill(shard)
            if shard.pending:
                if shard.throttles:  # back off from the throttle before trying again
                    time.sleep(max(0.0, shard.retry_at - time.monotonic()))
                acked += self._deliver(shard)
        return acked

    def drain(self, timeout_s: float = 30.0) -> int:
        """Poll until no shard has anything left to deliver (or ``timeout_s``); records acked."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while time.monotonic() < deadline:
            acked = self.poll()
            total += acked
            if acked == 0 and not any(s.pending for s in self.shards.values()):
                return total
        raise TimeoutError(f"the stream still had records after {timeout_s} s")

    def _deliver(self, shard: ShardState) -> int:
        """Invoke with the shard's next batch; returns how many records left the shard."""
        with self._ready:
            batch = shard.pending[: shard.batch_limit or self.settings.batch_size]
        try:
            done = self._invoke(batch)
        except _Throttled:
            with self._ready:
                shard.throttles += 1
                backoff = self.poll_interval_s * 2 ** min(shard.throttles - 1, 10)
                shard.retry_at = time.monotonic() + min(MAX_THROTTLE_BACKOFF_S, backoff)
            return 0
        with self._ready:
            shard.throttles = 0
            return self._settle(shard, batch, done)

    def _settle(self, shard: ShardState, batch: list[dict[str, Any]], done: int) -> int:
        """After an invocation: drop what it acknowledged; retry, bisect or give up on the rest.

        Returns how many records left the shard."""
        del shard.pending[:done]
        if shard.pending:
            shard.first_pending_at = time.monotonic()
        if done == len(batch):
            shard.attempts, shard.batch_limit = 0, None
            return done
        if done:  # progress: what remains is a new batch with its own retries
            shard.attempts = 0
            return done
        shard.attempts += 1
        shard.retry_at = time.monotonic() + self.poll_interval_s
        limit = self.settings.maximum_retry_attempts
        if limit >= 0 and shard.attempts > limit:
            del shard.pending[: len(batch)]
            shard.attempts, shard.batch_limit, shard.retry_at = 0, None, 0.0
            if self.on_failure is not None:
                self.on_failure(
                    {
                        "streamArn": self.stream_arn,
                        "shardId": shard.shard_id,
                        "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                        "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                        "batchSize": len(batch),
                    }
                )
            return len(batch)
        if self.settings.bisect_on_error and len(batch) > 1:
            shard.batch_limit = (len(batch) + 1) // 2
        return 0

    def _invoke(self, batch: list[dict[str, Any]]) -> int:
        """Invoke with ``batch``; returns how many records it acknowledged in order.

        Raises :class:`_Throttled` when the function did not run (throttled)."""
        self.invocations += 1
        try:
            response = self.handler({"Records": batch})
        except Exception as exc:
            if getattr(exc, "error_type", None) == THROTTLED:
                self.throttled += 1
                raise _Throttled from exc
            return 0
        if not self.settings.report_batch_item_failures:
            return len(batch)
        failures = (response or {}).get("batchItemFailures") or []
        if not failures:
            return len(batch)
        numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
        positions = []
        for failure in failures:
            identifier = (failure or {}).get("itemIdentifier")
            if identifier not in numbers:
                return 0  # an unknown identifier fails the whole batch, as on AWS
            positions.append(numbers.index(identifier))
        return min(positions)

    # ----------------------------------------------------------------------------- running
    def start(self) -> None:
        """Take each shard's iterator, then read and invoke in two background threads until
        :meth:`stop`.

        The iterators are taken before this returns, as a mapping is enabled only once it
        reads its stream: with ``LATEST``, every write after ``start()`` is delivered.
        """
        with self._read_lock:
            self._discover()
        self._threads = [
            threading.Thread(target=self._read_loop, name="stream-pump-read", daemon=True),
            threading.Thread(target=self._invoke_loop, name="stream-pump-invoke", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before reading: a wake-up during the read is not lost
            try:
                read = self._read_pass()
            except Exception:
                _log.exception("reading %s failed; trying again in 1 s", self.stream_arn)
                self._stop.wait(1.0)
                continue
            if read == 0:
                self._wake.wait(self.poll_interval_s)

    def _invoke_loop(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                shard, wait_s = self._due()
                if shard is None:
                    self._ready.wait(wait_s)
                    continue
                self._invoking = True
            try:
                self._deliver(shard)
            except Exception:
                _log.exception("delivering from %s failed; trying again in 1 s", self.stream_arn)
                self._stop.wait(1.0)
            with self._ready:
                self._invoking = False
            self._catch_up()

    def _catch_up(self) -> None:
        """After an invocation: read what was written meanwhile before the next batch is cut.

        When every write is reported (:meth:`wake`), only a write no read has taken yet calls
        for a ``GetRecords``; otherwise the stream is read once after each invocation.
        """
        try:
            self._read_pass(only_if_unread=self._notified)
        except Exception:
            _log.exception("reading %s failed; the reader tries again", self.stream_arn)
            self._wake.set()

    def _due(self) -> tuple[ShardState | None, float]:
        """The shard whose batch is due now, or how long until one may be (under the lock)."""
        now = time.monotonic()
        wait_s = self.poll_interval_s
        window = self.settings.maximum_batching_window_s
        for shard in self.shards.values():
            if not shard.pending:
                continue
            due_at = max(shard.retry_at, shard.first_pending_at + window)
            full = len(shard.pending) >= (shard.batch_limit or self.settings.batch_size)
            if (full and shard.retry_at <= now) or due_at <= now:
                return shard, 0.0
            wait_s = min(wait_s, due_at - now)
        return None, max(wait_s, 0.001)

    def wake(self) -> None:
        """New records were written: read now instead of at the next interval."""
        self._notified = True
        self._unread = True
        self._wake.set()

    def stop(self) -> None:
        """Stop the background threads."""
        self._stop.set()
        self._wake.set()
        with self._ready:
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

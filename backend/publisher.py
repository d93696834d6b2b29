"""The publisher: a batch of DynamoDB stream records → numbered, logged, published changes.

For each batch:

1. decode every record and route it to its channels (pure, :mod:`backend.changes`);
2. number and log the changes (:class:`~backend.change_store.ChangeStore`: one transaction per
   group, idempotent on the stream eventID; a redelivered record gets its old seq back);
3. publish each change's envelope with QoS 1 to ``tidings/<stage>/<channel>``: channels
   concurrently, each channel's changes sent in seq order with up to ``publish_window``
   in flight (a hot channel is not held to one iot-data round trip per change);
4. answer ``batchItemFailures`` with the SequenceNumber of the first record that was not fully
   numbered, logged and published, so that only that tail is retried. Redelivered changes are
   published again with their old seq, which a client drops as a duplicate.

A record that cannot be read stops the batch there (its channels are unknown, so nothing after
it may be numbered ahead of it). REMOVE records, including TTL expiry, are changes like any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.change_store import Candidate, ChangeStore, Committed, default_executor
from backend.changes import ChannelChange, Encoded, Router, decode_record, encode_envelope
from backend.errors import ConfigurationError, PublishError, StoreError, TidingsBackendError
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.routes import Route

__all__ = ["BatchOutcome", "Publisher", "clear_caches", "handle_stream_event"]


@dataclass
class BatchOutcome:
    """What one batch did; ``first_failure`` is the index of the first record to retry."""

    records: int
    published: int = 0
    republished: int = 0
    first_failure: int | None = None
    errors: list[str] = field(default_factory=list)
    publish_latencies_ms: list[float] = field(default_factory=list)
    max_lag_ms: float = 0.0

    def fail(self, index: int, error: Exception) -> None:
        """Record that the record at ``index`` (and so everything after it) must be retried."""
        if self.first_failure is None or index < self.first_failure:
            self.first_failure = index
        self.errors.append(f"record {index}: {error}")


class _Envelope:
    """Renders a channel change's envelope for a (seq, epoch) and keeps the encoded forms."""

    def __init__(self, item: ChannelChange, inline_limit: int) -> None:
        self.item = item
        self.inline_limit = inline_limit
        self.encoded: Encoded | None = None
        self._at: tuple[int, int] | None = None

    def __call__(self, seq: int, epoch: int) -> str:
        if self._at != (seq, epoch) or self.encoded is None:
            self.encoded = encode_envelope(self.item, seq, epoch, self.inline_limit)
            self._at = (seq, epoch)
        return self.encoded.full

    def payload(self, seq: int, epoch: int) -> bytes:
        self(seq, epoch)
        assert self.encoded is not None
        return self.encoded.published


class Publisher:
    """Publishes stream batches; build it once per process with :meth:`from_settings`."""

    def __init__(
        self,
        settings: Settings,
        routes: Sequence[Route],
        store: ChangeStore,
        iot_data: Any,
        *,
        executor: Executor | None = None,
        logger: Any = None,
        metrics: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``iot_data`` is a boto3 ``iot-data`` client or a zero-argument factory of one."""
        self.settings = settings
        self.router = Router(routes, _table_names(routes, settings))
        self.store = store
        self._iot_data = iot_data
        self._executor = executor or default_executor(settings.publish_concurrency)
        self.logger = logger
        self.metrics = metrics
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Publisher:
        """The production wiring: routes from the settings' file, lazy clients.

        DynamoDB goes through boto3, except the commit's ``TransactWriteItems``
        (:class:`TransactClient`); iot-data through :class:`SignedPublishClient`: the same
        signed requests for a fraction of the CPU, all resolved from the standard settings.
        """
        from backend.dynamodb_transact import TransactClient
        from backend.iot_publish import SignedPublishClient
        from backend.observability import make_logger, make_metrics
        from backend.routes import load_routes

        executor = default_executor(settings.publish_concurrency)
        pool = settings.publish_concurrency
        store = ChangeStore(
            lambda: TransactClient.from_environment(pool),
            settings.sequence_table,
            settings.change_log_table,
            settings.retention_s,
            executor=executor,
        )

        def iot_data() -> SignedPublishClient:
            return SignedPublishClient.from_environment(pool)

        return cls(
            settings,
            load_routes(settings.routes_file),
            store,
            iot_data,
            executor=executor,
            logger=make_logger("tidings-publisher"),
            metrics=make_metrics("tidings-publisher", settings.stage),
        )

    @property
    def iot_data(self) -> Any:
        """The iot-data client (resolved lazily when a factory was given)."""
        if callable(self._iot_data) and not hasattr(self._iot_data, "publish"):
            self._iot_data = self._iot_data()
        return self._iot_data

    # --------------------------------------------------------------------------- the batch
    def handle(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        """A Lambda DynamoDB stream event → the partial batch response."""
        records = list(event.get("Records") or [])
        outcome = self.process(records)
        self._report(outcome)
        if outcome.first_failure is None:
            return {"batchItemFailures": []}
        failed = records[outcome.first_failure]
        sequence_number = str((failed.get("dynamodb") or {}).get("SequenceNumber", ""))
        return {"batchItemFailures": [{"itemIdentifier": sequence_number}]}

    def process(self, records: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Route, number, log and publish a batch; nothing after a failure is acknowledged."""
        outcome = BatchOutcome(records=len(records))
        now_ms = self._clock() * 1000
        items: list[ChannelChange] = []
        for index, record in enumerate(records):
            try:
                change = decode_record(record)
                items.extend(self.router.route(index, change))
            except TidingsBackendError as exc:
                outcome.fail(index, exc)
                break
            if change.at_ms:
                outcome.max_lag_ms = max(outcome.max_lag_ms, now_ms - change.at_ms)
        if not items:
            return outcome
        envelopes = [_Envelope(item, self.settings.inline_limit_bytes) for item in items]
        try:
            results = self.store.commit(
                [
                    Candidate(item.channel, item.change.event_id, env)
                    for item, env in zip(items, envelopes, strict=True)
                ]
            )
        except TidingsBackendError as exc:  # e.g. the counters could not be read at all
            outcome.fail(items[0].index, exc)
            return outcome
        per_channel: dict[str, list[tuple[ChannelChange, _Envelope, Committed]]] = {}
        for item, envelope, result in zip(items, envelopes, results, strict=True):
            if isinstance(result, StoreError):
                outcome.fail(item.index, result)
            else:
                per_channel.setdefault(item.channel, []).append((item, envelope, result))
        lanes = [sorted(lane, key=lambda entry: entry[2].seq) for lane in per_channel.values()]
        self._publish_lanes(lanes, outcome)
        return outcome

    def _publish_lanes(
        self, lanes: list[list[tuple[ChannelChange, _Envelope, Committed]]], outcome: BatchOutcome
    ) -> None:
        """Publish every channel's changes, each channel's started in seq order.

        Up to ``publish_window`` publishes of one channel are in flight at once, and each is
        sent only once the one before it has left (an iot-data client with ``reports_sent``
        says when; any other client is waited for), so they reach the endpoint in ``seq``
        order. After a failure the channel starts nothing more: what is in flight completes,
        and the batch response retries from the failed record.
        """
        window = self.settings.publish_window
        reports_sent = bool(getattr(self.iot_data, "reports_sent", False))
        done = threading.Condition()
        started = [0] * len(lanes)
        in_flight = [0] * len(lanes)
        stopped = [False] * len(lanes)
        sent = [[threading.Event() for _ in entries] for entries in lanes]

        def publish(lane: int, position: int) -> None:
            item, envelope, committed = lanes[lane][position]
            topic = self.settings.topic_prefix + item.channel
            mine = sent[lane][position]
            error: Exception | None = None
            try:
                if position:
                    sent[lane][position - 1].wait()
                began = time.perf_counter()
                payload = envelope.payload(committed.seq, committed.epoch)
                if reports_sent:
                    self.iot_data.publish(topic=topic, qos=1, payload=payload, on_sent=mine.set)
                else:
                    self.iot_data.publish(topic=topic, qos=1, payload=payload)
            except Exception as exc:
                error = PublishError(f"publishing seq {committed.seq} to {topic} failed: {exc}")
            finally:
                mine.set()
            with done:
                in_flight[lane] -= 1
                if error is not None:
                    stopped[lane] = True
                    outcome.fail(item.index, error)
                else:
                    outcome.publish_latencies_ms.append((time.perf_counter() - began) * 1000)
                    outcome.published += 1
                    outcome.republished += 0 if committed.fresh else 1
                done.notify()

        with done:
            while True:
                for lane, entries in enumerate(lanes):
                    while (
                        not stopped[lane]
                        and started[lane] < len(entries)
                        and in_flight[lane] < window
                    ):
                        in_flight[lane] += 1
                        self._executor.submit(publish, lane, started[lane])
                        started[lane] += 1
                if not any(in_flight):
                    return
                done.wait()

    def _report(self, outcome: BatchOutcome) -> None:
        if self.metrics is not None:
            from aws_lambda_powertools.metrics import MetricUnit

            self.metrics.add_metric("ChangesPublished", MetricUnit.Count, outcome.published)
            self.metrics.add_metric("ChangesRepublished", MetricUnit.Count, outcome.republished)
            self.metrics.add_metric(
                "PublishFailures", MetricUnit.Count, 0 if outcome.first_failure is None else 1
            )
            self.metrics.add_metric("StreamLag", MetricUnit.Milliseconds, outcome.max_lag_ms)
            for latency in outcome.publish_latencies_ms:
                self.metrics.add_metric("PublishLatency", MetricUnit.Milliseconds, latency)
            self.metrics.flush_metrics()
        if self.logger is not None:
            summary = {
                "records": outcome.records,
                "published": outcome.published,
                "republished": outcome.republished,
                "stream_lag_ms": round(outcome.max_lag_ms, 1),
            }
            if outcome.first_failure is None:
                self.logger.info("batch published", extra=summary)
            else:
                self.logger.warning(
                    "batch partly failed; the tail will be retried",
                    extra={
                        **summary,
                        "first_failure": outcome.first_failure,
                        "errors": outcome.errors[:10],
                    },
                )


def _table_names(routes: Sequence[Route], settings: Settings) -> dict[str, str]:
    """Logical id → physical name for every routed table; all missing ones named at once."""
    names = {route.table: settings.table_name(route.table) for route in routes}
    missing = sorted(table for table, name in names.items() if not name)
    if missing:
        variables = ", ".join(f"TIDINGS_TABLE_{table.upper()}" for table in missing)
        raise ConfigurationError(
            f"the routes name tables the environment does not: set {variables}"
        )
    return {table: name for table, name in names.items() if name}


_publisher: Publisher | None = None


def handle_stream_event(event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The Lambda entry: publish one stream batch with the process-wide :class:`Publisher`."""
    global _publisher
    if _publisher is None:
        _publisher = Publisher.from_settings(Settings.from_env())
    return _publisher.handle(event)


def clear_caches() -> None:
    """Forget the process-wide publisher (tests that change the environment)."""
    global _publisher
    _publisher = None

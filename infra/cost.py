"""What a Tidings workload costs a month: push over AWS IoT Core against polling, and the rest.

A pure model: no I/O, no AWS calls. :func:`estimate` takes a :class:`Workload` (how many
clients, how long they stay connected, how many changes and how far each one fans out), a
:class:`PriceBook` (list prices, read from ``infra/prices.yaml`` by ``tidings cost``) and a
:class:`Deployment` (the functions' memory and limits, as ``infra/template.yaml`` sets them)
and returns an :class:`Estimate`: one :class:`OptionCost` per way of delivering the changes,
each a list of :class:`LineItem` (what is metered, how much of it, what it costs), the
publisher's share that every option carries, the cheapest option, the break-even poll interval
and the limits the workload runs into.

The options:

* ``push-iot`` — Tidings as built: the publisher publishes each change to AWS IoT Core, which
  delivers it over MQTT to every subscriber.
* ``long-poll`` — Tidings' poll fallback as built: every connected client keeps one
  ``GET .../changes?wait=20`` open through API Gateway and the channels function, which holds
  a Lambda execution for the whole wait and re-reads the channel's head meanwhile.
* ``short-poll`` — the same API read every ``poll_interval_s`` with ``wait=0``.
* ``short-poll-dynamodb`` — a short poll that API Gateway serves with its DynamoDB
  integration, no Lambda (modelled only: Tidings does not build it).
* ``push-appsync`` and ``push-apigw-websocket`` — the same workload on AppSync Events and on
  API Gateway WebSocket APIs, for comparison.

The formulas and their assumptions are in ``docs/COST.md``; every number a caller may want to
change is a field of :class:`Workload` or :class:`Deployment`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "ACCOUNT_CONCURRENCY",
    "HEAD_ITEM_WCU_PER_S",
    "IOT_ACCOUNT_PUBLISHES_PER_S",
    "IOT_CONNECTION_BYTES_PER_S",
    "IOT_CONNECTION_PUBLISHES_PER_S",
    "MONTH_HOURS",
    "MONTH_S",
    "REQUIRED_PRICES",
    "BreakEven",
    "CostModelError",
    "Deployment",
    "Estimate",
    "LineItem",
    "OptionCost",
    "Price",
    "PriceBook",
    "Workload",
    "break_even_poll_interval",
    "estimate",
    "poll_curve",
    "publisher_share",
    "short_poll_cost",
]

MONTH_HOURS = 730.0
"""The month AWS's pricing pages and calculator use: 730 hours."""
MONTH_S = MONTH_HOURS * 3600.0
"""Seconds in that month: 2,628,000."""
STREAM_POLLS_PER_S = 4.0
"""Lambda reads each DynamoDB stream shard about four times a second."""
HEAD_ITEM_WCU_PER_S = 1000.0
"""One DynamoDB item (one partition key) takes at most 1,000 write units a second."""
IOT_CONNECTION_PUBLISHES_PER_S = 100.0
"""AWS IoT Core: publishes a second one connection may send or receive (not adjustable)."""
IOT_CONNECTION_BYTES_PER_S = 512 * 1024
"""AWS IoT Core: bytes a second one connection may send or receive."""
IOT_ACCOUNT_PUBLISHES_PER_S = 20_000.0
"""AWS IoT Core: inbound (and outbound) publishes a second per account in us-east-1 (adjustable)."""
ACCOUNT_CONCURRENCY = 1000
"""Lambda's default concurrent executions per account and region."""
BREAK_EVEN_RANGE_S = (0.1, 86_400.0)
"""The poll intervals the break-even is looked for in: a tenth of a second to a day."""

REQUIRED_PRICES = (
    "iot_connection_minutes",
    "iot_messages",
    "lambda_requests",
    "lambda_gb_seconds_x86_64",
    "lambda_gb_seconds_arm64",
    "apigw_rest_requests",
    "apigw_http_requests",
    "apigw_websocket_messages",
    "apigw_websocket_connection_minutes",
    "appsync_events_operations",
    "appsync_events_connection_minutes",
    "dynamodb_write_request_units",
    "dynamodb_read_request_units",
)
"""The prices :func:`estimate` needs; a :class:`PriceBook` without one of them is refused."""


class CostModelError(ValueError):
    """A workload, a price list or a deployment the model cannot use; the message says why."""


# ------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Price:
    """One list price: ``usd`` for every ``per`` units of ``unit``."""

    usd: float
    per: float
    unit: str
    source: str
    increment_bytes: int | None = None
    """Each message is metered in units of this many bytes (rounded up), if the service does."""
    first_tier_up_to: float | None = None
    """Units a month this (first-tier) price holds for; beyond it AWS charges less."""
    note: str = ""

    def cost(self, quantity: float) -> float:
        """What ``quantity`` units cost."""
        return quantity / self.per * self.usd

    def units(self, message_bytes: int) -> int:
        """How many metered units one message of ``message_bytes`` counts as (at least 1)."""
        if self.increment_bytes is None:
            return 1
        return max(1, math.ceil(message_bytes / self.increment_bytes))


@dataclass(frozen=True)
class PriceBook:
    """The list prices of one region, and when and where they were read."""

    region: str
    read_on: str
    prices: Mapping[str, Price]

    def __post_init__(self) -> None:
        missing = [name for name in REQUIRED_PRICES if name not in self.prices]
        if missing:
            raise CostModelError(f"the price list for {self.region} has no {', '.join(missing)}")

    def __getitem__(self, name: str) -> Price:
        return self.prices[name]

    @classmethod
    def from_document(cls, document: Mapping[str, Any], region: str) -> PriceBook:
        """The price book of ``region`` from the parsed ``prices.yaml`` document.

        Raises :class:`CostModelError` naming what is missing or malformed.
        """
        if not isinstance(document, Mapping):
            raise CostModelError("the price list is not a mapping")
        read_on = document.get("read_on")
        if not read_on:
            raise CostModelError("the price list has no read_on date")
        regions = document.get("regions")
        if not isinstance(regions, Mapping) or not regions:
            raise CostModelError("the price list has no regions")
        if region not in regions:
            raise CostModelError(
                f"the price list has no prices for {region}; it has {', '.join(sorted(regions))}"
            )
        entries = regions[region]
        if not isinstance(entries, Mapping):
            raise CostModelError(f"the prices of {region} are not a mapping")
        prices: dict[str, Price] = {}
        for name, entry in entries.items():
            prices[str(name)] = _price(str(name), entry)
        return cls(region=region, read_on=str(read_on), prices=prices)


def _price(name: str, entry: Any) -> Price:
    if not isinstance(entry, Mapping):
        raise CostModelError(f"price {name} is not a mapping")
    for key in ("usd", "per", "unit", "source"):
        if key not in entry:
            raise CostModelError(f"price {name} has no {key}")
    usd, per = entry["usd"], entry["per"]
    if not _is_number(usd) or usd < 0 or not _is_number(per) or per <= 0:
        raise CostModelError(f"price {name}: usd must be a number >= 0 and per a number > 0")
    increment = entry.get("increment_bytes")
    if increment is not None and (not isinstance(increment, int) or increment <= 0):
        raise CostModelError(f"price {name}: increment_bytes must be a whole number > 0")
    tier = entry.get("first_tier_up_to")
    if tier is not None and (not _is_number(tier) or tier <= 0):
        raise CostModelError(f"price {name}: first_tier_up_to must be a number > 0")
    return Price(
        usd=float(usd),
        per=float(per),
        unit=str(entry["unit"]),
        source=str(entry["source"]),
        increment_bytes=increment,
        first_tier_up_to=float(tier) if tier is not None else None,
        note=str(entry.get("note") or ""),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Workload:
    """What the application does. The first five fields are the question; the rest are the
    model's assumptions, each with the default ``docs/COST.md`` explains."""

    clients: int
    """Clients (browsers, phones, devices) that use the app."""
    connected_hours: float
    """Hours a day each client is connected (0 to 24)."""
    changes_per_s: float
    """Channel changes a second the publisher numbers, logs and delivers (all channels)."""
    subscribers_per_change: float
    """Connected clients each change goes to, on average (at most ``clients``)."""
    poll_interval_s: float
    """The interval of the short poll this workload is compared with (seconds)."""
    envelope_bytes: int = 1024
    """One change as delivered: envelope and topic (bytes)."""
    busiest_channel_changes_per_s: float | None = None
    """Changes a second on the busiest channel; None: assume all of them (the worst case)."""
    poll_wait_s: float = 20.0
    """How long a long-poll waits for a change (the channels API's longest wait)."""
    head_recheck_s: float = 0.25
    """How often a waiting long-poll re-reads the channel's head (``POLL_INTERVAL_S``)."""
    request_ms: float = 25.0
    """The channels function's time for a request that does not wait."""
    publisher_batch_ms: float = 50.0
    """The publisher's time per batch (one transaction, publishes in parallel) ..."""
    publisher_change_ms: float = 2.0
    """... plus this much per change in the batch."""
    fanout_ms_per_delivery: float = 5.0
    """API Gateway WebSocket only: the publisher's time per PostToConnection call."""
    stream_shards: int = 1
    """DynamoDB stream shards the changes arrive on."""

    def __post_init__(self) -> None:
        _whole(self, "clients", minimum=1)
        _number(self, "connected_hours", minimum=0.0, maximum=24.0, above_minimum=True)
        _number(self, "changes_per_s", minimum=0.0)
        _number(self, "subscribers_per_change", minimum=0.0)
        _number(self, "poll_interval_s", minimum=0.0, above_minimum=True)
        _whole(self, "envelope_bytes", minimum=1)
        if self.busiest_channel_changes_per_s is not None:
            _number(self, "busiest_channel_changes_per_s", minimum=0.0)
            if self.busiest_channel_changes_per_s > self.changes_per_s:
                raise CostModelError(
                    "busiest_channel_changes_per_s cannot be more than changes_per_s "
                    f"({self.busiest_channel_changes_per_s:g} > {self.changes_per_s:g})"
                )
        _number(self, "poll_wait_s", minimum=0.0, maximum=20.0, above_minimum=True)
        _number(self, "head_recheck_s", minimum=0.0, above_minimum=True)
        for name in (
            "request_ms",
            "publisher_batch_ms",
            "publisher_change_ms",
            "fanout_ms_per_delivery",
        ):
            _number(self, name, minimum=0.0)
        _whole(self, "stream_shards", minimum=1)
        if self.subscribers_per_change > self.clients:
            raise CostModelError(
                f"subscribers_per_change ({self.subscribers_per_change:g}) cannot be more than "
                f"clients ({self.clients})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Workload:
        """A workload from a mapping of field names (a workload file); unknown or missing
        names raise :class:`CostModelError`."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise CostModelError(
                f"unknown workload field(s) {', '.join(unknown)}; known: {', '.join(names)}"
            )
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [name for name in required if values.get(name) is None]
        if missing:
            raise CostModelError(f"the workload has no {', '.join(missing)}")
        return cls(**values)

    @property
    def connected_s(self) -> float:
        """Seconds a month all clients are connected, together."""
        return self.clients * self.connected_hours / 24.0 * MONTH_S

    @property
    def connected_clients(self) -> float:
        """Clients connected at once, on average over the day."""
        return self.clients * self.connected_hours / 24.0

    @property
    def client_change_rate(self) -> float:
        """Changes a second one client receives: ``changes_per_s * subscribers / clients``."""
        return self.changes_per_s * self.subscribers_per_change / self.clients

    @property
    def busiest_channel(self) -> float:
        """Changes a second on the busiest channel (all of them unless told otherwise)."""
        if self.busiest_channel_changes_per_s is None:
            return self.changes_per_s
        return self.busiest_channel_changes_per_s


def _whole(owner: object, name: str, *, minimum: int) -> None:
    value = getattr(owner, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CostModelError(f"{name} must be a whole number >= {minimum}, not {value!r}")


def _number(
    owner: object,
    name: str,
    *,
    minimum: float,
    maximum: float | None = None,
    above_minimum: bool = False,
) -> None:
    value = getattr(owner, name)
    if not _is_number(value):
        raise CostModelError(f"{name} must be a number, not {value!r}")
    low = value <= minimum if above_minimum else value < minimum
    if low or (maximum is not None and value > maximum):
        bound = f"> {minimum:g}" if above_minimum else f">= {minimum:g}"
        if maximum is not None:
            bound += f" and <= {maximum:g}"
        raise CostModelError(f"{name} must be {bound}, not {value!r}")


@dataclass(frozen=True)
class Deployment:
    """What the template sets (``tidings cost`` reads it from ``infra/template.yaml``)."""

    publisher_memory_mb: int = 512
    publisher_architecture: str = "x86_64"
    channels_memory_mb: int = 256
    channels_architecture: str = "x86_64"
    channels_concurrency: int = 20
    """The channels function's reserved concurrency (the template's ChannelsConcurrency)."""
    account_concurrency: int = ACCOUNT_CONCURRENCY
    stream_batch_size: int = 100
    parallelization_factor: int = 1
    api: Literal["rest", "http"] = "rest"
    """The HTTP API's kind: the template builds a REST API."""

    def __post_init__(self) -> None:
        for name in (
            "publisher_memory_mb",
            "channels_memory_mb",
            "channels_concurrency",
            "account_concurrency",
            "stream_batch_size",
            "parallelization_factor",
        ):
            _whole(self, name, minimum=1)
        for name in ("publisher_architecture", "channels_architecture"):
            if getattr(self, name) not in ("x86_64", "arm64"):
                raise CostModelError(f"{name} must be x86_64 or arm64, not {getattr(self, name)!r}")
        if self.api not in ("rest", "http"):
            raise CostModelError(f"api must be rest or http, not {self.api!r}")


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class LineItem:
    """One metered thing: what, how much of it a month, in what unit, what it costs."""

    what: str
    quantity: float
    unit: str
    usd: float
    price: str
    """The name of the price it is charged at (a key of the price list)."""


@dataclass(frozen=True)
class OptionCost:
    """The monthly cost of one way of delivering the changes (without the publisher's share)."""

    key: str
    name: str
    items: tuple[LineItem, ...]
    note: str = ""

    @property
    def usd(self) -> float:
        """The sum of the line items."""
        return sum(item.usd for item in self.items)


@dataclass(frozen=True)
class BreakEven:
    """The short-poll interval at which a short poll costs as much as push over IoT Core.

    ``interval_s`` is None when there is no crossing between a tenth of a second and a day;
    ``note`` then says which side wins everywhere."""

    option: str
    interval_s: float | None
    note: str


@dataclass(frozen=True)
class Estimate:
    """Everything :func:`estimate` works out for one workload."""

    workload: Workload
    deployment: Deployment
    region: str
    prices_read_on: str
    publisher: OptionCost
    options: tuple[OptionCost, ...]
    break_even: tuple[BreakEven, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def total(self, key: str) -> float:
        """The monthly cost of option ``key`` with the publisher's share."""
        return self.option(key).usd + self.publisher.usd

    def option(self, key: str) -> OptionCost:
        """The option named ``key``."""
        for option in self.options:
            if option.key == key:
                return option
        raise KeyError(key)

    @property
    def cheapest(self) -> OptionCost:
        """The cheapest option (the first one listed, on a tie)."""
        return min(self.options, key=lambda option: option.usd)


# ---------------------------------------------------------------------------- the model
def estimate(
    workload: Workload, prices: PriceBook, deployment: Deployment | None = None
) -> Estimate:
    """The monthly cost of ``workload`` for every option, with the break-even poll intervals
    and the limits the workload runs into."""
    deployment = deployment or Deployment()
    options = (
        _push_iot(workload, prices),
        _long_poll(workload, prices, deployment),
        short_poll_cost(workload, prices, deployment, workload.poll_interval_s),
        short_poll_cost(workload, prices, deployment, workload.poll_interval_s, via="dynamodb"),
        _push_appsync(workload, prices),
        _push_apigw_websocket(workload, prices, deployment),
    )
    publisher = publisher_share(workload, prices, deployment)
    break_even = tuple(
        break_even_poll_interval(workload, prices, deployment, via=via)
        for via in ("lambda", "dynamodb")
    )
    return Estimate(
        workload=workload,
        deployment=deployment,
        region=prices.region,
        prices_read_on=prices.read_on,
        publisher=publisher,
        options=options,
        break_even=break_even,
        warnings=tuple(_warnings(workload, deployment)),
        notes=tuple(_tier_notes(prices, publisher, options)),
    )


def _item(prices: PriceBook, name: str, what: str, quantity: float) -> LineItem:
    price = prices[name]
    return LineItem(
        what=what, quantity=quantity, unit=price.unit, usd=price.cost(quantity), price=name
    )


def _gb_seconds(prices: PriceBook, architecture: str, what: str, gb_s: float) -> LineItem:
    return _item(prices, f"lambda_gb_seconds_{architecture}", what, gb_s)


def _connection_minutes(workload: Workload) -> float:
    return workload.connected_s / 60.0


def _push_iot(workload: Workload, prices: PriceBook) -> OptionCost:
    units = prices["iot_messages"].units(workload.envelope_bytes)
    changes = workload.changes_per_s * MONTH_S
    return OptionCost(
        key="push-iot",
        name="push: AWS IoT Core (Tidings)",
        items=(
            _item(
                prices,
                "iot_connection_minutes",
                "connectivity",
                _connection_minutes(workload),
            ),
            _item(prices, "iot_messages", "publishes from Lambda", changes * units),
            _item(
                prices,
                "iot_messages",
                "deliveries to subscribers",
                changes * workload.subscribers_per_change * units,
            ),
        ),
    )


def _long_poll_wait(workload: Workload) -> float:
    """The mean time a long-poll waits: ``E[min(T, W)] = (1 - e^(-λW)) / λ`` for changes that
    reach the client as a Poisson stream of rate λ, and ``W`` when none come."""
    rate, wait = workload.client_change_rate, workload.poll_wait_s
    if rate == 0:
        return wait
    return -math.expm1(-rate * wait) / rate


def _query_rru(workload: Workload, items: float) -> float:
    """A strongly consistent Query of ``items`` changes: 1 RRU a 4 KB, at least 1."""
    return max(1.0, items * workload.envelope_bytes / 4096.0)


def _api_requests(prices: PriceBook, deployment: Deployment, what: str, n: float) -> LineItem:
    return _item(prices, f"apigw_{deployment.api}_requests", what, n)


def _long_poll(workload: Workload, prices: PriceBook, deployment: Deployment) -> OptionCost:
    wait = _long_poll_wait(workload)
    request_s = workload.request_ms / 1000.0
    polls = workload.connected_s / (wait + request_s)
    answered_with_change = -math.expm1(-workload.client_change_rate * workload.poll_wait_s)
    rru_per_poll = (
        1.0  # the head, read before waiting
        + wait / workload.head_recheck_s  # the head, re-read while waiting
        + answered_with_change * _query_rru(workload, 1.0)  # the change log, when one came
    )
    memory_gb = deployment.channels_memory_mb / 1024.0
    return OptionCost(
        key="long-poll",
        name=f"long-poll: API Gateway + Lambda, wait {workload.poll_wait_s:g} s (Tidings)",
        items=(
            _api_requests(prices, deployment, "API requests", polls),
            _item(prices, "lambda_requests", "Lambda requests", polls),
            _gb_seconds(
                prices,
                deployment.channels_architecture,
                "Lambda duration (every waiting second)",
                polls * (wait + request_s) * memory_gb,
            ),
            _item(
                prices,
                "dynamodb_read_request_units",
                "DynamoDB reads (head, log)",
                polls * rru_per_poll,
            ),
            _item(
                prices, "dynamodb_write_request_units", "DynamoDB writes (wait leases)", polls * 4
            ),
        ),
        note=f"holds one Lambda execution per connected client "
        f"({workload.connected_clients:,.0f} on average)",
    )


def short_poll_cost(
    workload: Workload,
    prices: PriceBook,
    deployment: Deployment,
    interval_s: float,
    *,
    via: Literal["lambda", "dynamodb"] = "lambda",
) -> OptionCost:
    """The monthly cost of every connected client reading its changes every ``interval_s``
    seconds with ``wait=0``: through the channels function (``via="lambda"``, as built) or
    through API Gateway's DynamoDB integration (``via="dynamodb"``, modelled only)."""
    if not _is_number(interval_s) or interval_s <= 0:
        raise CostModelError(f"the poll interval must be a number > 0, not {interval_s!r}")
    polls = workload.connected_s / interval_s
    rate = workload.client_change_rate
    found = -math.expm1(-rate * interval_s)  # P(at least one change since the last poll)
    items_when_found = rate * interval_s / found if found > 0 else 0.0
    log_rru = found * _query_rru(workload, items_when_found)
    api = _api_requests(prices, deployment, "API requests", polls)
    if via == "dynamodb":
        reads = (1.0 - found) * 1.0 + log_rru  # one Query of the log, empty or not
        return OptionCost(
            key="short-poll-dynamodb",
            name=f"short poll every {interval_s:g} s: API Gateway -> DynamoDB, no Lambda "
            "(model only)",
            items=(
                api,
                _item(prices, "dynamodb_read_request_units", "DynamoDB reads (log)", polls * reads),
            ),
            note="not built: no tenant check, no cursor-expiry answer without the function",
        )
    memory_gb = deployment.channels_memory_mb / 1024.0
    return OptionCost(
        key="short-poll",
        name=f"short poll every {interval_s:g} s: API Gateway + Lambda",
        items=(
            api,
            _item(prices, "lambda_requests", "Lambda requests", polls),
            _gb_seconds(
                prices,
                deployment.channels_architecture,
                "Lambda duration",
                polls * workload.request_ms / 1000.0 * memory_gb,
            ),
            _item(
                prices,
                "dynamodb_read_request_units",
                "DynamoDB reads (head, log)",
                polls * (1.0 + log_rru),
            ),
        ),
        note=f"a change waits {interval_s / 2:g} s on average before it is read",
    )


def _push_appsync(workload: Workload, prices: PriceBook) -> OptionCost:
    units = prices["appsync_events_operations"].units(workload.envelope_bytes)
    changes = workload.changes_per_s * MONTH_S
    return OptionCost(
        key="push-appsync",
        name="push: AppSync Events (for comparison)",
        items=(
            _item(
                prices,
                "appsync_events_connection_minutes",
                "connectivity",
                _connection_minutes(workload),
            ),
            _item(prices, "appsync_events_operations", "publishes", changes * units),
            _item(
                prices,
                "appsync_events_operations",
                "deliveries to subscribers",
                changes * workload.subscribers_per_change * units,
            ),
        ),
    )


def _push_apigw_websocket(
    workload: Workload, prices: PriceBook, deployment: Deployment
) -> OptionCost:
    units = prices["apigw_websocket_messages"].units(workload.envelope_bytes)
    deliveries = workload.changes_per_s * MONTH_S * workload.subscribers_per_change
    memory_gb = deployment.publisher_memory_mb / 1024.0
    return OptionCost(
        key="push-apigw-websocket",
        name="push: API Gateway WebSocket (for comparison)",
        items=(
            _item(
                prices,
                "apigw_websocket_connection_minutes",
                "connectivity",
                _connection_minutes(workload),
            ),
            _item(
                prices, "apigw_websocket_messages", "deliveries to subscribers", deliveries * units
            ),
            _gb_seconds(
                prices,
                deployment.publisher_architecture,
                "Lambda fan-out (PostToConnection calls)",
                deliveries * workload.fanout_ms_per_delivery / 1000.0 * memory_gb,
            ),
        ),
        note="the fan-out is the publisher's: one call per subscriber and change",
    )


def _batching(workload: Workload, deployment: Deployment) -> tuple[float, float]:
    """Changes per batch and batches a second: each shard is read four times a second, so a
    batch holds what a shard gathers in a quarter second (at least 1, at most the batch size)."""
    if workload.changes_per_s == 0:
        return 1.0, 0.0
    per_read = workload.changes_per_s / (workload.stream_shards * STREAM_POLLS_PER_S)
    per_batch = min(float(deployment.stream_batch_size), max(1.0, per_read))
    return per_batch, workload.changes_per_s / per_batch


def publisher_share(workload: Workload, prices: PriceBook, deployment: Deployment) -> OptionCost:
    """What the publisher costs a month whichever way the changes are delivered: its Lambda
    invocations (one per stream batch) and duration, and its DynamoDB writes (the channel's
    sequence item, the change's idempotency claim and its change-log entry, in transactions)."""
    per_batch, batches_per_s = _batching(workload, deployment)
    batches = batches_per_s * MONTH_S
    batch_s = (workload.publisher_batch_ms + workload.publisher_change_ms * per_batch) / 1000.0
    memory_gb = deployment.publisher_memory_mb / 1024.0
    log_wru = 2 * math.ceil(workload.envelope_bytes / 1024)  # transactional: 2 WRU a KB
    wru_per_change = 2 + 2 + log_wru  # sequence item update + claim put + change-log put
    return OptionCost(
        key="publisher",
        name="publisher (every option)",
        items=(
            _item(prices, "lambda_requests", "Lambda invocations (stream batches)", batches),
            _gb_seconds(
                prices,
                deployment.publisher_architecture,
                "Lambda duration",
                batches * batch_s * memory_gb,
            ),
            _item(
                prices,
                "dynamodb_write_request_units",
                "DynamoDB writes (sequence, claim, log)",
                workload.changes_per_s * MONTH_S * wru_per_change,
            ),
        ),
        note=f"{per_batch:g} change(s) per batch",
    )


def break_even_poll_interval(
    workload: Workload,
    prices: PriceBook,
    deployment: Deployment | None = None,
    *,
    via: Literal["lambda", "dynamodb"] = "lambda",
) -> BreakEven:
    """The short-poll interval at which polling costs as much as push over AWS IoT Core.

    A short poll's cost falls as its interval grows (fewer requests); push costs the same
    whatever the interval. Polling less often than the break-even is cheaper than push (and
    slower: a change waits half an interval on average). Found by bisection on a log scale
    between :data:`BREAK_EVEN_RANGE_S`; the publisher's share is the same on both sides.
    """
    deployment = deployment or Deployment()
    push = _push_iot(workload, prices).usd
    key = "short-poll" if via == "lambda" else "short-poll-dynamodb"

    def over(interval_s: float) -> float:
        return short_poll_cost(workload, prices, deployment, interval_s, via=via).usd - push

    low, high = BREAK_EVEN_RANGE_S
    if over(low) <= 0:
        return BreakEven(key, None, f"polling every {low:g} s already costs no more than push")
    if over(high) > 0:
        return BreakEven(key, None, f"push costs less even against a poll every {high:g} s")
    for _ in range(200):
        middle = math.sqrt(low * high)
        if over(middle) > 0:
            low = middle
        else:
            high = middle
        if high / low < 1 + 1e-9:
            break
    return BreakEven(key, high, "polling less often than this costs less than push")


def poll_curve(
    workload: Workload,
    prices: PriceBook,
    deployment: Deployment,
    intervals_s: Sequence[float],
) -> dict[str, list[float]]:
    """Monthly totals (with the publisher's share) against the poll interval, for a plot:
    the short polls fall as the interval grows, the push options and the long-poll are flat."""
    publisher = publisher_share(workload, prices, deployment).usd
    flat: dict[str, Callable[[], OptionCost]] = {
        "push-iot": lambda: _push_iot(workload, prices),
        "push-appsync": lambda: _push_appsync(workload, prices),
        "push-apigw-websocket": lambda: _push_apigw_websocket(workload, prices, deployment),
        "long-poll": lambda: _long_poll(workload, prices, deployment),
    }
    curves = {key: [make().usd + publisher] * len(intervals_s) for key, make in flat.items()}
    polls: tuple[tuple[str, Literal["lambda", "dynamodb"]], ...] = (
        ("short-poll", "lambda"),
        ("short-poll-dynamodb", "dynamodb"),
    )
    for key, via in polls:
        curves[key] = [
            short_poll_cost(workload, prices, deployment, p, via=via).usd + publisher
            for p in intervals_s
        ]
    return curves


# ----------------------------------------------------------------------------- warnings
def _warnings(workload: Workload, deployment: Deployment) -> list[str]:
    found: list[str] = []
    channel = workload.busiest_channel
    # each change of a channel puts its log entry under the channel's partition key and moves
    # the channel's sequence item, in transactions (2 WCU a KB): the log entry weighs most
    wcu_per_change = 2 * math.ceil(workload.envelope_bytes / 1024)
    if channel * wcu_per_change > HEAD_ITEM_WCU_PER_S:
        found.append(
            f"per-channel write ceiling: the busiest channel takes {channel:,.0f} changes/s, "
            f"{channel * wcu_per_change:,.0f} write units/s on its sequence item and change-log "
            f"partition; DynamoDB allows {HEAD_ITEM_WCU_PER_S:,.0f} a key (about "
            f"{HEAD_ITEM_WCU_PER_S / wcu_per_change:,.0f} changes/s of this size). Spread the "
            "changes over more channels"
            + (
                ", or set busiest_channel_changes_per_s in a workload file if they are"
                if workload.busiest_channel_changes_per_s is None
                else ""
            )
        )
    rate = workload.client_change_rate
    if rate > IOT_CONNECTION_PUBLISHES_PER_S:
        found.append(
            f"AWS IoT Core per-connection quota: each client receives {rate:,.1f} publishes/s; "
            f"one connection may receive {IOT_CONNECTION_PUBLISHES_PER_S:g}/s (not adjustable)"
        )
    if rate * workload.envelope_bytes > IOT_CONNECTION_BYTES_PER_S:
        found.append(
            f"AWS IoT Core per-connection throughput: each client receives "
            f"{rate * workload.envelope_bytes / 1024:,.0f} KB/s; one connection may take "
            f"{IOT_CONNECTION_BYTES_PER_S // 1024} KB/s"
        )
    if workload.changes_per_s > IOT_ACCOUNT_PUBLISHES_PER_S:
        found.append(
            f"AWS IoT Core account quota: the publisher publishes {workload.changes_per_s:,.0f}/s; "
            f"an account may publish {IOT_ACCOUNT_PUBLISHES_PER_S:,.0f}/s (ask for an increase)"
        )
    deliveries = workload.changes_per_s * workload.subscribers_per_change
    if deliveries > IOT_ACCOUNT_PUBLISHES_PER_S:
        found.append(
            f"AWS IoT Core account quota: {deliveries:,.0f} deliveries/s; an account may send "
            f"{IOT_ACCOUNT_PUBLISHES_PER_S:,.0f} outbound publishes/s (ask for an increase)"
        )
    waiting = workload.connected_clients
    if waiting > deployment.channels_concurrency:
        found.append(
            f"long-poll concurrency: {waiting:,.0f} clients connected on average each hold a "
            f"Lambda execution while they wait; the channels function may use "
            f"{deployment.channels_concurrency} (ChannelsConcurrency): the rest are refused "
            "with 503 and Retry-After"
        )
    short = waiting * workload.request_ms / 1000.0 / workload.poll_interval_s
    if short > deployment.channels_concurrency:
        found.append(
            f"short-poll concurrency: a poll every {workload.poll_interval_s:g} s from "
            f"{waiting:,.0f} clients keeps {short:,.0f} executions busy; the channels function "
            f"may use {deployment.channels_concurrency} (ChannelsConcurrency)"
        )
    if waiting >= deployment.account_concurrency:
        found.append(
            f"long-poll concurrency: {waiting:,.0f} waiting clients need as many Lambda "
            f"executions; the account has {deployment.account_concurrency:,} for all its "
            "functions: long-polls this many clients cannot be served through Lambda"
        )
    per_shard = workload.changes_per_s / workload.stream_shards
    batch = deployment.stream_batch_size
    full_batch_s = (workload.publisher_batch_ms + workload.publisher_change_ms * batch) / 1000.0
    ceiling = deployment.parallelization_factor * batch / full_batch_s if full_batch_s else math.inf
    if per_shard > ceiling:
        found.append(
            f"stream shard throughput: {per_shard:,.0f} changes/s per shard; one shard runs at "
            f"most {deployment.parallelization_factor} publisher invocation(s) at a time "
            f"(ParallelizationFactor, up to 10), about {ceiling:,.0f} changes/s with full "
            f"batches of {batch}: the publisher falls behind"
        )
    return found


def _tier_notes(
    prices: PriceBook, publisher: OptionCost, options: Sequence[OptionCost]
) -> list[str]:
    """Where an option's monthly quantity of one price passes that price's first tier (AWS then
    charges less a unit, so the model's figure is an upper bound)."""
    notes: list[str] = []
    for option in options:
        quantities: dict[str, float] = {}
        for item in (*option.items, *publisher.items):
            quantities[item.price] = quantities.get(item.price, 0.0) + item.quantity
        for name, quantity in quantities.items():
            tier = prices[name].first_tier_up_to
            if tier is not None and quantity > tier:
                notes.append(
                    f"{option.name}: {quantity:,.0f} {prices[name].unit} a month is past the "
                    f"first price tier ({tier:,.0f}); this figure is an upper bound"
                )
    return notes

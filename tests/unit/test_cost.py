"""The cost model (infra/cost.py) on cases computed by hand, its break-even, its warnings,
its refusals, and the price list it ships with (infra/prices.yaml).

The cases use their own price book (the us-east-1 figures of 2026-11-29, written out here) so
that a change to infra/prices.yaml does not change the arithmetic below. A month is 730 hours:
2,628,000 seconds.
"""

from __future__ import annotations

import datetime
import itertools
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cost import (
    REQUIRED_PRICES,
    CostModelError,
    Deployment,
    Price,
    PriceBook,
    Workload,
    break_even_poll_interval,
    estimate,
    poll_curve,
    publisher_share,
    short_poll_cost,
)
from infra.data_files import PRICES, data_file

ROOT = Path(__file__).resolve().parents[2]


def price(usd: float, per: float, unit: str, **extra: Any) -> Price:
    return Price(usd=usd, per=per, unit=unit, source="https://aws.amazon.com/", **extra)


PRICE_BOOK = PriceBook(
    region="us-east-1",
    read_on="2026-11-29",
    prices={
        "iot_connection_minutes": price(0.08, 1e6, "connection-minutes"),
        "iot_messages": price(1.00, 1e6, "messages", increment_bytes=5120, first_tier_up_to=1e9),
        "lambda_requests": price(0.20, 1e6, "requests"),
        "lambda_gb_seconds_x86_64": price(0.0000166667, 1, "GB-seconds"),
        "lambda_gb_seconds_arm64": price(0.0000133334, 1, "GB-seconds"),
        "apigw_rest_requests": price(3.50, 1e6, "REST API requests", first_tier_up_to=333e6),
        "apigw_http_requests": price(1.00, 1e6, "HTTP API requests"),
        "apigw_websocket_messages": price(1.00, 1e6, "WebSocket messages", increment_bytes=32768),
        "apigw_websocket_connection_minutes": price(0.25, 1e6, "connection-minutes"),
        "appsync_events_operations": price(1.00, 1e6, "operations", increment_bytes=5120),
        "appsync_events_connection_minutes": price(0.08, 1e6, "connection-minutes"),
        "dynamodb_write_request_units": price(0.625, 1e6, "write request units"),
        "dynamodb_read_request_units": price(0.125, 1e6, "read request units"),
    },
)


def workload(**overrides: Any) -> Workload:
    values: dict[str, Any] = {
        "clients": 1000,
        "connected_hours": 24.0,
        "changes_per_s": 1.0,
        "subscribers_per_change": 10.0,
        "poll_interval_s": 10.0,
    }
    values.update(overrides)
    return Workload(**values)


def items(option: Any) -> dict[str, tuple[float, float]]:
    return {item.what: (item.quantity, item.usd) for item in option.items}


# ------------------------------------------------------------------- hand-computed cases
def test_push_over_iot_core_by_hand() -> None:
    # 1,000 clients always connected, 1 change/s to 10 subscribers, 1 KB changes
    result = estimate(workload(), PRICE_BOOK)
    push = items(result.option("push-iot"))
    # connection-minutes = 1,000 clients x 2,628,000 s / 60 = 43,800,000 -> x $0.08/M = $3.504
    assert push["connectivity"] == pytest.approx((43_800_000, 3.504))
    # the Lambda's publishes: 1/s x 2,628,000 s x 1 unit (1 KB <= 5 KB) = 2,628,000 -> $2.628
    assert push["publishes from Lambda"] == pytest.approx((2_628_000, 2.628))
    # deliveries: 2,628,000 changes x 10 subscribers = 26,280,000 messages -> $26.28
    assert push["deliveries to subscribers"] == pytest.approx((26_280_000, 26.28))
    assert result.option("push-iot").usd == pytest.approx(3.504 + 2.628 + 26.28)


def test_a_large_change_is_metered_in_5_kb_units() -> None:
    # 11,000 bytes = ceil(11,000 / 5,120) = 3 messages per publish and per delivery
    push = items(estimate(workload(envelope_bytes=11_000), PRICE_BOOK).option("push-iot"))
    assert push["publishes from Lambda"][0] == pytest.approx(3 * 2_628_000)
    assert push["deliveries to subscribers"][0] == pytest.approx(3 * 26_280_000)


def test_the_publishers_share_by_hand() -> None:
    share = items(publisher_share(workload(), PRICE_BOOK, Deployment()))
    # 1 change/s on 1 shard read 4 times a second: 0.25 a read -> batches of 1 (the least);
    # 2,628,000 invocations x $0.20/M = $0.5256
    assert share["Lambda invocations (stream batches)"] == pytest.approx((2_628_000, 0.5256))
    # each batch 50 ms + 2 ms a change = 52 ms at 512 MB: 2,628,000 x 0.052 x 0.5 GB
    # = 68,328 GB-s x $0.0000166667 = $1.1388022
    assert share["Lambda duration"] == pytest.approx((68_328, 68_328 * 0.0000166667))
    # per change, in transactions (2 WRU a KB): sequence item 2 + claim 2 + 1 KB log entry 2
    # = 6 WRU; 2,628,000 x 6 = 15,768,000 x $0.625/M = $9.855
    assert share["DynamoDB writes (sequence, claim, log)"] == pytest.approx((15_768_000, 9.855))


def test_batches_grow_with_the_rate_up_to_the_batch_size() -> None:
    # 80 changes/s on 1 shard: 20 a read -> 4 batches/s -> 10,512,000 invocations
    fast = items(publisher_share(workload(changes_per_s=80.0), PRICE_BOOK, Deployment()))
    assert fast["Lambda invocations (stream batches)"][0] == pytest.approx(4 * 2_628_000)
    # 2,000 changes/s: 500 a read, capped at 100 -> 20 batches/s
    capped = items(
        publisher_share(workload(changes_per_s=2000.0, clients=100_000), PRICE_BOOK, Deployment())
    )
    assert capped["Lambda invocations (stream batches)"][0] == pytest.approx(20 * 2_628_000)


def test_an_idle_long_poll_bills_every_waiting_second() -> None:
    # no changes, every client always connected, requests that do not wait take no time
    result = estimate(workload(changes_per_s=0.0, request_ms=0.0), PRICE_BOOK)
    poll = items(result.option("long-poll"))
    # each poll waits the full 20 s: 1,000 x 2,628,000 / 20 = 131,400,000 polls
    assert poll["API requests"] == pytest.approx((131_400_000, 459.90))  # x $3.50/M
    assert poll["Lambda requests"] == pytest.approx((131_400_000, 26.28))  # x $0.20/M
    # 131,400,000 x 20 s x 0.25 GB = 657,000,000 GB-s x $0.0000166667 = $10,950.02
    assert poll["Lambda duration (every waiting second)"] == pytest.approx(
        (657_000_000, 657_000_000 * 0.0000166667)
    )
    # reads per poll: the head once, then every 0.25 s for 20 s (80 more) = 81 RRU
    # 131,400,000 x 81 = 10,643,400,000 RRU x $0.125/M = $1,330.425
    assert poll["DynamoDB reads (head, log)"] == pytest.approx((10_643_400_000, 1330.425))
    # the wait lease: 2 puts and 2 deletes = 4 WRU a poll: 525,600,000 x $0.625/M = $328.50
    assert poll["DynamoDB writes (wait leases)"] == pytest.approx((525_600_000, 328.50))
    assert result.option("long-poll").usd == pytest.approx(
        459.90 + 26.28 + 657_000_000 * 0.0000166667 + 1330.425 + 328.50
    )


def test_a_long_poll_answered_by_a_change_waits_less_but_bills_the_same_seconds() -> None:
    # each client receives 1 x 10 / 1,000 = 0.01 changes/s; a wait ends at the first change or
    # after 20 s: E[min(T, 20)] = (1 - e^-0.2) / 0.01 = 18.1269 s
    wait = (1 - math.exp(-0.2)) / 0.01
    assert wait == pytest.approx(18.126924692)
    poll = items(estimate(workload(request_ms=0.0), PRICE_BOOK).option("long-poll"))
    polls = 1000 * 2_628_000 / wait
    assert poll["API requests"][0] == pytest.approx(polls)
    # a connected client always has a poll open: the GB-s are the connected seconds x 0.25 GB
    assert poll["Lambda duration (every waiting second)"][0] == pytest.approx(657_000_000)
    # reads per poll: 1 + 18.1269 / 0.25 + P(a change came: 1 - e^-0.2) x 1 RRU
    reads = 1 + wait / 0.25 + (1 - math.exp(-0.2))
    assert poll["DynamoDB reads (head, log)"][0] == pytest.approx(polls * reads)


def test_a_short_poll_by_hand() -> None:
    idle = workload(changes_per_s=0.0)
    option = short_poll_cost(idle, PRICE_BOOK, Deployment(), 10.0)
    poll = items(option)
    # 1,000 x 2,628,000 / 10 = 262,800,000 polls
    assert poll["API requests"] == pytest.approx((262_800_000, 919.80))
    assert poll["Lambda requests"] == pytest.approx((262_800_000, 52.56))
    # 25 ms at 0.25 GB: 262,800,000 x 0.025 x 0.25 = 1,642,500 GB-s -> $27.375
    assert poll["Lambda duration"] == pytest.approx((1_642_500, 1_642_500 * 0.0000166667))
    # nothing new: the head only, 1 RRU a poll -> $32.85
    assert poll["DynamoDB reads (head, log)"] == pytest.approx((262_800_000, 32.85))
    # served by API Gateway's DynamoDB integration: the API requests and one Query a poll
    direct = short_poll_cost(idle, PRICE_BOOK, Deployment(), 10.0, via="dynamodb")
    assert direct.usd == pytest.approx(919.80 + 32.85)


def test_a_short_poll_reads_the_log_when_something_came() -> None:
    # 0.01 changes/s a client, a poll every 10 s: P(something new) = 1 - e^-0.1 = 0.0951626;
    # then 0.1 / 0.0951626 = 1.05 changes of 1 KB: one 4 KB read unit
    poll = items(short_poll_cost(workload(), PRICE_BOOK, Deployment(), 10.0))
    found = 1 - math.exp(-0.1)
    assert poll["DynamoDB reads (head, log)"][0] == pytest.approx(262_800_000 * (1 + found))


def test_the_http_api_and_arm64_prices_follow_the_deployment() -> None:
    deployment = Deployment(api="http", channels_architecture="arm64")
    poll = items(short_poll_cost(workload(changes_per_s=0.0), PRICE_BOOK, deployment, 10.0))
    assert poll["API requests"][1] == pytest.approx(262.80)  # 262,800,000 x $1.00/M
    assert poll["Lambda duration"][1] == pytest.approx(1_642_500 * 0.0000133334)


def test_appsync_events_and_api_gateway_websocket_by_hand() -> None:
    result = estimate(workload(), PRICE_BOOK)
    appsync = items(result.option("push-appsync"))
    assert appsync["connectivity"] == pytest.approx((43_800_000, 3.504))
    assert appsync["deliveries to subscribers"] == pytest.approx((26_280_000, 26.28))
    websocket = items(result.option("push-apigw-websocket"))
    # $0.25 per million connection-minutes: 43.8 x 0.25 = $10.95
    assert websocket["connectivity"] == pytest.approx((43_800_000, 10.95))
    # 1 KB fits one 32 KB message
    assert websocket["deliveries to subscribers"] == pytest.approx((26_280_000, 26.28))
    # the fan-out: 26,280,000 calls x 5 ms x 0.5 GB = 65,700 GB-s
    assert websocket["Lambda fan-out (PostToConnection calls)"][0] == pytest.approx(65_700)


def test_every_option_carries_the_publishers_share_and_the_cheapest_is_named() -> None:
    result = estimate(workload(), PRICE_BOOK)
    share = result.publisher.usd
    assert share == pytest.approx(0.5256 + 68_328 * 0.0000166667 + 9.855)
    for option in result.options:
        assert result.total(option.key) == pytest.approx(option.usd + share)
    # AppSync Events costs the same as IoT Core here (same prices); a tie goes to the first
    assert result.cheapest.key == "push-iot"
    assert result.cheapest.usd == min(option.usd for option in result.options)


# ------------------------------------------------------------------------------ break-even
def test_the_break_even_poll_interval_by_hand() -> None:
    # no changes: push costs its connection-minutes only, $3.504 a month; a short poll through
    # Lambda costs per poll $3.50/M + $0.20/M + 0.025 s x 0.25 GB x $0.0000166667
    # + 1 RRU x $0.125/M = $3.92916667e-6, and there are 2,628,000,000 / P polls a month:
    # $10,325.85 / P. Equal at P = 10,325.85 / 3.504 = 2,946.875 s.
    idle = workload(changes_per_s=0.0)
    found = break_even_poll_interval(idle, PRICE_BOOK)
    assert found.option == "short-poll"
    assert found.interval_s == pytest.approx(2946.875, rel=1e-5)
    # without Lambda: $3.625e-6 a poll, $9,526.50 / P: P = 9,526.5 / 3.504 = 2,718.75 s
    direct = break_even_poll_interval(idle, PRICE_BOOK, via="dynamodb")
    assert direct.interval_s == pytest.approx(2718.75, rel=1e-5)
    # polling at the break-even costs what push costs
    at = short_poll_cost(idle, PRICE_BOOK, Deployment(), 2946.875).usd
    assert at == pytest.approx(estimate(idle, PRICE_BOOK).option("push-iot").usd, rel=1e-5)


def test_the_estimate_carries_both_break_evens_and_polling_slower_is_cheaper() -> None:
    result = estimate(workload(), PRICE_BOOK)
    lambda_side, direct_side = result.break_even
    assert lambda_side.interval_s is not None and direct_side.interval_s is not None
    push = result.option("push-iot").usd
    slower = short_poll_cost(result.workload, PRICE_BOOK, Deployment(), lambda_side.interval_s * 2)
    faster = short_poll_cost(result.workload, PRICE_BOOK, Deployment(), lambda_side.interval_s / 2)
    assert slower.usd < push < faster.usd


def test_no_break_even_when_one_side_wins_at_every_interval() -> None:
    # one client, connected an hour a day, each change to it: polls are cheap, but 2,000
    # changes/s delivered make push dear -- polling even every 0.1 s costs less
    busy = workload(clients=1, connected_hours=1.0, changes_per_s=2000.0, subscribers_per_change=1)
    found = break_even_poll_interval(busy, PRICE_BOOK)
    assert found.interval_s is None and "0.1 s already costs no more" in found.note


def test_the_poll_curve_falls_and_push_stays_flat() -> None:
    intervals = [1.0, 10.0, 100.0, 1000.0]
    curves = poll_curve(workload(), PRICE_BOOK, Deployment(), intervals)
    assert len(set(curves["push-iot"])) == 1
    assert len(set(curves["long-poll"])) == 1
    short = curves["short-poll"]
    assert all(a > b for a, b in itertools.pairwise(short))


# -------------------------------------------------------------------------------- warnings
def warnings_of(**overrides: Any) -> str:
    return "\n".join(estimate(workload(**overrides), PRICE_BOOK).warnings)


def test_a_quiet_workload_warns_of_nothing() -> None:
    assert warnings_of(clients=10, subscribers_per_change=2.0) == ""


def test_the_per_channel_write_ceiling() -> None:
    # 600 changes/s of 1 KB on one channel: 600 x 2 WCU = 1,200 > 1,000 a key
    assert "per-channel write ceiling" in warnings_of(changes_per_s=600.0, clients=100_000)
    # 400/s: 800 WCU: fine
    assert "per-channel" not in warnings_of(changes_per_s=400.0, clients=100_000)
    # 600/s spread so that the busiest channel takes 100/s: fine
    spread = warnings_of(changes_per_s=600.0, clients=100_000, busiest_channel_changes_per_s=100.0)
    assert "per-channel" not in spread


def test_the_iot_per_connection_quotas() -> None:
    # 10 clients, each of 200 changes/s to all 10: 200 publishes/s a connection > 100
    said = warnings_of(clients=10, changes_per_s=200.0, subscribers_per_change=10.0)
    assert "per-connection quota" in said and "throughput" not in said
    # 4 KB changes: 200 x 4,096 = 800 KB/s > 512 KB/s
    big = warnings_of(
        clients=10, changes_per_s=200.0, subscribers_per_change=10.0, envelope_bytes=4096
    )
    assert "per-connection throughput" in big


def test_the_lambda_concurrency_of_long_polls() -> None:
    # 1,000 clients always connected: 1,000 waiting polls > ChannelsConcurrency 20, and the
    # whole account's 1,000
    said = warnings_of()
    assert "ChannelsConcurrency" in said and "the account has 1,000" in said
    # 15 clients: fine
    assert "concurrency" not in warnings_of(clients=15, subscribers_per_change=2.0)
    # a larger reservation moves the line
    result = estimate(workload(clients=100), PRICE_BOOK, Deployment(channels_concurrency=200))
    assert not [w for w in result.warnings if "concurrency" in w]


def test_the_short_poll_concurrency_and_the_iot_account_quotas() -> None:
    # 10,000 clients polling every second, 25 ms each: 10,000 x 0.025 / 1 = 250 executions
    assert "short-poll concurrency" in warnings_of(clients=10_000, poll_interval_s=1.0)
    assert "short-poll concurrency" not in warnings_of(clients=10_000, poll_interval_s=20.0)
    # 30,000 changes/s published (> 20,000) and 30,000 x 2 = 60,000 deliveries/s (> 20,000)
    said = warnings_of(
        clients=1_000_000,
        changes_per_s=30_000.0,
        subscribers_per_change=2.0,
        busiest_channel_changes_per_s=10.0,
        stream_shards=100,
    )
    assert "the publisher publishes 30,000/s" in said and "60,000 deliveries/s" in said
    assert "stream shard" not in said and "per-channel" not in said


def test_the_stream_shard_throughput() -> None:
    # full batches of 100 take 50 ms + 100 x 2 ms = 0.25 s: one shard, one invocation at a
    # time, carries 400 changes/s at most
    assert "stream shard throughput" in warnings_of(changes_per_s=500.0, clients=100_000)
    assert "stream shard" not in warnings_of(changes_per_s=500.0, clients=100_000, stream_shards=2)
    result = estimate(
        workload(changes_per_s=500.0, clients=100_000),
        PRICE_BOOK,
        Deployment(parallelization_factor=2),
    )
    assert not [w for w in result.warnings if "stream shard" in w]


def test_a_quantity_past_the_first_price_tier_is_noted() -> None:
    # 10,000 clients long-polling: 1.3 billion REST requests a month > 333 million
    result = estimate(workload(clients=10_000, changes_per_s=0.0), PRICE_BOOK)
    assert any("long-poll" in note and "first price tier" in note for note in result.notes)
    assert not estimate(workload(clients=10, subscribers_per_change=1.0), PRICE_BOOK).notes


# ------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"clients": 0}, "clients must be a whole number >= 1"),
        ({"clients": 2.5}, "clients must be a whole number"),
        ({"clients": True}, "clients must be a whole number"),
        ({"connected_hours": 25.0}, "connected_hours must be > 0 and <= 24"),
        ({"connected_hours": 0.0}, "connected_hours must be > 0"),
        ({"changes_per_s": -1.0}, "changes_per_s must be >= 0"),
        ({"changes_per_s": float("nan")}, "changes_per_s must be a number"),
        ({"subscribers_per_change": 2000.0}, "cannot be more than clients (1000)"),
        ({"poll_interval_s": 0.0}, "poll_interval_s must be > 0"),
        ({"poll_interval_s": "10"}, "poll_interval_s must be a number"),
        ({"poll_wait_s": 30.0}, "poll_wait_s must be > 0 and <= 20"),
        ({"stream_shards": 0}, "stream_shards must be a whole number >= 1"),
        ({"busiest_channel_changes_per_s": 5.0}, "cannot be more than changes_per_s"),
    ],
)
def test_a_bad_workload_is_refused_with_a_clear_message(
    overrides: dict[str, Any], says: str
) -> None:
    with pytest.raises(CostModelError) as refused:
        workload(**overrides)
    assert says in str(refused.value)


def test_a_workload_mapping_names_unknown_and_missing_fields() -> None:
    with pytest.raises(CostModelError, match=r"unknown workload field.*clientz"):
        Workload.from_mapping({"clientz": 3})
    with pytest.raises(CostModelError, match="the workload has no connected_hours"):
        Workload.from_mapping(
            {"clients": 3, "changes_per_s": 1, "subscribers_per_change": 1, "poll_interval_s": 5}
        )


def test_a_bad_deployment_or_interval_is_refused() -> None:
    with pytest.raises(CostModelError, match="x86_64 or arm64"):
        Deployment(channels_architecture="sparc")
    with pytest.raises(CostModelError, match="rest or http"):
        Deployment(api="grpc")  # type: ignore[arg-type]
    with pytest.raises(CostModelError, match="poll interval must be a number > 0"):
        short_poll_cost(workload(), PRICE_BOOK, Deployment(), -1.0)


def test_a_price_list_without_a_price_or_region_is_refused() -> None:
    prices = dict(PRICE_BOOK.prices)
    del prices["iot_messages"]
    with pytest.raises(CostModelError, match="has no iot_messages"):
        PriceBook(region="us-east-1", read_on="2026-11-29", prices=prices)
    document = {"read_on": "2026-11-29", "regions": {"us-east-1": {}}}
    with pytest.raises(CostModelError, match="no prices for eu-west-1; it has us-east-1"):
        PriceBook.from_document(document, "eu-west-1")
    bad = {"read_on": "x", "regions": {"r": {"iot_messages": {"usd": -1, "per": 1e6}}}}
    with pytest.raises(CostModelError, match="iot_messages has no unit"):
        PriceBook.from_document(bad, "r")
    with pytest.raises(CostModelError, match="no read_on"):
        PriceBook.from_document({"regions": {}}, "r")


# -------------------------------------------------------------------- the shipped price list
def test_the_shipped_price_list_is_complete_dated_and_sourced() -> None:
    path = data_file(PRICES)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document["read_on"], datetime.date)
    book = PriceBook.from_document(document, "us-east-1")
    assert set(REQUIRED_PRICES) <= set(book.prices)
    for name, entry in document["regions"]["us-east-1"].items():
        assert entry["source"].startswith("https://aws.amazon.com/"), name
        assert entry["source"].endswith("/pricing/") or "/pricing/" in entry["source"], name
        assert entry.get("confirmed"), f"{name}: say whether the figure was confirmed"
    # the figures the tests above use are the shipped ones
    for name in REQUIRED_PRICES:
        assert book[name].usd == PRICE_BOOK[name].usd, name


def test_importing_the_model_does_not_import_matplotlib() -> None:
    code = (
        "import sys, infra.cost, infra.cost_command, infra.cli; "
        "infra.cli._build_parser(); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

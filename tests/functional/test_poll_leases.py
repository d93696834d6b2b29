"""Long-poll leases against moto's DynamoDB: one wait per identity and channel, a cap per
identity, slots freed on release or when their holder died, never someone else's freed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.errors import StoreError
from backend.poll_leases import Lease, PollLeases, Refused
from infra.local.stack.template_model import load_template
from tests.support.moto_server import moto_client, moto_server

ROOT = Path(__file__).resolve().parents[2]
ALICE = "us-east-1:11111111-1111-4111-8111-111111111111"
BOB = "us-east-1:22222222-2222-4222-8222-222222222222"
TODOS = f"users/{ALICE}/todos"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def table(endpoint: str) -> str:
    """A leases table exactly as the template declares PollLeasesTable."""
    name = f"PollLeases{uuid.uuid4().hex[:8]}"
    template = load_template(ROOT / "infra" / "template.yaml")
    template.create_table(moto_client("dynamodb", endpoint), "PollLeasesTable", name)
    return name


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def leases(endpoint: str, table: str, cap: int = 4, clock: Any = None) -> PollLeases:
    return PollLeases(moto_client("dynamodb", endpoint), table, cap, clock=clock or Clock())


def test_a_second_wait_on_the_same_channel_is_refused_until_the_first_is_released(
    endpoint: str, table: str
) -> None:
    clock = Clock()
    store = leases(endpoint, table, clock=clock)
    first = store.acquire(ALICE, TODOS, 20)
    assert isinstance(first, Lease)
    second = store.acquire(ALICE, TODOS, 20)
    assert isinstance(second, Refused) and second.reason == "channel"
    assert second.retry_after_s == 20  # the first wait ends in 20 s at the latest
    clock.now += 5
    later = store.acquire(ALICE, TODOS, 20)
    assert isinstance(later, Refused) and later.retry_after_s == 15
    assert isinstance(store.acquire(BOB, TODOS, 20), Lease)  # another identity is not held up
    assert isinstance(store.acquire(ALICE, "public/scores", 20), Lease)
    store.release(first)
    assert isinstance(store.acquire(ALICE, TODOS, 20), Lease)  # a released slot is reusable


def test_an_identity_holds_at_most_its_cap_of_waits_over_all_channels(
    endpoint: str, table: str
) -> None:
    clock = Clock()
    store = leases(endpoint, table, cap=2, clock=clock)
    a = store.acquire(ALICE, "public/scores", 10)
    clock.now += 3
    b = store.acquire(ALICE, TODOS, 20)
    assert isinstance(a, Lease) and isinstance(b, Lease) and a.keys[1] != b.keys[1]
    refused = store.acquire(ALICE, "tenants/acme/board", 20)
    assert isinstance(refused, Refused) and refused.reason == "identity" and refused.limit == 2
    assert refused.retry_after_s == 7  # the earlier wait (10 s, 3 s ago) ends first
    assert isinstance(store.acquire(BOB, "tenants/acme/board", 20), Lease)
    store.release(a)
    c = store.acquire(ALICE, "tenants/acme/board", 20)  # the refusal left no channel item
    assert isinstance(c, Lease) and c.keys[1] == a.keys[1]


def test_a_lease_whose_holder_died_expires_by_itself(endpoint: str, table: str) -> None:
    clock = Clock()
    crashed = leases(endpoint, table, cap=1, clock=clock)
    held = crashed.acquire(ALICE, TODOS, 20)  # never released: its Lambda died
    assert isinstance(held, Lease)
    other_instance = leases(endpoint, table, cap=1, clock=clock)
    clock.now += 20 + 10 - 0.5  # the wait plus most of the margin: still held
    assert isinstance(other_instance.acquire(ALICE, TODOS, 20), Refused)
    assert isinstance(other_instance.acquire(ALICE, "public/scores", 20), Refused)
    clock.now += 1.0  # past the lease's end
    taken = other_instance.acquire(ALICE, TODOS, 20)
    assert isinstance(taken, Lease)
    crashed.release(held)  # a late release of the dead holder's token frees nothing
    assert isinstance(other_instance.acquire(ALICE, TODOS, 20), Refused)
    assert isinstance(other_instance.acquire(ALICE, "public/scores", 20), Refused)
    other_instance.release(taken)
    assert isinstance(other_instance.acquire(ALICE, "public/scores", 20), Lease)


def test_a_failing_table_is_a_store_error_not_a_crash(endpoint: str) -> None:
    store = leases(endpoint, "no-such-table")
    with pytest.raises(StoreError, match="ResourceNotFoundException"):
        store.acquire(ALICE, TODOS, 20)
    store.release(Lease("t", ("channel#x#y",), 0))  # never raises

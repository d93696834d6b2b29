"""A warm ChangeStore skips reading counters it knows, and stays gap-free when it is wrong.

Against moto (with the local stack's fixes); DynamoDB calls are counted with botocore's own
event hooks on the real client.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from backend.change_store import Candidate, ChangeStore, Committed
from tests.events.capture_stream_events import client as moto_client
from tests.events.capture_stream_events import create_backend_tables
from tests.support.moto_server import moto_server


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


class CountedStore:
    """A ChangeStore on its own boto3 client, with that client's calls counted."""

    def __init__(self, endpoint: str, tables: dict[str, str]) -> None:
        self.calls: Counter[str] = Counter()
        dynamodb = moto_client("dynamodb", endpoint)
        dynamodb.meta.events.register(
            "before-call.dynamodb.*", lambda model, **_: self.calls.update([model.name])
        )
        self.store = ChangeStore(
            dynamodb, tables["SequenceTable"], tables["ChangeLogTable"], retention_s=3600
        )

    def commit(self, *changes: tuple[str, str]) -> list[Committed]:
        results = self.store.commit(
            [
                Candidate(channel, event_id, lambda seq, epoch, e=event_id: f"{e}@{seq}")
                for channel, event_id in changes
            ]
        )
        assert all(isinstance(r, Committed) for r in results), results
        return results  # type: ignore[return-value]


@pytest.fixture
def tables(endpoint: str) -> dict[str, str]:
    return create_backend_tables(moto_client("dynamodb", endpoint), uuid.uuid4().hex[:8])


def log_of(store: ChangeStore, channel: str) -> list[tuple[int, str]]:
    return [(entry.seq, entry.envelope) for entry in store.read(channel, 0, 1000)]


def test_known_heads_cost_one_call_per_batch(endpoint: str, tables: dict[str, str]) -> None:
    counted = CountedStore(endpoint, tables)
    first = counted.commit(("a", "e1"), ("b", "e2"), ("a", "e3"))
    assert [r.seq for r in first] == [1, 1, 2]
    assert counted.calls == {"BatchGetItem": 1, "TransactWriteItems": 1}
    counted.calls.clear()
    second = counted.commit(("b", "e4"), ("a", "e5"))
    assert [(r.seq, r.fresh) for r in second] == [(2, True), (3, True)]
    assert counted.calls == {"TransactWriteItems": 1}
    counted.calls.clear()
    counted.commit(("a", "e6"), ("c", "e7"))  # c is new to this store: read both
    assert counted.calls == {"BatchGetItem": 1, "TransactWriteItems": 1}
    assert log_of(counted.store, "a") == [(1, "e1@1"), (2, "e3@2"), (3, "e5@3"), (4, "e6@4")]


def test_two_writers_with_stale_heads_leave_no_gap(endpoint: str, tables: dict[str, str]) -> None:
    one, two = CountedStore(endpoint, tables), CountedStore(endpoint, tables)
    seqs = []
    for n in range(12):
        writer = one if n % 3 else two  # each finds the other moved the head
        seqs += [r.seq for r in writer.commit(("x", f"e{n}"))]
    assert seqs == list(range(1, 13))
    assert log_of(one.store, "x") == [(n + 1, f"e{n}@{n + 1}") for n in range(12)]


def test_a_redelivered_event_gets_its_seq_back_with_a_warm_store(
    endpoint: str, tables: dict[str, str]
) -> None:
    counted = CountedStore(endpoint, tables)
    counted.commit(("r", "e1"), ("r", "e2"), ("r", "e3"))
    again = counted.commit(("r", "e2"), ("r", "e3"), ("r", "e4"))
    assert [(r.seq, r.fresh) for r in again] == [(2, False), (3, False), (4, True)]
    assert [seq for seq, _ in log_of(counted.store, "r")] == [1, 2, 3, 4]
    counted.calls.clear()
    assert [r.seq for r in counted.commit(("r", "e5"))] == [5]
    assert counted.calls == {"TransactWriteItems": 1}

"""The client's per-channel ordering: once, in order, gaps filled, continuity loss reported."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from client_sdk._ordering import AwaitGap, ChannelOrder, Deliver, Fill, Lost
from tests.support.fuzz import examples


def env(seq: int, epoch: int = 1, **extra) -> dict:
    return {"seq": seq, "epoch": epoch, "id": f"e{seq}", **extra}


def delivered(actions) -> list[int]:
    return [a.change["seq"] for a in actions if isinstance(a, Deliver)]


def test_in_order_pushes_are_delivered_at_once() -> None:
    order = ChannelOrder("c")
    assert delivered(order.on_push(env(1)) + order.on_push(env(2))) == [1, 2]
    assert order.cursor == 2


def test_duplicates_are_dropped() -> None:
    order = ChannelOrder("c")
    order.on_push(env(1))
    assert order.on_push(env(1)) == []


def test_gap_buffers_and_asks_for_a_fill_once() -> None:
    order = ChannelOrder("c")
    order.on_push(env(1))
    assert order.on_push(env(4)) == [AwaitGap(1)]
    assert order.on_push(env(5)) == []  # already waiting
    assert order.gap_timeout() == [Fill(1)]
    assert order.on_push(env(6)) == []  # a fill is already outstanding
    actions = order.on_fill([env(2), env(3), env(4)], head=6, epoch=1, more=False)
    assert delivered(actions) == [2, 3, 4, 5, 6]
    assert order.cursor == 6 and not order.filling


def test_a_reordering_closed_by_pushes_needs_no_fill() -> None:
    order = ChannelOrder("c")
    order.on_push(env(1))
    assert order.on_push(env(3)) == [AwaitGap(1)]
    assert delivered(order.on_push(env(2))) == [2, 3]
    assert order.gap_timeout() == []  # the window ended with nothing missing
    assert order.on_push(env(5)) == [AwaitGap(3)]  # a new hole waits again


def test_reference_envelopes_are_fetched() -> None:
    order = ChannelOrder("c")
    assert order.on_push(env(1, ref=True)) == [Fill(0)]
    actions = order.on_fill([env(1, new={"big": "x" * 10})], head=1, epoch=1, more=False)
    assert delivered(actions) == [1] and actions[0].change["new"]


def test_epoch_change_reports_lost_and_restarts() -> None:
    order = ChannelOrder("c")
    order.on_push(env(1))
    order.on_push(env(2))
    actions = order.on_push(env(1, epoch=2))
    assert actions[0] == Lost(1, 2, "epoch_changed") and delivered(actions) == [1]
    assert order.on_push(env(3, epoch=1)) == []  # stale epoch ignored


def test_cursor_expired_reports_head_and_continues_from_it() -> None:
    order = ChannelOrder("c", cursor=3, epoch=1)
    order.on_push(env(9))
    actions = order.on_cursor_expired(head=8, epoch=1)
    assert actions[0] == Lost(8, 1, "cursor_expired")
    assert delivered(actions) == [9] and order.cursor == 9


def test_fill_with_more_pages_asks_again() -> None:
    order = ChannelOrder("c")
    assert order.resume() == [Fill(0)]
    actions = order.on_fill([env(1), env(2)], head=10, epoch=1, more=True)
    assert delivered(actions) == [1, 2] and actions[-1] == Fill(2)


@given(st.integers(1, 60), st.integers(0, 2**32), st.floats(0, 0.5), st.floats(0, 0.5))
@settings(max_examples=examples(300))
def test_any_arrival_pattern_delivers_each_seq_once_in_order(n, seed, drop, dup) -> None:
    rng = random.Random(seed)
    log = [env(s) for s in range(1, n + 1)]
    arrivals = [e for e in log if rng.random() >= drop]
    arrivals += [e for e in log if rng.random() < dup]
    rng.shuffle(arrivals)
    order = ChannelOrder("c")
    seen: list[int] = []
    pending: list[Fill] = []
    gaps: list[AwaitGap] = []

    def run(actions) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                seen.append(action.change["seq"])
            elif isinstance(action, Fill):
                pending.append(action)
            elif isinstance(action, AwaitGap):
                gaps.append(action)
            else:  # pragma: no cover - no loss in this scenario
                raise AssertionError(action)

    for change in arrivals:
        run(order.on_push(change))
        if gaps and rng.random() < 0.5:  # the reorder window ends
            gaps.pop()
            run(order.gap_timeout())
        if pending and rng.random() < 0.3:
            fill = pending.pop(0)
            page = log[fill.after : fill.after + 5]
            run(order.on_fill(page, head=n, epoch=1, more=fill.after + 5 < n))
    run(order.resume())
    while pending:
        fill = pending.pop(0)
        page = log[fill.after : fill.after + 5]
        run(order.on_fill(page, head=n, epoch=1, more=fill.after + 5 < n))
    assert seen == list(range(1, n + 1))

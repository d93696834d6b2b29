"""Delivery threads and connection states: pure pieces of the client, tested alone."""

from __future__ import annotations

import threading

import pytest

from client_sdk import ConnectionState, ContinuityLost
from client_sdk._delivery import ChannelDelivery, Delivery
from client_sdk._state import connection_state
from tests.support.threads import left_running, python_threads


def change(seq: int, epoch: int = 1) -> dict:
    return {"seq": seq, "epoch": epoch, "channel": "c"}


def test_items_are_handed_over_in_order_on_a_thread_of_their_own() -> None:
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def sink(item) -> None:
        seen.append((item, threading.current_thread().name))
        if item == 99:
            done.set()

    delivery: Delivery[int] = Delivery("deliver c", sink)
    for n in range(100):
        delivery.put(n)
    assert done.wait(10)
    delivery.stop()
    assert [n for n, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {"tidings-deliver c"}


def test_a_raising_callback_is_logged_and_the_next_item_still_comes(caplog) -> None:
    seen: list[int] = []
    done = threading.Event()

    def sink(item: int) -> None:
        if item == 1:
            raise ValueError("application bug")
        seen.append(item)
        if item == 2:
            done.set()

    delivery: Delivery[int] = Delivery("deliver c", sink)
    for n in range(3):
        delivery.put(n)
    assert done.wait(10)
    delivery.stop()
    assert seen == [0, 2]
    assert "application bug" in caplog.text


def test_stop_drops_what_is_queued_and_joins_drain_delivers_it() -> None:
    before = python_threads()
    entered, gate = threading.Event(), threading.Event()
    seen: list[int] = []
    dropping: Delivery[int] = Delivery(
        "drop", lambda n: (entered.set(), gate.wait(10), seen.append(n))
    )
    for n in range(5):
        dropping.put(n)
    assert entered.wait(10)
    threading.Timer(0.2, gate.set).start()
    dropping.stop()  # waits for the running callback, drops the rest
    assert seen == [0]
    draining: Delivery[int] = Delivery("drain", seen.append)
    for n in range(1, 4):
        draining.put(n)
    draining.stop(drain=True)
    assert seen == [0, 1, 2, 3]
    assert draining.put(9) == 0 and dropping.put(9) == 0  # stopped: nothing more is taken
    assert left_running(before) == []


def test_a_callback_may_close_its_own_delivery() -> None:
    holder: list[Delivery[int]] = []
    stopped = threading.Event()

    def sink(_item: int) -> None:
        holder[0].stop()  # from its own thread: no join, no deadlock
        stopped.set()

    holder.append(Delivery("self", sink))
    holder[0].put(1)
    assert stopped.wait(10)


def test_call_when_below_fires_once_the_backlog_is_down() -> None:
    gate = threading.Event()
    fired = threading.Event()
    delivery: Delivery[int] = Delivery("below", lambda _n: gate.wait(10))
    for n in range(10):
        delivery.put(n)
    delivery.call_when_below(3, fired.set)
    assert not fired.is_set()
    gate.set()
    assert fired.wait(10)
    delivery.stop()
    now: list[bool] = []
    idle: Delivery[int] = Delivery("idle", lambda _n: None)
    idle.call_when_below(0, lambda: now.append(True))  # already below: called at once
    assert now == [True]
    idle.stop()


def test_the_channel_cursor_follows_what_the_callbacks_returned_from() -> None:
    cursors: list[tuple[int, int | None]] = []
    holder: list[ChannelDelivery] = []

    def sink(_item) -> None:  # sees the cursor as of the previous callback's return
        cursors.append((holder[0].cursor, holder[0].epoch))

    holder.append(ChannelDelivery("c", sink, 5, 1))
    for item in (
        change(6),
        ContinuityLost(40, 1, "cursor_expired"),
        change(41),
        ContinuityLost(3, 2, "epoch_changed"),
        change(1, epoch=2),
    ):
        holder[0].put(item)  # type: ignore[arg-type]
    holder[0].stop(drain=True)
    # 6; then the head after an expired cursor; 41; then 0 in the new epoch; 1
    assert cursors == [(5, 1), (6, 1), (40, 1), (41, 1), (0, 2)]
    assert (holder[0].cursor, holder[0].epoch) == (1, 2)


@pytest.mark.parametrize(
    ("link", "poll_ok", "catching_up", "closed", "state"),
    [
        ("connecting", False, False, False, "connecting"),
        ("push", False, False, False, "live"),
        ("push", False, True, False, "catching_up"),
        ("down", False, False, False, "offline"),
        ("poll", True, False, False, "polling"),
        ("poll", False, False, False, "offline"),
        ("signed_out", False, False, False, "signed_out"),
        ("push", False, False, True, "signed_out"),
    ],
)
def test_connection_states(link, poll_ok, catching_up, closed, state) -> None:
    found = connection_state(link, poll_ok, catching_up, closed)
    assert found == state and isinstance(found, ConnectionState)

"""The real client over the in-memory stack (client_sdk.testing): states, delivery threads,
back-pressure, catch-up, continuity, the async client, and connect failures, all without a
network. The same properties are checked against the local stack in tests/e2e."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from client_sdk import (
    AccessDenied,
    ClientOptions,
    ConnectTimeout,
    ContinuityBroken,
    SignInFailed,
    Tidings,
)
from client_sdk.testing import InMemoryAsyncTidings, InMemoryStack, InMemoryTidings
from tests.support.recorder import Recorder, assert_exactly_once_in_order
from tests.support.threads import left_running, python_threads


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_states_subscriptions_and_close() -> None:
    before = python_threads()
    states: list[str] = []
    with InMemoryTidings(options=ClientOptions(on_state=states.append)) as tidings:
        for n in range(3):
            tidings.publish("public/scores", {"n": n})
        recorder = Recorder()
        with tidings.subscribe("public/scores", recorder.on_change, after=1) as subscription:
            tidings.settle()
            assert recorder.seqs == [2, 3] and subscription.cursor == 3
            assert subscription.epoch == 1 and not subscription.closed
        assert subscription.closed
        tidings.publish("public/scores", {"n": 3})
        assert recorder.seqs == [2, 3]  # closed: nothing more
        assert tidings.state == "live"
    assert states == ["connecting", "live", "catching_up", "live", "signed_out"]
    assert tidings.closed and tidings.state == "signed_out"
    assert left_running(before) == []


def test_changes_are_typed_envelopes() -> None:
    with InMemoryTidings(identity_id="eu-west-1:abc") as tidings:
        received: list[dict] = []
        tidings.subscribe("users/me/todos", received.append)
        change = tidings.publish("users/me/todos", {"title": "milk"}, keys={"id": "t1"})
        assert received == [change]
        assert set(change) == {"v", "channel", "seq", "epoch", "id", "op", "keys", "new", "at"}
        assert change["channel"] == "users/eu-west-1:abc/todos" and change["op"] == "insert"


def test_a_blocked_callback_holds_up_its_channel_only() -> None:
    release = threading.Event()
    blocked: list[int] = []

    def slow(change) -> None:
        blocked.append(change["seq"])
        release.wait(30)

    with InMemoryTidings(options=ClientOptions(fallback_after_s=0.5)) as tidings:
        tidings.subscribe("users/me/todos", slow)
        other = Recorder()
        tidings.subscribe("public/scores", other.on_change)
        tidings.publish("users/me/todos", {"n": 0}, wait=False)
        assert wait_until(lambda: blocked == [1])
        tidings.publish("public/scores", {"n": 0}, wait=False)
        assert other.wait_for(1, 10)
        tidings.stack.cut_connection()  # recovered while the callback is blocked
        tidings.publish("public/scores", {"n": 1}, wait=False)
        assert wait_until(lambda: tidings.state == "polling")
        assert other.wait_for(2, 10)
        tidings.stack.restore_connection()
        assert wait_until(lambda: tidings.state == "live")
        tidings.publish("public/scores", {"n": 2}, wait=False)
        assert other.wait_for(3, 10)
        assert blocked == [1]
        release.set()
        tidings.settle()
    assert_exactly_once_in_order(other, 3)


def test_a_slow_callback_is_held_and_reads_on_from_the_log() -> None:
    gate = threading.Event()
    recorder = Recorder()

    def slow(change) -> None:
        gate.wait(30)
        recorder.on_change(change)

    with InMemoryTidings(options=ClientOptions(max_buffered_changes=3)) as tidings:
        tidings.subscribe("public/scores", slow)
        for n in range(50):
            tidings.publish("public/scores", {"n": n}, wait=False)
        assert wait_until(lambda: tidings.stats["holds"] >= 1)
        gate.set()
        assert recorder.wait_for(50, 10)
        tidings.settle()
    assert_exactly_once_in_order(recorder, 50)


def test_changes_published_while_cut_arrive_once_in_order_after_the_reconnect() -> None:
    with InMemoryTidings() as tidings:
        recorder = Recorder()
        tidings.subscribe("users/me/todos", recorder.on_change)
        for round_ in range(3):
            tidings.publish("users/me/todos", {"n": round_})
            tidings.cut_connection()
            assert tidings.state == "offline"
            for n in range(5):
                tidings.publish("users/me/todos", {"n": n})
            tidings.restore_connection()
        assert tidings.stats["reconnects"] == 3
    assert_exactly_once_in_order(recorder, 18)


def test_expired_cursor_and_refusal_are_reported_in_order() -> None:
    with InMemoryTidings() as tidings:
        recorder = Recorder()
        subscription = tidings.subscribe(
            "public/scores", recorder.on_change, on_continuity_lost=recorder.on_lost
        )
        tidings.publish("public/scores", {"n": 1})
        tidings.expire_cursor("public/scores", missed=3)
        assert [(c, lost.reason, lost.head) for c, lost in recorder.lost] == [
            ("public/scores", "cursor_expired", 4)
        ]
        assert subscription.cursor == 4
        tidings.publish("public/scores", {"n": 5})
        assert recorder.seqs == [1, 5]
        tidings.refuse("public/scores")
        assert recorder.lost[-1][1].reason == "access_denied"
        tidings.subscribe("public/other", recorder.on_change).close()  # allowed so far
        tidings.refuse("public/other")
        with pytest.raises(AccessDenied):
            tidings.subscribe("public/other", recorder.on_change)


class _RefusingTransport:
    """A transport whose every attempt fails (``refused``: CONNACK not authorised)."""

    client_id = "test"

    def __init__(self, events, refused: bool) -> None:
        self.events, self.refused = events, refused

    def start(self) -> None:
        self.events.on_connect_failed(
            self, "CONNACK 0x87" if self.refused else "timeout", self.refused
        )

    def subscribe(self, topic: str) -> None: ...
    def unsubscribe(self, topic: str) -> None: ...
    def stop(self) -> None: ...


class _FailingStack(InMemoryStack):
    def __init__(self, refused: bool, sign_in_refused: bool = False) -> None:
        super().__init__()
        self._refuse_connect, self._sign_in_refused = refused, sign_in_refused

    def new_transport(self, events):
        return _RefusingTransport(events, self._refuse_connect)

    def refused(self):
        return SignInFailed("the password changed") if self._sign_in_refused else None


@pytest.mark.parametrize(
    ("stack", "error"),
    [
        (_FailingStack(refused=True), AccessDenied),
        (_FailingStack(refused=False, sign_in_refused=True), SignInFailed),
        (_FailingStack(refused=False), ConnectTimeout),
    ],
)
def test_connect_raises_what_went_wrong_and_leaves_no_thread(stack, error) -> None:
    before = python_threads()
    options = ClientOptions(connect_timeout_s=0.5, fallback_after_failures=100)
    with pytest.raises(error):
        Tidings._start(stack, options, time.monotonic() + options.connect_timeout_s)
    assert left_running(before) == []


def test_the_async_double_iterates_calls_back_and_applies_back_pressure() -> None:
    before = python_threads()

    async def main() -> tuple[list[int], list[int], list[str]]:
        states: list[str] = []
        async with InMemoryAsyncTidings(options=ClientOptions(on_state=states.append)) as t:
            seen: list[int] = []

            async def on_change(change) -> None:
                await asyncio.sleep(0)
                seen.append(change["seq"])

            await t.subscribe("public/scores", on_change)
            slow = await t.subscribe("users/me/todos", buffer=2)
            for n in range(20):
                await t.publish("users/me/todos", {"n": n})  # nobody iterates yet: held
                await t.publish("public/scores", {"n": n})  # and this channel goes on
            assert seen == list(range(1, 21))
            iterated = []
            async for change in slow:
                iterated.append(change["seq"])
                if change["seq"] == 20:
                    break
            await t.expire_cursor("users/me/todos")
            with pytest.raises(ContinuityBroken):
                await slow.__anext__()
            await slow.aclose()
            return seen, iterated, states

    _seen, iterated, states = asyncio.run(main())
    assert iterated == list(range(1, 21))
    assert states[0] == "connecting" and states[-1] == "signed_out"
    assert left_running(before) == []


def test_the_deprecated_async_iterator_of_the_threaded_client_still_works() -> None:
    with InMemoryTidings() as tidings:

        async def first() -> int:
            with pytest.warns(DeprecationWarning):
                changes = tidings.changes("public/scores", after=0)
            async for change in changes:
                return change["seq"]
            return 0

        tidings.publish("public/scores", {"n": 1})
        assert asyncio.run(first()) == 1

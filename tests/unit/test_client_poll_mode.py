"""``ClientOptions(transport="poll")``: the real client over the in-memory stack with no push
connection at all. Every channel is read from the channels API after its cursor, long-polls
back to back by default, ``poll_interval_s`` apart when set (timed here with an injected
clock), full pages read on at once, with the same guarantees and the same error handling as
the push transports. The local stack runs the same guarantees in tests/acceptance and
tests/e2e/test_client_poll_mode.py."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from client_sdk import (
    AccessDenied,
    ClientOptions,
    ConnectTimeout,
    GreengrassCore,
    ServiceUnavailable,
    SignInFailed,
    Tidings,
)
from client_sdk._core import ClientCore
from client_sdk._service import aws_service
from client_sdk.testing import InMemoryAsyncTidings, InMemoryStack, InMemoryTidings
from tests.support.recorder import Recorder, assert_exactly_once_in_order
from tests.support.threads import left_running, python_threads

CHANNEL = "public/scores"


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def stays(condition, seconds: float = 1.0) -> bool:
    """True if ``condition`` holds all along ``seconds`` (nothing the fake clock would allow
    happens in that real time)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.02)
    return condition()


class FakeClock:
    """The core's clock: stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PollOnlyStack(InMemoryStack):
    """The in-memory stack, recording each read (channel, after, wait, clock time); a push
    connection asked of it fails the test; ``failures`` are raised by the next reads."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.reads: list[tuple[str, int, float, float]] = []
        self.failures: list[Exception] = []
        self.head_error: Exception | None = None
        self.transports_asked = 0
        self._reads_lock = threading.Lock()

    def new_transport(self, events):
        self.transports_asked += 1
        raise AssertionError("poll mode opened a push transport")

    def head(self, channel: str) -> dict[str, Any]:
        if self.head_error is not None:
            raise self.head_error
        return super().head(channel)

    def changes(
        self, channel: str, after: int, limit: int, wait: float, epoch: int | None
    ) -> dict[str, Any]:
        with self._reads_lock:
            self.reads.append((channel, after, wait, self.clock()))
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return super().changes(channel, after, limit, wait, epoch)

    def read_count(self) -> int:
        with self._reads_lock:
            return len(self.reads)


def start(stack: InMemoryStack, options: ClientOptions, clock: Any = None) -> Tidings:
    """A connected client over ``stack`` (the injected ``clock`` times its timers)."""
    core = ClientCore(stack, options) if clock is None else ClientCore(stack, options, clock=clock)
    try:
        core.start()
        core.wait_connected(options.connect_timeout_s)
    except BaseException:
        core.close()
        raise
    return Tidings(core)


def poll(**overrides: Any) -> ClientOptions:
    return ClientOptions(transport="poll", min_backoff_ms=10, max_backoff_ms=50, **overrides)


# ---------------------------------------------------------------------- options
def test_the_options_refuse_a_busy_loop_and_negative_values() -> None:
    with pytest.raises(ValueError, match="busy loop"):
        ClientOptions(transport="poll", poll_wait_s=0, poll_interval_s=0)
    with pytest.raises(ValueError, match="negative"):
        ClientOptions(transport="poll", poll_interval_s=-1)
    with pytest.raises(ValueError, match="negative"):
        ClientOptions(poll_wait_s=-1)
    assert ClientOptions(transport="poll", poll_wait_s=0, poll_interval_s=60).poll_wait_s == 0
    assert ClientOptions().poll_interval_s == 0 and ClientOptions().poll_wait_s == 20
    # the push transports' fallback may short-poll (as before)
    assert ClientOptions(poll_wait_s=0).transport == "mqtt5"


def test_a_greengrass_component_cannot_poll() -> None:
    core = GreengrassCore(
        thing_name="core-1",
        region="us-east-1",
        ipc_socket="/tmp/ipc.socket",
        svcuid="svcuid",
        credentials_uri="http://localhost:1/credentials",
        authorization_token="token",
    )
    with pytest.raises(ValueError, match="not 'poll'"):
        aws_service("https://api.example", core, ClientOptions(transport="poll"))


# ---------------------------------------------------------------------- the guarantees
def test_no_push_connection_every_channel_long_polled_once_and_in_order() -> None:
    before = python_threads()
    states: list[str] = []
    stack = PollOnlyStack()
    for n in range(3):
        stack.publish(CHANNEL, {"n": n})
    client = start(stack, poll(on_state=states.append))
    assert client.state == "polling" and stack.transports_asked == 0
    scores, todos = Recorder(), Recorder()
    mine = f"users/{client.identity_id}/todos"
    client.subscribe(CHANNEL, scores.on_change, after=1, on_continuity_lost=scores.on_lost)
    client.subscribe("users/me/todos", todos.on_change, on_continuity_lost=todos.on_lost)
    assert scores.wait_for(3, 10)  # after=1: 2 and 3, read from the API
    assert wait_until(lambda: stack.parked() == 2)  # one long-poll per channel waits
    for n in range(40):
        stack.publish(CHANNEL, {"n": n + 3})
        stack.publish(mine, {"n": n})
    assert scores.wait_for(43, 10) and todos.wait_for(40, 10)
    assert wait_until(lambda: stack.parked() == 2)
    assert client.state == "polling" and client.stats["pushed"] == 0
    assert client.stats["polls"] >= 2 and all(wait == 20 for *_, wait, _t in stack.reads)
    client.close()
    assert left_running(before) == []
    assert_exactly_once_in_order(scores, 42, first=2)
    assert_exactly_once_in_order(todos, 40)
    assert scores.lost == [] and todos.lost == []
    assert states == ["connecting", "polling", "signed_out"]
    assert stack.transports_asked == 0


def test_the_test_double_runs_poll_mode_with_its_controls() -> None:
    recorder = Recorder()
    options = ClientOptions(transport="poll", poll_wait_s=0, poll_interval_s=3600)
    with InMemoryTidings(options=options) as tidings:
        assert tidings.state == "polling"
        tidings.subscribe(CHANNEL, recorder.on_change, on_continuity_lost=recorder.on_lost)
        for n in range(5):  # each read at once, not an hour later
            tidings.publish(CHANNEL, {"n": n})
        assert recorder.seqs == [1, 2, 3, 4, 5]
        tidings.expire_cursor(CHANNEL, missed=2)
        assert [(lost.head, lost.reason) for _, lost in recorder.lost] == [(7, "cursor_expired")]
        tidings.publish(CHANNEL, {"n": 7})
        assert recorder.seqs == [1, 2, 3, 4, 5, 8]
        tidings.refuse(CHANNEL)
        assert recorder.lost[-1][1].reason == "access_denied"
        tidings.refuse("tenants/other/board")
        with pytest.raises(AccessDenied):  # at once, not retried
            tidings.subscribe("tenants/other/board", recorder.on_change)
        assert tidings.state == "polling"


def test_the_async_client_polls_too() -> None:
    async def main() -> tuple[list[int], str]:
        options = ClientOptions(transport="poll", poll_wait_s=5)
        async with InMemoryAsyncTidings(options=options) as tidings:
            state = str(tidings.state)
            sub = await tidings.subscribe(CHANNEL)
            for n in range(10):
                await tidings.publish(CHANNEL, {"n": n})
            seqs = []
            async for change in sub:
                seqs.append(change["seq"])
                if len(seqs) == 10:
                    break
            return seqs, state

    seqs, state = asyncio.run(main())
    assert seqs == list(range(1, 11)) and state == "polling"


# ---------------------------------------------------------------------- the interval
def test_reads_of_a_channel_start_poll_interval_s_apart() -> None:
    clock = FakeClock()
    stack = PollOnlyStack(clock)
    recorder = Recorder()
    client = start(stack, poll(poll_wait_s=0, poll_interval_s=60), clock)
    try:
        client.subscribe(CHANNEL, recorder.on_change)
        assert wait_until(lambda: stack.read_count() == 1)
        stack.publish(CHANNEL, {"n": 0})
        assert stays(lambda: stack.read_count() == 1)  # the clock stands still: no read
        clock.now += 59.5
        assert stays(lambda: stack.read_count() == 1)  # not yet a minute
        assert recorder.seqs == []
        clock.now += 0.5
        assert recorder.wait_for(1, 10) and stack.read_count() == 2
        clock.now += 30  # a read that answers late does not move the next one forward
        stack.publish(CHANNEL, {"n": 1})
        assert stays(lambda: stack.read_count() == 2)
        clock.now += 30
        assert recorder.wait_for(2, 10)
        assert [(after, wait, at) for _, after, wait, at in stack.reads] == [
            (0, 0, 1000.0),
            (0, 0, 1060.0),
            (1, 0, 1120.0),
        ]
        assert client.state == "polling"
    finally:
        client.close()


def test_long_polls_with_an_interval_wait_for_news_then_for_the_interval() -> None:
    clock = FakeClock()
    stack = PollOnlyStack(clock)
    recorder = Recorder()
    client = start(stack, poll(poll_wait_s=20, poll_interval_s=30), clock)
    try:
        client.subscribe(CHANNEL, recorder.on_change)
        assert wait_until(lambda: stack.parked() == 1)  # a long-poll waits for news
        stack.publish(CHANNEL, {"n": 0})
        assert recorder.wait_for(1, 10)  # it answered at once
        assert stays(lambda: stack.read_count() == 1)  # the next only 30 s after its start
        clock.now += 30
        assert wait_until(lambda: stack.parked() == 1)
        assert [(after, wait, at) for _, after, wait, at in stack.reads] == [
            (0, 20, 1000.0),
            (1, 20, 1030.0),
        ]
    finally:
        client.close()


def test_a_full_page_is_read_on_at_once_whatever_the_interval() -> None:
    clock = FakeClock()
    stack = PollOnlyStack(clock)
    for n in range(5):
        stack.publish(CHANNEL, {"n": n})
    recorder = Recorder()
    client = start(stack, poll(poll_wait_s=0, poll_interval_s=60, fill_limit=2), clock)
    try:
        client.subscribe(CHANNEL, recorder.on_change, after=0)
        assert recorder.wait_for(5, 10)
        assert stays(lambda: stack.read_count() == 3)  # pages after 0, 2, 4; then it waits
        assert [(after, at) for _, after, _w, at in stack.reads] == [
            (0, 1000.0),
            (2, 1000.0),
            (4, 1000.0),
        ]
        for n in range(3):
            stack.publish(CHANNEL, {"n": n + 5})
        clock.now += 60
        assert recorder.wait_for(8, 10)
        assert [after for _, after, _w, _at in stack.reads[3:]] == [5, 7]
        assert_exactly_once_in_order(recorder, 8)
    finally:
        client.close()


# ---------------------------------------------------------------------- errors
def test_retry_after_is_honoured_over_the_interval() -> None:
    clock = FakeClock()
    stack = PollOnlyStack(clock)
    recorder = Recorder()
    client = start(stack, poll(poll_wait_s=0, poll_interval_s=5), clock)
    try:
        stack.failures.append(ServiceUnavailable("at capacity", retry_after=30))
        stack.publish(CHANNEL, {"n": 0})
        client.subscribe(CHANNEL, recorder.on_change, after=0)
        assert wait_until(lambda: stack.read_count() == 1)
        clock.now += 29
        assert stays(lambda: stack.read_count() == 1)  # not at 5 s: the API said 30
        clock.now += 1
        assert recorder.wait_for(1, 10)
        assert [at for *_, at in stack.reads] == [1000.0, 1030.0]
    finally:
        client.close()


def test_failing_reads_go_offline_then_back_to_polling_losing_nothing() -> None:
    states: list[str] = []
    stack = PollOnlyStack()
    recorder = Recorder()
    client = start(stack, poll(poll_wait_s=1, on_state=states.append))
    try:
        client.subscribe(CHANNEL, recorder.on_change, on_continuity_lost=recorder.on_lost)
        stack.failures.extend(ServiceUnavailable("connection refused") for _ in range(3))
        for n in range(5):
            stack.publish(CHANNEL, {"n": n})
        assert recorder.wait_for(5, 20)
        assert wait_until(lambda: client.state == "polling")
    finally:
        client.close()
    assert_exactly_once_in_order(recorder, 5)
    assert states[:2] == ["connecting", "polling"] and "offline" in states
    assert states[states.index("offline") + 1] == "polling"


def test_a_refused_sign_in_signs_out_and_stops_polling() -> None:
    stack = PollOnlyStack()
    client = start(stack, poll(poll_wait_s=0, poll_interval_s=0.05))
    try:
        client.subscribe(CHANNEL, Recorder().on_change)
        assert wait_until(lambda: stack.read_count() >= 2)
        stack.failures.append(SignInFailed("the password changed"))
        assert wait_until(lambda: client.state == "signed_out")
        reads = stack.read_count()
        assert stays(lambda: stack.read_count() == reads)  # no read after signing out
    finally:
        client.close()


@pytest.mark.parametrize(
    ("head_error", "expected", "message"),
    [
        (SignInFailed("the password changed"), SignInFailed, "password changed"),
        (ServiceUnavailable("connection refused"), ConnectTimeout, "channels API did not"),
    ],
)
def test_connect_fails_when_the_api_does_not_answer_and_leaves_no_thread(
    head_error: Exception, expected: type[Exception], message: str
) -> None:
    before = python_threads()
    stack = PollOnlyStack()
    stack.head_error = head_error
    with pytest.raises(expected, match=message):
        start(stack, poll(connect_timeout_s=0.5))
    assert left_running(before) == []
    assert stack.transports_asked == 0


def test_close_ends_a_long_poll_and_leaves_no_thread() -> None:
    before = python_threads()
    stack = PollOnlyStack()
    client = start(stack, poll(poll_wait_s=20))
    client.subscribe(CHANNEL, Recorder().on_change)
    client.subscribe("tenants/acme/board", Recorder().on_change)
    assert wait_until(lambda: stack.parked() == 2)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 10  # the long-polls were ended, not waited out
    assert client.state == "signed_out"
    assert left_running(before) == []

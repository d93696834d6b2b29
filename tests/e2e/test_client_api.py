"""The client's 1.0 API against the whole local stack.

``connect()`` returns only when it is connected (or raises), and neither a failed connect nor
``close()`` leaves a thread running, even mid-reconnect or mid-long-poll, for either
transport. Callbacks run on delivery threads: one channel's blocked callback holds up neither
recovery (reconnect, fallback to polling) nor the other channels, and the connection state is
reported at each transition."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from client_sdk import (
    AsyncTidings,
    ClientOptions,
    ConnectTimeout,
    ContinuityBroken,
    Password,
    SignInFailed,
    Tidings,
)
from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user
from tests.support.recorder import Recorder
from tests.support.threads import left_running, python_threads

PASSWORD = "connect-close-password-1"


def write_board(stack: LocalStack, n: int) -> None:
    stack.client("dynamodb").put_item(
        TableName=stack.tables["BoardsTable"],
        Item={"tenant": {"S": "acme"}, "id": {"S": f"b{n}"}, "n": {"N": str(n)}},
    )


def write_todo(stack: LocalStack, owner: str, n: int) -> None:
    stack.client("dynamodb").put_item(
        TableName=stack.tables["TodosTable"],
        Item={"owner": {"S": owner}, "id": {"S": f"t{n}"}, "n": {"N": str(n)}},
    )


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    add_user(shared_stack, "carol", PASSWORD, {"acme"})
    return shared_stack


def options(stack: LocalStack, **overrides) -> ClientOptions:
    return ClientOptions(
        ca_file=stack.ca_file,
        cognito_endpoint=stack.identity_url,
        min_backoff_ms=200,
        max_backoff_ms=1000,
        **overrides,
    )


@pytest.fixture
def mqtt_blocked(stack: LocalStack) -> Iterator[None]:
    stack.run_on_gateway(stack.gateway.block_mqtt)
    try:
        yield
    finally:
        stack.run_on_gateway(stack.gateway.unblock_mqtt)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("transport", ["mqtt5", "v1", "poll"])
def test_connect_subscribe_close_leaves_no_thread(stack: LocalStack, transport: str) -> None:
    before = python_threads()
    client = Tidings.connect(
        stack.api_url, Password("carol", PASSWORD), options=options(stack, transport=transport)
    )
    # connect() returned connected, not merely started
    assert client.state == ("polling" if transport == "poll" else "live")
    recorder = Recorder()
    with client.subscribe("users/me/todos", recorder.on_change) as subscription:
        assert not subscription.closed and subscription.channel.endswith("/todos")
    assert subscription.closed
    client.subscribe("public/scores", recorder.on_change)
    assert left_running(before) != []  # the client does run threads...
    client.close()
    assert left_running(before) == []  # ...and close() joined every one of them
    client.close()  # idempotent
    with client:  # and __exit__ after close is harmless too
        pass


def test_a_wrong_password_raises_sign_in_failed_and_leaves_no_thread(stack: LocalStack) -> None:
    before = python_threads()
    with pytest.raises(SignInFailed):
        Tidings.connect(stack.api_url, Password("carol", "not-it"), options=options(stack))
    assert left_running(before) == []


def test_the_deprecated_form_still_connects(stack: LocalStack) -> None:
    with (
        pytest.warns(DeprecationWarning),
        Tidings.connect(
            stack.api_url, "password", username="carol", password=PASSWORD, options=options(stack)
        ) as client,
    ):
        assert client.state == "live"


def test_no_connection_in_time_is_a_connect_timeout(stack: LocalStack, mqtt_blocked) -> None:
    before = python_threads()
    slow_fallback = options(
        stack, connect_timeout_s=2.0, fallback_after_s=60.0, fallback_after_failures=1000
    )
    with pytest.raises(ConnectTimeout, match="within 2 s"):
        Tidings.connect(stack.api_url, Password("carol", PASSWORD), options=slow_fallback)
    assert left_running(before) == []


@pytest.mark.parametrize("transport", ["mqtt5", "v1"])
def test_a_blocked_websocket_connects_by_polling_and_closes_mid_long_poll(
    stack: LocalStack, mqtt_blocked, transport: str
) -> None:
    before = python_threads()
    polling = options(stack, transport=transport, fallback_after_s=1.0, poll_wait_s=20.0)
    client = Tidings.connect(stack.api_url, Password("carol", PASSWORD), options=polling)
    assert client.state == "polling"  # connected: by polling, which works
    client.subscribe("users/me/todos", Recorder().on_change)
    polls = client.stats["polls"]
    assert wait_until(lambda: client.stats["polls"] > polls, 10)
    time.sleep(0.5)  # a 20 s long-poll is waiting now; the push side keeps retrying
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 10  # the long-poll was ended, not waited out
    assert left_running(before) == []


def test_close_during_reconnect_leaves_no_thread(stack: LocalStack) -> None:
    before = python_threads()
    client = Tidings.connect(stack.api_url, Password("carol", PASSWORD), options=options(stack))
    client.subscribe("users/me/todos", Recorder().on_change)
    stack.run_on_gateway(stack.gateway.block_mqtt)
    try:
        assert wait_until(lambda: client.state == "offline", 10)  # reconnecting with backoff
        time.sleep(0.5)
        client.close()
    finally:
        stack.run_on_gateway(stack.gateway.unblock_mqtt)
    assert left_running(before) == []


def test_a_blocked_callback_delays_neither_recovery_nor_other_channels(
    stack: LocalStack,
) -> None:
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()
    slow_seqs: list[int] = []

    blocked_at: list[float] = []

    def slow(change) -> None:  # the first call blocks until the test lets it go
        slow_seqs.append(change["seq"])
        blocked_at.append(time.monotonic())
        entered.set()
        if not release.wait(120):
            raise AssertionError("never released")
        returned.set()

    states: list[str] = []
    board = Recorder()
    settings = options(stack, fallback_after_s=2.0, poll_wait_s=2.0, on_state=states.append)
    with Tidings.connect(stack.api_url, Password("carol", PASSWORD), options=settings) as client:
        me = client.identity_id
        todos = client.subscribe("users/me/todos", slow)
        boards = client.subscribe("tenants/acme/board", board.on_change)
        first_board = boards.cursor
        write_todo(stack, me, 0)
        assert entered.wait(30)
        for n in range(5):
            write_board(stack, n)
            write_todo(stack, me, n + 1)  # queued behind the blocked callback
        assert board.wait_for(first_board + 5, 30)
        # a connection cut is recovered while the callback is blocked
        reconnects = client.stats["reconnects"]
        assert stack.run_on_gateway(stack.gateway.drop_clients, me) > 0
        assert wait_until(lambda: client.stats["reconnects"] > reconnects, 30)
        for n in range(5, 10):
            write_board(stack, n)
        assert board.wait_for(first_board + 10, 30)
        # and so is a fallback to polling
        stack.run_on_gateway(stack.gateway.block_mqtt)
        try:
            assert wait_until(lambda: client.state == "polling", 30)
            for n in range(10, 15):
                write_board(stack, n)
            assert board.wait_for(first_board + 15, 30)
        finally:
            stack.run_on_gateway(stack.gateway.unblock_mqtt)
        assert wait_until(lambda: client.state == "live", 60)
        time.sleep(max(0.0, blocked_at[0] + 10.0 - time.monotonic()))  # blocked 10 s at least
        assert not returned.is_set() and slow_seqs == [1]  # still in its first call
        assert todos.cursor == 0  # nothing delivered yet: the cursor says so
        release.set()
        assert wait_until(lambda: todos.cursor == 6, 30)
    assert slow_seqs == [1, 2, 3, 4, 5, 6]  # the held-up channel: each once, in order
    assert board.seqs == list(range(first_board + 1, first_board + 16))
    # each transition said once, in order
    assert states[0] == "connecting" and states[-1] == "signed_out"
    assert all(a != b for a, b in itertools.pairwise(states))
    assert {"live", "offline", "polling"} <= set(states)
    assert states.index("polling") > states.index("offline"), states


def test_a_slow_callback_is_held_and_then_reads_on_from_the_log(stack: LocalStack) -> None:
    seqs: list[int] = []
    go = threading.Event()

    def slow(change) -> None:
        go.wait(60)
        seqs.append(change["seq"])

    settings = options(stack, max_buffered_changes=4)
    with Tidings.connect(stack.api_url, Password("carol", PASSWORD), options=settings) as client:
        channel = client.subscribe("public/scores", slow)
        start = channel.cursor
        dynamodb = stack.client("dynamodb")
        for n in range(30):
            dynamodb.put_item(
                TableName=stack.tables["ScoresTable"],
                Item={"game": {"S": "held"}, "player": {"S": f"p{n}"}, "score": {"N": str(n)}},
            )
        assert wait_until(lambda: client.stats["holds"] >= 1, 30)  # it stopped taking pushes
        go.set()
        assert wait_until(lambda: channel.cursor == start + 30, 60)
    assert seqs == list(range(start + 1, start + 31))


def test_the_async_client_runs_on_the_callers_loop_and_leaves_no_thread(
    stack: LocalStack,
) -> None:
    before = python_threads()
    states: list[tuple[str, bool]] = []  # (state, called on the loop's thread)
    changes: list[tuple[int, bool]] = []

    async def main() -> None:
        loop_thread = threading.current_thread()

        def on_state(state) -> None:
            states.append((state, threading.current_thread() is loop_thread))

        settings = options(stack, on_state=on_state)
        async with AsyncTidings.connect(
            stack.api_url, Password("carol", PASSWORD), options=settings
        ) as client:
            assert client.state == "live"
            async with await client.subscribe("users/me/todos") as subscription:
                start = subscription.cursor
                await asyncio.to_thread(write_todo, stack, client.identity_id, 100)
                async for change in subscription:
                    changes.append((change["seq"], threading.current_thread() is loop_thread))
                    break
                assert subscription.cursor == start + 1
            assert subscription.closed
        assert client.closed
        await asyncio.sleep(0)  # the last on_state call was queued to the loop
        # the awaitable form, closed by hand
        other = await AsyncTidings.connect(
            stack.api_url, Password("carol", PASSWORD), options=options(stack)
        )
        await other.aclose()
        await other.aclose()  # idempotent

    asyncio.run(main())
    assert len(changes) == 1 and changes[0][1]
    assert states[0][0] == "connecting" and states[-1][0] == "signed_out"
    assert all(on_loop for _, on_loop in states)
    assert left_running(before) == []


def test_a_slow_async_consumer_holds_up_its_own_channel_only(stack: LocalStack) -> None:
    async def main() -> tuple[list[int], list[int], int, int, int]:
        settings = options(stack, max_buffered_changes=4)
        async with AsyncTidings.connect(
            stack.api_url, Password("carol", PASSWORD), options=settings
        ) as client:
            me = client.identity_id
            slow = await client.subscribe("users/me/todos", buffer=2)
            fast = await client.subscribe("tenants/acme/board", buffer=2)
            slow_start, fast_start = slow.cursor, fast.cursor
            go = asyncio.Event()
            slow_seqs: list[int] = []
            fast_seqs: list[int] = []

            async def consume_slowly() -> None:
                async for change in slow:
                    await go.wait()
                    slow_seqs.append(change["seq"])
                    if change["seq"] == slow_start + 20:
                        return

            async def consume() -> None:
                async for change in fast:
                    fast_seqs.append(change["seq"])
                    if change["seq"] == fast_start + 10:
                        return

            slow_task = asyncio.create_task(consume_slowly())

            def write() -> None:
                for n in range(20):
                    write_todo(stack, me, 200 + n)
                    if n < 10:
                        write_board(stack, 100 + n)

            await asyncio.to_thread(write)
            await asyncio.wait_for(consume(), 60)  # every board change, the todos stuck
            assert slow_seqs == []
            assert await asyncio.to_thread(
                wait_until, lambda: client.stats["holds"] >= 1, 30
            )  # the todos' pushes are left to the change log
            go.set()
            await asyncio.wait_for(slow_task, 60)
            return slow_seqs, fast_seqs, slow_start, fast_start, client.stats["holds"]

    slow_seqs, fast_seqs, slow_start, fast_start, _holds = asyncio.run(main())
    assert slow_seqs == list(range(slow_start + 1, slow_start + 21))
    assert fast_seqs == list(range(fast_start + 1, fast_start + 11))


def test_async_iteration_raises_continuity_broken_instead_of_hiding_a_gap(
    stack: LocalStack,
) -> None:
    async def main() -> ContinuityBroken:
        async with AsyncTidings.connect(
            stack.api_url, Password("carol", PASSWORD), options=options(stack)
        ) as client:
            with pytest.raises(ContinuityBroken) as raised:
                async for _change in client.changes("public/scores", after=10**6):
                    pass
            return raised.value

    broken = asyncio.run(main())
    assert broken.channel == "public/scores" and broken.lost.reason == "cursor_expired"

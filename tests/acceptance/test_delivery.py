"""Writes reach their owner's subscription once each and in ``seq`` order; another user's
channel is refused at once."""

from __future__ import annotations

import threading
import time

import pytest

from client_sdk import AccessDenied
from tests.acceptance.admin import Todos, Users
from tests.acceptance.target import Target
from tests.support.recorder import Recorder, assert_exactly_once_in_order

pytestmark = pytest.mark.aws

TRANSPORTS = ("mqtt5", "poll")
"""Push, and ``transport="poll"`` (the channels API only): the same guarantees."""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fifty_writes_arrive_once_each_in_seq_order(
    target: Target, users: Users, todos: Todos, transport: str
) -> None:
    user = users.add("fifty")
    recorder = Recorder()
    with target.connect(user.name, user.password, transport=transport) as client:
        identity = client.identity_id
        subscription = client.subscribe(
            "users/me/todos", recorder.on_change, on_continuity_lost=recorder.on_lost
        )
        todos.write(identity, 50)
        assert recorder.wait_for(50, 120)
        time.sleep(1.0)  # any late duplicate would show up now
        assert subscription.cursor == 50
    assert_exactly_once_in_order(recorder, 50)
    assert recorder.lost == []
    assert {change["channel"] for change in recorder.changes} == {f"users/{identity}/todos"}
    assert {change["op"] for change in recorder.changes} == {"insert"}
    assert {change["keys"]["owner"] for change in recorder.changes} == {identity}
    assert sorted(int(change["new"]["n"]) for change in recorder.changes) == list(range(50))
    assert len({change["id"] for change in recorder.changes}) == 50  # 50 stream records


def test_a_write_reaches_its_owner_and_not_others(
    target: Target, users: Users, todos: Todos
) -> None:
    ann_user = users.add("ann", tenants={"acme"})
    ben_user = users.add("ben", tenants={"globex"})
    received: list[dict] = []
    arrived = threading.Event()
    with (
        target.connect(ann_user.name, ann_user.password) as ann,
        target.connect(ben_user.name, ben_user.password) as ben,
    ):
        assert ann.state == "live"
        ann.subscribe("users/me/todos", lambda c: (received.append(dict(c)), arrived.set()))
        with pytest.raises(AccessDenied):
            ben.subscribe(f"users/{ann.identity_id}/todos", lambda c: None)
        todos.put({"owner": {"S": ann.identity_id}, "id": {"S": "x1"}, "n": {"N": "0.1"}})
        assert arrived.wait(30)
        assert received[0]["seq"] == 1 and received[0]["new"]["n"] == 0.1
        assert received[0]["op"] == "insert"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_another_users_channel_is_refused_at_once(
    target: Target, users: Users, transport: str
) -> None:
    alice_user, bob_user = users.add("alice", tenants={"acme"}), users.add("bob", {"acme"})
    with (
        target.connect(alice_user.name, alice_user.password, transport=transport) as alice,
        target.connect(bob_user.name, bob_user.password, transport=transport) as bob,
    ):
        started = time.time()
        with pytest.raises(AccessDenied):
            bob.subscribe(f"users/{alice.identity_id}/todos", lambda c: None)
        assert time.time() - started < 10  # refused, not retried forever
        assert bob.subscribe("users/me/todos", lambda c: None).cursor == 0

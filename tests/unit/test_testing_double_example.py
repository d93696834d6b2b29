"""An application's own tests, written against the in-memory Tidings (docs/CLIENT.md shows
this file as it is)."""

from __future__ import annotations

import pytest

from client_sdk import AccessDenied, Change, ContinuityLost, Tidings
from client_sdk.testing import InMemoryTidings


class TodoList:
    """The application: a todo list that follows the user's channel."""

    def __init__(self, tidings: Tidings, load_all) -> None:
        self.load_all = load_all  # reads every todo from the application's own API
        self.todos = load_all()
        self.reloads = 0
        self.subscription = tidings.subscribe(
            "users/me/todos", self.on_change, on_continuity_lost=self.on_continuity_lost
        )

    def on_change(self, change: Change) -> None:
        key = change["keys"]["id"]
        if change["op"] == "remove":
            self.todos.pop(key, None)
        else:
            self.todos[key] = change["new"]["title"]

    def on_continuity_lost(self, channel: str, lost: ContinuityLost) -> None:
        self.todos = self.load_all()  # changes were lost: start again from the source
        self.reloads += 1


def test_changes_update_the_list() -> None:
    with InMemoryTidings() as tidings:
        todos = TodoList(tidings, load_all=dict)
        tidings.publish("users/me/todos", {"id": "t1", "title": "milk"}, keys={"id": "t1"})
        tidings.publish("users/me/todos", {"id": "t2", "title": "eggs"}, keys={"id": "t2"})
        tidings.publish("users/me/todos", None, op="remove", keys={"id": "t1"})
        assert todos.todos == {"t2": "eggs"}


def test_changes_made_while_offline_arrive_after_the_reconnect() -> None:
    with InMemoryTidings() as tidings:
        todos = TodoList(tidings, load_all=dict)
        tidings.cut_connection()
        assert tidings.state == "offline"
        tidings.publish("users/me/todos", {"title": "milk"}, keys={"id": "t1"})
        assert todos.todos == {}  # not yet
        tidings.restore_connection()
        assert tidings.state == "live"
        assert todos.todos == {"t1": "milk"}


def test_a_lost_continuity_reloads_the_list() -> None:
    with InMemoryTidings() as tidings:
        todos = TodoList(tidings, load_all=lambda: {"t9": "from the source"})
        tidings.expire_cursor("users/me/todos")
        assert todos.reloads == 1 and todos.todos == {"t9": "from the source"}
        tidings.publish("users/me/todos", {"title": "milk"}, keys={"id": "t1"})
        assert todos.todos == {"t9": "from the source", "t1": "milk"}


def test_a_refused_channel_raises_access_denied() -> None:
    with InMemoryTidings() as tidings:
        tidings.refuse("users/me/todos")
        with pytest.raises(AccessDenied):
            TodoList(tidings, load_all=dict)

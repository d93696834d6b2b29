"""Catching up: what was written while no client was connected arrives after reconnecting
with the saved cursor, with no gap and no duplicate, and the HTTP API answers the same
changes to a SigV4-signed request."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.credentials import Credentials

from tests.acceptance.admin import Todos, Users
from tests.acceptance.http_api import channel_path, identity_credentials, login, signed_get
from tests.acceptance.target import Target
from tests.support.recorder import Recorder, assert_exactly_once_in_order

pytestmark = pytest.mark.aws

TRANSPORTS = ("mqtt5", "poll")
"""Push, and ``transport="poll"`` (the channels API only): the same guarantees."""


def wait_for_head(
    target: Target, channel: str, credentials: Credentials, head: int, timeout: float
) -> dict[str, Any]:
    """``GET /v1/channels/<channel>`` until its head is ``head``; the last answer."""
    deadline = time.time() + timeout
    while True:
        answer = signed_get(target, channel_path(channel), credentials)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["head"] >= head or time.time() > deadline:
            return dict(body)
        time.sleep(0.5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_changes_written_while_closed_arrive_after_reconnecting_with_the_cursor(
    target: Target, users: Users, todos: Todos, transport: str
) -> None:
    user = users.add("resume")
    before = Recorder()
    with target.connect(user.name, user.password, transport=transport) as client:
        identity = client.identity_id
        subscription = client.subscribe(
            "users/me/todos", before.on_change, on_continuity_lost=before.on_lost
        )
        todos.write(identity, 10)
        assert before.wait_for(10, 60)
        time.sleep(1.0)
        cursor = subscription.cursor
    assert cursor == 10
    assert_exactly_once_in_order(before, 10)

    todos.write(identity, 15, start=10)  # no client is connected now
    answer = login(target, user.name, user.password)
    assert answer.status_code == 200, answer.text
    channel = f"users/{identity}/todos"
    head = wait_for_head(target, channel, identity_credentials(target, answer.json()), 25, 60)
    assert head["head"] == 25  # all of them are in the change log before the client is back

    after = Recorder()
    with target.connect(user.name, user.password, transport=transport) as client:
        assert client.identity_id == identity
        client.subscribe(
            "users/me/todos", after.on_change, after=cursor, on_continuity_lost=after.on_lost
        )
        assert after.wait_for(25, 60)
        time.sleep(1.0)  # any late duplicate would show up now
    assert_exactly_once_in_order(after, 15, first=11)
    assert before.lost == [] and after.lost == []
    written = sorted(int(change["new"]["n"]) for change in before.changes + after.changes)
    assert written == list(range(25))


def test_the_http_api_answers_the_changes_the_client_received(
    target: Target, users: Users, todos: Todos
) -> None:
    user = users.add("http")
    recorder = Recorder()
    with target.connect(user.name, user.password) as client:
        identity = client.identity_id
        client.subscribe("users/me/todos", recorder.on_change)
        todos.write(identity, 12)
        assert recorder.wait_for(12, 60)
    assert_exactly_once_in_order(recorder, 12)
    channel = f"users/{identity}/todos"
    answer = login(target, user.name, user.password)
    assert answer.status_code == 200, answer.text
    credentials = identity_credentials(target, answer.json())
    epoch = recorder.changes[0]["epoch"]

    head = signed_get(target, channel_path(channel), credentials)
    assert head.status_code == 200, head.text
    assert head.json() == {"channel": channel, "head": 12, "epoch": epoch}

    everything = signed_get(target, f"{channel_path(channel)}/changes?after=0", credentials)
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert body["changes"] == recorder.changes  # the very envelopes that were pushed
    assert (body["channel"], body["epoch"], body["head"]) == (channel, epoch, 12)
    assert (body["next"], body["more"]) == (12, False)

    rest = signed_get(target, f"{channel_path(channel)}/changes?after=7", credentials)
    assert rest.status_code == 200, rest.text
    assert rest.json()["changes"] == recorder.changes[7:]

    unsigned = signed_get(target, f"{channel_path(channel)}/changes?after=0", None)
    assert unsigned.status_code == 403
    someone = users.add("http-other")
    other = login(target, someone.name, someone.password)
    assert other.status_code == 200, other.text
    refused = signed_get(
        target,
        f"{channel_path(channel)}/changes?after=0",
        identity_credentials(target, other.json()),
    )
    assert refused.status_code == 403, refused.text

"""Continuity lost: a cursor older than the retained change log gets 410 ``cursor_expired``
from the API and ``on_continuity_lost`` from the client, never a silent gap.

The retention is reached as DynamoDB's TTL would reach it: the operator deletes the oldest
entries of the stack's change log (the ``ChangeLogTableName`` output), which works on the
local stack and on AWS alike."""

from __future__ import annotations

import time

import pytest

from tests.acceptance.admin import Todos, Users
from tests.acceptance.http_api import channel_path, identity_credentials, login, signed_get
from tests.acceptance.target import Target
from tests.support.recorder import Recorder

pytestmark = pytest.mark.aws

TRANSPORTS = ("mqtt5", "poll")
"""Push, and ``transport="poll"`` (the channels API only): the same guarantees."""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cursor_older_than_retention_reports_continuity_lost(
    target: Target, users: Users, todos: Todos, transport: str
) -> None:
    user = users.add("lost", tenants={"acme"})
    recorder = Recorder()
    with target.connect(user.name, user.password, transport=transport) as client:
        channel = f"users/{client.identity_id}/todos"
        todos.write(client.identity_id, 5)
        dynamodb = target.client("dynamodb")
        log = target.tables["ChangeLogTable"]
        deadline = time.time() + 30
        while time.time() < deadline:
            count = dynamodb.query(
                TableName=log,
                KeyConditionExpression="channel = :c",
                ExpressionAttributeValues={":c": {"S": channel}},
            )["Count"]
            if count == 5:
                break
            time.sleep(0.2)
        for seq in (1, 2, 3):  # DynamoDB's TTL removed the oldest entries
            dynamodb.delete_item(
                TableName=log, Key={"channel": {"S": channel}, "seq": {"N": str(seq)}}
            )
        answer = login(target, user.name, user.password)
        assert answer.status_code == 200, answer.text
        expired = signed_get(
            target,
            f"{channel_path(channel)}/changes?after=0",
            identity_credentials(target, answer.json()),
        )
        assert expired.status_code == 410, expired.text
        body = expired.json()
        assert (body["error"], body["head"]) == ("cursor_expired", 5) and body["message"]
        client.subscribe(
            "users/me/todos", recorder.on_change, after=0, on_continuity_lost=recorder.on_lost
        )
        deadline = time.time() + 30
        while not recorder.lost and time.time() < deadline:
            time.sleep(0.1)
        assert recorder.lost and recorder.lost[0][0] == channel
        assert recorder.lost[0][1].head == 5 and recorder.lost[0][1].reason == "cursor_expired"
        assert recorder.lost[0][1].epoch == body["epoch"]
        todos.write(client.identity_id, 1, start=5)
        assert recorder.wait_for(6, 30)
    assert recorder.seqs == [6]

"""The web client runs unchanged in Node 20 (its global ``fetch``, ``crypto.subtle`` and, with
``--experimental-websocket``, ``WebSocket``; the React Native path): signed in, subscribed,
every change once and in order after a cursor, a 410 for a cursor the log does not have and a
403 for another tenant's channel. Node trusts the local CA through ``NODE_EXTRA_CA_CERTS``,
with TLS checks on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user
from tests.support.web_page import write_todos

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "client_sdk" / "web" / "test" / "node-subscriber.mjs"


def test_the_web_client_in_node_gets_every_change_once_in_order(shared_stack: LocalStack) -> None:
    add_user(shared_stack, "node-user", "node-pass-2026", {"acme"})
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": shared_stack.ca_file}
    node = subprocess.Popen(
        [
            "node",
            "--experimental-websocket",
            "--no-warnings",
            str(SCRIPT),
            shared_stack.api_url,
            shared_stack.identity_url,
            "node-user",
            "node-pass-2026",
            "users/me/todos",
            "20",
            "tenants/globex/board",  # not a tenant of node-user's
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert node.stdout is not None
        first = json.loads(node.stdout.readline() or "{}")
        assert first.get("state") == "live", node.stderr.read() if node.stderr else ""
        write_todos(shared_stack, first["identityId"], 20)
        out, err = node.communicate(timeout=120)
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seq"] for line in lines if "seq" in line] == list(range(1, 21)), err
    # a cursor the log does not have: the API's 410, as ContinuityBroken (cursor_expired)
    assert {"error": "ContinuityBroken", "reason": "cursor_expired"} in lines, out
    # another tenant's channel: the API's 403, as AccessDenied
    assert {"error": "AccessDenied"} in lines, out
    assert lines[-1] == {"state": "signed_out"}
    assert node.returncode == 0, err

"""The client's credential lifecycle over three minutes against the whole local stack: 60 s
credentials and OpenID tokens renewed before they run out, forced reconnects signing with fresh
ones, and every change once and in order.

Its own file (and its own stack) so that the test runner can start it early beside the rest of
the suite: it takes three minutes by design.
"""

from __future__ import annotations

import time

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.e2e.test_client_guarantees import (
    PASSWORD,
    Recorder,
    assert_exactly_once_in_order,
    connect,
    write_todos,
)
from tests.support.local_stack import add_user, stack_config


@pytest.mark.timeout(420)
def test_short_credentials_and_tokens_are_renewed_for_three_minutes() -> None:
    config = stack_config(credential_lifetime_s=60.0, parameters={"TokenDurationSeconds": "60"})
    with LocalStack(config) as running:
        add_user(running, "long", PASSWORD, set())
        recorder = Recorder()
        with connect(running, "long", refresh_margin_s=15.0) as client:
            client.subscribe("users/me/todos", recorder.on_change)
            started = time.time()
            written = 0
            while time.time() - started < 180:
                write_todos(running, client.identity_id, 1, start=written)
                written += 1
                if written % 40 == 0:  # a reconnect must sign with fresh credentials
                    running.run_on_gateway(running.gateway.drop_clients, client.identity_id)
                time.sleep(1.0)
            assert recorder.wait_for(written, 60)
            # Forced reconnects at ~40, 80, 120 and 160 s each sign with credentials that have
            # at least the 15 s margin left, i.e. fetched in the 45 s before: the ones used at
            # 0, ~80 and ~160 s cannot be the same, so at least 3 fetches whatever the timing
            # (more when the gateway's expiry of the 60 s credentials forces extra reconnects).
            assert client.credentials.refreshes >= 3
            assert client.credentials.logins >= 3  # the 60 s OpenID token was replaced
        assert_exactly_once_in_order(recorder, written)

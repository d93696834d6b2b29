"""The client's credential lifecycle over 90 seconds against the whole local stack: 30 s
credentials and 60 s OpenID tokens (the template's shortest) renewed before they run out,
forced reconnects signing with fresh ones, and every change once and in order.

Its own file (and its own stack) so that the test runner can run it beside the rest of the
suite: it takes 90 seconds by design.
"""

from __future__ import annotations

import time

import pytest

from infra.local.stack.local_stack import LocalStack
from tests.e2e.test_client_guarantees import PASSWORD, connect, write_todos
from tests.support.local_stack import add_user, stack_config
from tests.support.recorder import Recorder, assert_exactly_once_in_order


@pytest.mark.timeout(300)
def test_short_credentials_and_tokens_are_renewed_for_90_seconds() -> None:
    config = stack_config(credential_lifetime_s=30.0, parameters={"TokenDurationSeconds": "60"})
    with LocalStack(config) as running:
        add_user(running, "long", PASSWORD, set())
        recorder = Recorder()
        with connect(running, "long", refresh_margin_s=25.0) as client:
            client.subscribe("users/me/todos", recorder.on_change)
            written = 0
            next_write = time.monotonic()
            while written < 85:  # one write a second at most: 85 s at least
                time.sleep(max(0.0, next_write - time.monotonic()))
                next_write += 1.0
                write_todos(running, client.identity_id, 1, start=written)
                written += 1
                if written % 20 == 0:  # a reconnect must sign with fresh credentials
                    running.run_on_gateway(running.gateway.drop_clients, client.identity_id)
            assert recorder.wait_for(written, 60)
            # Forced reconnects after writes 20, 40, 60 and 80 (at 20, 40, 60, 80 s or later)
            # each sign with credentials that have at least the 25 s margin left of their 30 s,
            # i.e. fetched in the 5 s before: each fetches anew, so 1 + 4 fetches at least.
            # A fetch needs a token with 25 s of its 60 s left: the token taken at 0 s is
            # replaced at the reconnect after write 40 (40 s or later), and that one at the
            # reconnect after write 80 (40 s or more after it), however slow the writes are.
            assert client.stats["credential_refreshes"] >= 5
            assert client.stats["logins"] >= 3  # the 60 s OpenID token was replaced
        assert_exactly_once_in_order(recorder, written)

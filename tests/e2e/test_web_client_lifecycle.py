"""The web client's lifecycle in real Chromium against the local stack: short credentials and
OpenID tokens renewed for three minutes, the push connection renewed before its age limit,
``changes()`` as an async iterator, signing out when signing in again is refused, and bad
input at the API's edge.

Two stacks: the session's shared one, and one of this module's own whose credentials and
tokens live 60 s (``TokenDurationSeconds`` cannot go lower: the template's ``MinValue``). A
Chromium per stack, since each trusts one stack's server key (tests/support/browser.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext

from auth.errors import GENERIC_CREDENTIALS_MESSAGE
from auth.passwords import hash_password
from auth.store import UsersStore
from backend.change_store import ChangeStore
from infra.local.stack.local_stack import LocalStack
from tests.support.browser import chromium, page_errors
from tests.support.local_stack import add_user, stack_config
from tests.support.web_page import WebClient, wait_until, write_todos

PASSWORD = "web-life-2026"
USERS = ("wl-renew", "wl-iter", "wl-bad", "wl-wrong")
SHORT_USERS = ("wl-long", "wl-gone", "wl-newpw")
LIFETIME_S = 60.0  # credentials and OpenID tokens, on the short stack


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    for user in USERS:
        add_user(shared_stack, user, PASSWORD, {"acme"})
    return shared_stack


@pytest.fixture(scope="module")
def short_stack() -> Iterator[LocalStack]:
    config = stack_config(
        credential_lifetime_s=LIFETIME_S,
        parameters={"TokenDurationSeconds": str(int(LIFETIME_S))},
    )
    with LocalStack(config) as running:
        for user in SHORT_USERS:
            add_user(running, user, PASSWORD, set())
        yield running


@pytest.fixture(scope="module")
def browser(stack: LocalStack) -> Iterator[Browser]:
    with chromium(stack.ca_file) as running:
        yield running


@pytest.fixture(scope="module")
def short_browser(short_stack: LocalStack) -> Iterator[Browser]:
    with chromium(short_stack.ca_file) as running:
        yield running


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture
def short_context(short_browser: Browser) -> Iterator[BrowserContext]:
    context = short_browser.new_context()
    yield context
    context.close()


def open_client(
    context: BrowserContext, stack: LocalStack, user: str, **options: object
) -> WebClient:
    client = WebClient(context.new_page(), stack).open()
    client.connect(user, PASSWORD, **options)
    return client


def connections_of(stack: LocalStack, identity_id: str) -> list[str]:
    """The MQTT client ids the broker has for ``identity_id`` now."""
    return list(
        stack.run_on_gateway(
            lambda: [
                c.client_id
                for c in stack.gateway.broker.connections
                if c.client_id.startswith(identity_id)
            ]
        )
    )


# ---------------------------------------------------------------------- credentials


@pytest.mark.timeout(360)
def test_60_second_credentials_and_tokens_are_held_for_3_minutes_without_a_gap(
    short_context: BrowserContext, short_stack: LocalStack
) -> None:
    client = open_client(short_context, short_stack, "wl-long")
    errors = page_errors(client.page)
    assert client.subscribe("users/me/todos")["error"] is None
    channel = f"users/{client.identity_id}/todos"
    # The gateway keeps an open connection past its credentials' expiry (as AWS IoT does), so
    # the cuts are what make the page sign again: after writes 55, 110 and 165 (55 s or more
    # apart) the credentials in hand are older than their 45 s of use (60 s less the 15 s
    # margin, a quarter of their lifetime), and so is the token they came from: each cut
    # renews both. Each reconnect then signs the URL and the catch-up read with them.
    started = time.monotonic()
    written = 0
    next_write = started
    while written < 180:  # one write a second at most: 180 s at least
        time.sleep(max(0.0, next_write - time.monotonic()))
        next_write += 1.0
        write_todos(short_stack, client.identity_id, 1, start=written)
        written += 1
        if written % 55 == 0:
            short_stack.run_on_gateway(short_stack.gateway.drop_clients, client.identity_id)
    held_s = time.monotonic() - started
    client.wait_for_count(channel, written, 60)
    time.sleep(1.0)  # a duplicate would show up now
    assert client.seqs(channel) == list(range(1, written + 1))
    assert client.lost() == []
    assert held_s >= 179
    stats = client.stats()
    assert stats["refreshes"] >= 3, stats
    assert stats["logins"] >= 2, stats  # the 60 s OpenID token was replaced
    assert client.wait_for_state(("live",), 30) == "live"
    assert "signed_out" not in client.states()
    assert errors == []


def test_a_removed_user_and_a_changed_password_sign_out_when_signing_in_again_is_refused(
    short_context: BrowserContext, short_stack: LocalStack
) -> None:
    gone = open_client(short_context, short_stack, "wl-gone")
    moved = open_client(short_context, short_stack, "wl-newpw")
    connected = time.monotonic()
    clients = (gone, moved)
    errors = {client.identity_id: page_errors(client.page) for client in clients}
    for client in clients:
        assert client.subscribe("users/me/todos")["error"] is None
        write_todos(short_stack, client.identity_id, 2)
        assert client.wait_for_count(f"users/{client.identity_id}/todos", 2, 30) == [1, 2]
    users = UsersStore(short_stack.client("dynamodb"), short_stack.tables["UsersTable"])
    users.remove_user("wl-gone")
    users.set_password_hash("wl-newpw", hash_password("another-pass-2026"))
    # the token in hand is good for 45 s of its 60 (less the margin): until then the pages
    # need no sign-in; after, the next reconnect must sign in again, and is refused
    time.sleep(max(0.0, connected + 0.8 * LIFETIME_S - time.monotonic()))
    for client in clients:
        assert client.state() == "live"  # nothing noticed yet: the connection is still up
        short_stack.run_on_gateway(short_stack.gateway.drop_clients, client.identity_id)
    for client in clients:
        assert client.wait_for_state(("signed_out",), 30) == "signed_out"
    logins = [client.stats()["logins"] for client in clients]
    time.sleep(3.0)
    for client, before in zip(clients, logins, strict=True):
        assert client.stats()["logins"] == before  # no more sign-in attempts
        assert client.state() == "signed_out"
        assert connections_of(short_stack, client.identity_id) == []
        states = client.states()
        assert states[-1] == "signed_out" and states.count("signed_out") == 1, states
        # no uncaught error, signing out is a state, not a crash; the browser's own line
        # for the one refused sign-in is all there is (tried once, not in a loop)
        assert errors[client.identity_id] == [
            "console: Failed to load resource: the server responded with a status of 401 "
            "(Unauthorized)"
        ]
        client.close()  # closing a signed-out client is fine
        assert client.state() == "signed_out"


# ---------------------------------------------------------------------- sign-in refusals


def test_a_wrong_password_rejects_with_sign_in_failed(
    context: BrowserContext, stack: LocalStack
) -> None:
    page = WebClient(context.new_page(), stack).open()
    answer = page.connect_error("wl-wrong", "not-the-password")
    assert answer["error"] == {"name": "SignInFailed", "message": GENERIC_CREDENTIALS_MESSAGE}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_api_rejects_within_connect_timeout(
    context: BrowserContext, stack: LocalStack
) -> None:
    page = WebClient(context.new_page(), stack).open()
    api_url = f"https://127.0.0.1:{_closed_port()}"
    answer = page.connect_error("wl-wrong", PASSWORD, api_url, connectTimeoutMs=3000)
    assert answer["error"]["name"] in ("ServiceUnavailable", "ConnectTimeout"), answer
    assert api_url in answer["error"]["message"]  # says which address did not answer
    assert answer["elapsedMs"] < 3000


def test_an_api_that_never_answers_rejects_within_connect_timeout(
    context: BrowserContext, stack: LocalStack
) -> None:
    # a port that accepts connections (the kernel's backlog) and never says a word
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        api_url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        page = WebClient(context.new_page(), stack).open()
        answer = page.connect_error("wl-wrong", PASSWORD, api_url, connectTimeoutMs=3000)
    assert answer["error"]["name"] in ("ServiceUnavailable", "ConnectTimeout"), answer
    assert answer["elapsedMs"] < 3000 + 1000, answer


# ---------------------------------------------------------------------- connection renewal


def test_the_connection_is_renewed_before_its_age_limit_without_a_gap(
    context: BrowserContext, stack: LocalStack
) -> None:
    client = open_client(context, stack, "wl-renew", maxConnectionAgeMs=3000)
    assert client.subscribe("users/me/todos")["error"] is None
    channel = f"users/{client.identity_id}/todos"
    writer = threading.Thread(
        target=write_todos, args=(stack, client.identity_id, 120), kwargs={"pause_s": 0.1}
    )
    started = time.monotonic()
    writer.start()
    while writer.is_alive():  # never more than the live and the renewing connection
        assert len(connections_of(stack, client.identity_id)) <= 2
        time.sleep(0.2)
    writer.join()
    assert time.monotonic() - started >= 12
    client.wait_for_count(channel, 120, 60)
    time.sleep(1.0)
    assert client.seqs(channel) == list(range(1, 121))
    assert client.lost() == []
    stats = client.stats()
    assert stats["renewals"] >= 2, stats
    assert stats["reconnects"] == 0, stats  # a renewal is not a reconnect
    states = client.states()
    assert "offline" not in states and "polling" not in states, states
    assert client.wait_for_state(("live",), 10) == "live"
    assert len(connections_of(stack, client.identity_id)) == 1


# ---------------------------------------------------------------------- changes() iterator

ITERATE = """({ channel, after, stopAt }) => {
  const run = { seqs: [], done: false, error: null };
  (window.runs ??= []).push(run);
  const options = after === null ? {} : { after };
  (async () => {
    try {
      for await (const change of window.client.changes(channel, options)) {
        run.seqs.push(change.seq);
        if (run.seqs.length >= stopAt) break;
      }
    } catch (error) {
      run.error = { name: error.name, message: error.message };
    }
    run.done = true;
  })();
  return window.runs.length - 1;
}"""


def iterate(client: WebClient, channel: str, after: int | None, stop_at: int) -> int:
    """Start a ``for await`` loop in the page that breaks after ``stop_at`` changes."""
    return int(
        client.page.evaluate(ITERATE, {"channel": channel, "after": after, "stopAt": stop_at})
    )


def run_of(client: WebClient, run: int) -> dict[str, Any]:
    return dict(client.page.evaluate("(i) => window.runs[i]", run))


def wait_done(client: WebClient, run: int, timeout_s: float) -> dict[str, Any]:
    return wait_until(lambda: run_of(client, run), lambda r: r["done"], timeout_s)


def test_changes_as_an_async_iterator(context: BrowserContext, stack: LocalStack) -> None:
    client = open_client(context, stack, "wl-iter")
    errors = page_errors(client.page)
    channel = f"users/{client.identity_id}/todos"
    write_todos(stack, client.identity_id, 5)
    # the five are in the change log before reading after seq 2 (a cursor beyond the head
    # is a 410, rightly: the publisher may not have logged them all yet)
    store = ChangeStore(
        stack.client("dynamodb"), stack.tables["SequenceTable"], stack.tables["ChangeLogTable"], 0
    )
    assert wait_until(lambda: store.head(channel).seq, lambda seq: seq >= 5, 30) >= 5

    # {after: 2}: the changes after seq 2, the written ones first, then the pushed ones
    first = iterate(client, "users/me/todos", 2, 8)
    write_todos(stack, client.identity_id, 10, start=5, pause_s=0.05)
    done = wait_done(client, first, 30)
    assert done == {"seqs": list(range(3, 11)), "done": True, "error": None}

    # the break closed the subscription: subscribing to the channel again is allowed
    assert client.subscribe("users/me/todos", after=15)["error"] is None
    write_todos(stack, client.identity_id, 1, start=15)
    assert client.wait_for_count(channel, 1, 30) == [16]
    client.page.evaluate("(c) => window.subs[c].close()", "users/me/todos")
    assert run_of(client, first)["seqs"] == list(range(3, 11))  # nothing after the break

    # no `after`: from the head at the first next(), in order, through a cut
    head = 16
    writer = threading.Thread(
        target=write_todos,
        args=(stack, client.identity_id, 60),
        kwargs={"start": head, "pause_s": 0.05},
    )
    second = iterate(client, "users/me/todos", None, 20)
    writer.start()
    time.sleep(0.5)
    stack.run_on_gateway(stack.gateway.drop_clients, client.identity_id)
    done = wait_done(client, second, 30)
    writer.join()
    assert done["done"] and done["error"] is None
    seqs = done["seqs"]
    assert len(seqs) == 20 and seqs[0] > head
    assert seqs == list(range(seqs[0], seqs[0] + 20))

    # a loop still waiting ends when the client closes
    third = iterate(client, "users/me/todos", None, 1000)
    time.sleep(0.5)
    client.close()
    assert wait_done(client, third, 10) == {"seqs": [], "done": True, "error": None}
    assert errors == []


# ---------------------------------------------------------------------- bad input

BAD_CHANNELS = {
    "empty": "",
    "dotdot-own": "users/me/../todos",
    "dotdot-other-tenant": "tenants/acme/../globex/board",
    "dotdot-own-tenant": "tenants/globex/../acme/board",
    "unknown-prefix": "nope/x",
}


@pytest.mark.parametrize("mode", ["push", "poll"])
@pytest.mark.parametrize("channel", BAD_CHANNELS.values(), ids=BAD_CHANNELS.keys())
def test_a_bad_channel_is_refused_with_a_clear_error_and_the_client_stays_up(
    context: BrowserContext, stack: LocalStack, channel: str, mode: str
) -> None:
    # poll: no WebSocket gets through, so the API alone judges the channel (a browser
    # resolves `..` in a URL's path: the client must not let it read another channel)
    if mode == "poll":
        stack.run_on_gateway(stack.gateway.block_mqtt)
    try:
        client = open_client(context, stack, "wl-bad", fallbackAfterMs=1000, pollWaitS=2)
        up = "live" if mode == "push" else "polling"
        assert client.wait_for_state((up,), 10) == up
        error = client.subscribe(channel)["error"]
        assert error is not None, f"{channel!r} was accepted"
        assert error["name"] in ("BadRequest", "AccessDenied"), error
        message = error["message"]
        # the API's (or the client's own) words about this channel, not a transport's
        assert "SUBACK" not in message and "HTTP" not in message, error
        asked = channel.replace("users/me/", f"users/{client.identity_id}/")
        assert (asked in message) if asked else ("channel" in message), error
        assert client.state() == up
        # the client still works: a good channel subscribes and gets its changes
        assert client.subscribe("users/me/todos")["error"] is None
        write_todos(stack, client.identity_id, 1, start=time.time_ns())  # a new value
        mine = f"users/{client.identity_id}/todos"
        assert len(client.wait_for_count(mine, 1, 30)) == 1
        assert client.state() == up
        client.close()
    finally:
        stack.run_on_gateway(stack.gateway.unblock_mqtt)

"""The web client (client_sdk/web) in real Chromium against the local stack.

Each test opens a page on the stack's web site, loads ``/client/index.js`` there and signs in
with ``Tidings.connect`` (tests/support/web_page.py); the stack's own controls cut the
connections, restart the gateway and block WebSockets, and boto3 writes the changes. The page
trusts the local CA through Chromium's SPKI list (tests/support/browser.py), with TLS checks on.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext

from infra.local.stack.local_stack import LocalStack
from tests.support.browser import chromium, page_errors
from tests.support.local_stack import add_user
from tests.support.web_page import WebClient, wait_until, write_todos

PASSWORD = "web-pass-2026"
USERS = ("w-once", "w-bob", "w-cut", "w-poll", "w-hidden", "w-reload", "w-write", "w-demo")


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    for user in USERS:
        add_user(shared_stack, user, PASSWORD, {"acme"})
    return shared_stack


@pytest.fixture(scope="module")
def browser(stack: LocalStack) -> Iterator[Browser]:
    with chromium(stack.ca_file) as running:
        yield running


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    yield context
    context.close()


def open_client(
    context: BrowserContext, stack: LocalStack, user: str, **options: object
) -> WebClient:
    client = WebClient(context.new_page(), stack).open()
    client.connect(user, PASSWORD, **options)
    return client


def test_a_put_item_arrives_once_in_the_page(context: BrowserContext, stack: LocalStack) -> None:
    client = open_client(context, stack, "w-once")
    errors = page_errors(client.page)
    assert client.subscribe("users/me/todos")["error"] is None
    channel = f"users/{client.identity_id}/todos"
    write_todos(stack, client.identity_id, 3)
    assert client.wait_for_count(channel, 3, 30) == [1, 2, 3]
    time.sleep(1.0)  # a duplicate would show up now
    assert client.seqs(channel) == [1, 2, 3]
    assert client.state() == "live"
    assert client.states()[-1] == "live"
    client.close()
    assert client.state() == "signed_out"
    assert errors == []


def test_bob_is_refused_alices_channel_with_access_denied(
    context: BrowserContext, stack: LocalStack
) -> None:
    alice = open_client(context, stack, "w-once")
    bob = open_client(context, stack, "w-bob")
    assert bob.state() == "live"
    answer = bob.subscribe(f"users/{alice.identity_id}/todos")
    assert answer["error"]["name"] == "AccessDenied"
    assert "SUBACK" in answer["error"]["message"]  # AWS IoT's refusal, surfaced as such
    refused = bob.subscribe("tenants/globex/board")
    assert refused["error"]["name"] == "AccessDenied"
    assert bob.subscribe("tenants/acme/board")["error"] is None  # its own tenant is fine
    assert bob.state() == "live"


def test_500_changes_once_and_in_order_through_5_cuts_and_a_gateway_restart(
    context: BrowserContext, stack: LocalStack
) -> None:
    client = open_client(context, stack, "w-cut")
    client.subscribe("users/me/todos")
    channel = f"users/{client.identity_id}/todos"
    writer = threading.Thread(
        target=write_todos, args=(stack, client.identity_id, 500), kwargs={"pause_s": 0.01}
    )
    writer.start()
    rng = random.Random(9)
    cuts = 0
    while cuts < 5:
        time.sleep(rng.uniform(0.3, 1.2))
        cuts += stack.run_on_gateway(stack.gateway.drop_clients, client.identity_id) > 0
    assert client.wait_for_state(("live", "catching_up"), 30) in ("live", "catching_up")
    stack.restart_gateway(down_s=1.0)
    writer.join()
    seqs = client.wait_for_count(channel, 500, 120)
    time.sleep(1.0)
    assert client.seqs(channel) == list(range(1, 501))
    assert client.lost() == []
    assert client.stats()["reconnects"] >= 6
    assert client.wait_for_state(("live",), 30) == "live"
    assert seqs[:500] == list(range(1, 501))


def test_websocket_blocked_falls_back_to_polling_and_returns_to_push(
    context: BrowserContext, stack: LocalStack
) -> None:
    client = open_client(context, stack, "w-poll", fallbackAfterMs=2000, pollWaitS=2)
    client.subscribe("users/me/todos")
    channel = f"users/{client.identity_id}/todos"
    write_todos(stack, client.identity_id, 20)
    assert client.wait_for_count(channel, 20, 30) == list(range(1, 21))
    stack.run_on_gateway(stack.gateway.block_mqtt)
    try:
        assert client.wait_for_state(("polling",), 30) == "polling"
        write_todos(stack, client.identity_id, 50, start=20)
        assert client.wait_for_count(channel, 70, 60) == list(range(1, 71))
        assert client.state() == "polling"
        assert client.stats()["polls"] > 0
    finally:
        stack.run_on_gateway(stack.gateway.unblock_mqtt)
    assert client.wait_for_state(("live", "catching_up"), 60) in ("live", "catching_up")
    write_todos(stack, client.identity_id, 30, start=70)
    client.wait_for_count(channel, 100, 60)
    time.sleep(1.0)
    assert client.seqs(channel) == list(range(1, 101))
    states = client.states()
    assert "polling" in states
    assert states.index("polling") < len(states) - 1 - states[::-1].index("live")
    assert client.lost() == []


HIDE = """(hidden) => {
  Object.defineProperty(document, "visibilityState", {
    configurable: true, get: () => (hidden ? "hidden" : "visible"),
  });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_hidden_tab_whose_socket_died_catches_up_as_soon_as_it_is_shown(
    context: BrowserContext, stack: LocalStack
) -> None:
    # backoff and fallback so long that only the page becoming visible can bring it back
    # within the test's wait: a reconnect by timer comes after 30 s at the earliest
    client = open_client(
        context,
        stack,
        "w-hidden",
        minBackoffMs=60_000,
        maxBackoffMs=60_000,
        fallbackAfterMs=600_000,
        fallbackAfterFailures=1000,
    )
    client.subscribe("users/me/todos")
    channel = f"users/{client.identity_id}/todos"
    write_todos(stack, client.identity_id, 5)
    assert client.wait_for_count(channel, 5, 30) == list(range(1, 6))
    client.page.evaluate(HIDE, True)
    assert stack.run_on_gateway(stack.gateway.drop_clients, client.identity_id) == 1
    assert client.wait_for_state(("offline",), 10) == "offline"
    write_todos(stack, client.identity_id, 10, start=5)
    time.sleep(2.0)
    assert client.seqs(channel) == list(range(1, 6))  # nothing while the socket is down
    shown = time.monotonic()
    client.page.evaluate(HIDE, False)
    assert client.wait_for_count(channel, 15, 20) == list(range(1, 16))
    assert time.monotonic() - shown < 20
    assert client.wait_for_state(("live",), 10) == "live"


def test_a_reloaded_page_resumes_after_its_stored_cursor(
    context: BrowserContext, stack: LocalStack
) -> None:
    client = open_client(context, stack, "w-reload", storage="localStorage")
    client.subscribe("users/me/todos")
    channel = f"users/{client.identity_id}/todos"
    write_todos(stack, client.identity_id, 5)
    assert client.wait_for_count(channel, 5, 30) == list(range(1, 6))
    client.page.reload()  # pagehide keeps the cursor
    stored = client.page.evaluate(
        f"() => localStorage.getItem('tidings:{client.identity_id}:{channel}')"
    )
    assert json.loads(stored)["cursor"] == 5
    write_todos(stack, client.identity_id, 5, start=5)  # while no page is open
    client.connect("w-reload", PASSWORD, storage="localStorage")
    assert client.subscribe("users/me/todos")["error"] is None
    assert client.wait_for_count(channel, 5, 30) == list(range(6, 11))
    write_todos(stack, client.identity_id, 2, start=10)
    client.wait_for_count(channel, 7, 30)
    time.sleep(1.0)
    assert client.seqs(channel) == list(range(6, 13))


WRITE = """async ({ endpoint, region, table, owner, id }) => {
  const { signRequest } = await import("/client/index.js");
  const headers = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.PutItem",
  };
  const body = JSON.stringify({
    TableName: table, Item: { owner: { S: owner }, id: { S: id }, title: { S: "from the page" } },
  });
  const url = endpoint.replace(/\\/?$/, "/");
  const signed = await signRequest({
    method: "POST", url, region, service: "dynamodb",
    credentials: await window.client.credentials(), headers, body,
  });
  const answer = await fetch(url, { method: "POST", headers: { ...headers, ...signed }, body });
  return { status: answer.status, body: await answer.json() };
}"""


def test_the_page_writes_its_own_partition_and_is_refused_anothers(
    context: BrowserContext, stack: LocalStack
) -> None:
    client = open_client(context, stack, "w-write")
    other = open_client(context, stack, "w-bob")
    client.subscribe("users/me/todos")
    channel = f"users/{client.identity_id}/todos"
    settings = stack.page_settings()
    write = {
        "endpoint": settings["dynamodbEndpoint"],
        "region": settings["region"],
        "table": settings["tables"]["todos"],
        "id": "page-1",
    }
    own = client.page.evaluate(WRITE, {**write, "owner": client.identity_id})
    assert own["status"] == 200, own
    assert client.wait_for_count(channel, 1, 30) == [1]
    foreign = client.page.evaluate(WRITE, {**write, "owner": other.identity_id})
    assert foreign["status"] == 400
    assert foreign["body"]["__type"].endswith("AccessDeniedException")
    assert "dynamodb:PutItem" in foreign["body"]["Message"]  # DynamoDB says Message here
    stored = stack.client("dynamodb").get_item(
        TableName=settings["tables"]["todos"],
        Key={"owner": {"S": other.identity_id}, "id": {"S": "page-1"}},
    )
    assert "Item" not in stored  # nothing was written


def test_the_demo_page_shows_changes_arriving_live(
    context: BrowserContext, stack: LocalStack, tmp_path: Path
) -> None:
    page = context.new_page()
    errors = page_errors(page)
    page.goto(stack.web_url)
    page.fill("input[name=username]", "w-demo")
    page.fill("input[name=password]", PASSWORD)
    page.click("#signin button")
    page.wait_for_selector("#state[data-state=live]", timeout=30_000)
    empty = page.locator("#panels").screenshot()
    dynamodb = stack.client("dynamodb")
    dynamodb.put_item(
        TableName=stack.tables["BoardsTable"],
        Item={
            "tenant": {"S": "acme"},
            "id": {"S": "demo-b1"},
            "text": {"S": "ship the web client"},
        },
    )
    page.fill("#add-todo input", "buy milk")
    page.click("#add-todo button")
    page.wait_for_selector("#todos li", timeout=30_000)
    page.wait_for_selector("#board li:has-text('ship the web client')", timeout=30_000)
    assert page.inner_text("#todos li span") == "buy milk"
    # a push that opened a gap may still be filling: the page settles back to live
    page.wait_for_selector("#state[data-state=live]", timeout=30_000)
    assert page.inner_text("#state") == "live"
    shot = tmp_path / "demo-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    live = page.locator("#panels").screenshot()
    assert live != empty  # the lists drawn on screen changed, not only the DOM
    page.locator("#todos li input[type=checkbox]").check()
    page.wait_for_selector("#todos li.done", timeout=30_000)
    assert wait_until(lambda: page.inner_text("#message"), lambda m: m == "", 1) == ""
    assert errors == []

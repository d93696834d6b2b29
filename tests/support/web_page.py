"""The web client in a real Chromium page, driven from a test.

:class:`WebClient` opens the local stack's ``/sandbox.html`` (an empty page on the stack's web
origin), imports ``/client/index.js`` there, signs in with ``Tidings.connect`` and subscribes;
what the page's callbacks see (changes, continuity losses, states) is kept in ``window`` and
read back here. Everything the client does happens in the page: the test only drives it and
reads what it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from playwright.sync_api import Page

from infra.local.stack.local_stack import LocalStack

T = TypeVar("T")

_CONNECT = """
async ({ apiUrl, username, password, options }) => {
  const { Tidings } = await import("/client/index.js");
  window.states = [];
  window.received = {};
  window.lost = [];
  window.refusals = [];
  const storage = options.storage === "localStorage" ? window.localStorage : null;
  window.client = await Tidings.connect(
    apiUrl, { method: "password", username, password }, { ...options, storage },
  );
  window.client.on("state", (state) => window.states.push(state));
  window.subs = {};
  return window.client.identityId;
}
"""

_SUBSCRIBE = """
async ({ channel, after }) => {
  const options = { onContinuityLost: (name, lost) => window.lost.push({ name, ...lost }) };
  if (after !== null) options.after = after;
  try {
    const sub = await window.client.subscribe(channel, (change) => {
      (window.received[change.channel] ??= []).push(change.seq);
    }, options);
    window.subs[channel] = sub;
    return { channel: sub.channel, error: null };
  } catch (error) {
    return { channel, error: { name: error.name, message: error.message } };
  }
}
"""


_TRY_CONNECT = """
async ({ apiUrl, username, password, options }) => {
  const { Tidings } = await import("/client/index.js");
  const started = performance.now();
  try {
    const signIn = { method: "password", username, password };
    const client = await Tidings.connect(apiUrl, signIn, options);
    await client.close();
    return { error: null, elapsedMs: performance.now() - started };
  } catch (error) {
    return {
      error: { name: error.name, message: error.message },
      elapsedMs: performance.now() - started,
    };
  }
}
"""


class WebClient:
    """One signed-in web client in ``page`` (see the module doc)."""

    def __init__(self, page: Page, stack: LocalStack) -> None:
        self.page = page
        self.stack = stack
        self.identity_id = ""

    def open(self) -> WebClient:
        """Load the sandbox page of the stack's web site."""
        self.page.goto(self.stack.web_url + "sandbox.html")
        return self

    def connect(self, username: str, password: str, **options: Any) -> str:
        """``Tidings.connect`` in the page with short backoffs; returns the identity id."""
        settings = {
            "cognitoEndpoint": self.stack.identity_url,
            "minBackoffMs": 200,
            "maxBackoffMs": 2000,
            **options,
        }
        self.identity_id = str(
            self.page.evaluate(
                _CONNECT,
                {
                    "apiUrl": self.stack.api_url,
                    "username": username,
                    "password": password,
                    "options": settings,
                },
            )
        )
        return self.identity_id

    def connect_error(
        self, username: str, password: str, api_url: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """``Tidings.connect`` in the page, expected to fail (``window.client`` is left alone):
        ``{"error": {"name", "message"} or None, "elapsedMs"}``, timed in the page."""
        settings = {"cognitoEndpoint": self.stack.identity_url, **options}
        return dict(
            self.page.evaluate(
                _TRY_CONNECT,
                {
                    "apiUrl": api_url or self.stack.api_url,
                    "username": username,
                    "password": password,
                    "options": settings,
                },
            )
        )

    def subscribe(self, channel: str, after: int | None = None) -> dict[str, Any]:
        """Subscribe in the page; ``{"channel", "error"}`` (error: ``{"name", "message"}``)."""
        return dict(self.page.evaluate(_SUBSCRIBE, {"channel": channel, "after": after}))

    def seqs(self, channel: str) -> list[int]:
        """The ``seq`` of every change the page's callback got on ``channel``, in order."""
        return [int(s) for s in self.page.evaluate("(c) => window.received[c] ?? []", channel)]

    def state(self) -> str:
        """``client.state`` in the page."""
        return str(self.page.evaluate("() => window.client.state"))

    def states(self) -> list[str]:
        """Every state the page's listener was told, in order."""
        return [str(s) for s in self.page.evaluate("() => window.states")]

    def stats(self) -> dict[str, int]:
        """``client.stats`` in the page."""
        return {k: int(v) for k, v in self.page.evaluate("() => window.client.stats").items()}

    def lost(self) -> list[dict[str, Any]]:
        """What ``onContinuityLost`` was told."""
        return list(self.page.evaluate("() => window.lost"))

    def wait_for_count(self, channel: str, count: int, timeout_s: float) -> list[int]:
        """Wait until the page got ``count`` changes on ``channel``; their seqs."""
        return wait_until(lambda: self.seqs(channel), lambda s: len(s) >= count, timeout_s)

    def wait_for_state(self, states: tuple[str, ...], timeout_s: float) -> str:
        """Wait until the client's state is one of ``states``; the state."""
        return wait_until(self.state, lambda s: s in states, timeout_s)

    def close(self) -> None:
        """``client.close()`` in the page (if it got that far)."""
        self.page.evaluate("async () => { await window.client?.close(); }")


def wait_until(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float) -> T:
    """Read until ``done``; the last reading either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def write_todos(
    stack: LocalStack, owner: str, count: int, start: int = 0, pause_s: float = 0.0
) -> None:
    """PutItem ``count`` todos of ``owner`` with the developer's credentials."""
    dynamodb = stack.client("dynamodb")
    for n in range(start, start + count):
        dynamodb.put_item(
            TableName=stack.tables["TodosTable"],
            Item={"owner": {"S": owner}, "id": {"S": f"item{n % 10}"}, "n": {"N": str(n)}},
        )
        if pause_s:
            time.sleep(pause_s)

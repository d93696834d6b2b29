// Unit tests of the ChannelOrder port beyond the shared scenarios: its public shape, the
// actions as plain tagged objects, and that src/ stays free of platform-specific APIs.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

import { ChannelOrder } from "../src/ordering.js";

test("a new channel starts at cursor 0, epoch unknown, no fill outstanding", () => {
  const order = new ChannelOrder("news");
  assert.equal(order.channel, "news");
  assert.equal(order.cursor, 0);
  assert.equal(order.epoch, null);
  assert.equal(order.maxBuffer, 10_000);
  assert.equal(order.filling, false);
});

test("the options set where a subscription starts", () => {
  const order = new ChannelOrder("news", { cursor: 5, epoch: 2, maxBuffer: 3 });
  assert.deepEqual([order.cursor, order.epoch, order.maxBuffer], [5, 2, 3]);
});

test("actions are frozen plain objects tagged by type; a delivery hands over the change itself", () => {
  const order = new ChannelOrder("news", { cursor: 1, epoch: 1 });
  const change = { seq: 2, epoch: 1, body: { text: "hello" } };
  const [delivery] = order.onPush(change);
  assert.deepEqual(delivery, { type: "deliver", change });
  assert.equal(delivery.type === "deliver" && delivery.change, change);
  assert.ok(Object.isFrozen(delivery));
  assert.equal(Object.getPrototypeOf(delivery), Object.prototype);

  assert.deepEqual(order.onPush({ seq: 4, epoch: 1 }), [{ type: "awaitGap", after: 2 }]);
  assert.deepEqual(order.gapTimeout(), [{ type: "fill", after: 2 }]);
  assert.equal(order.filling, true);
  assert.deepEqual(order.onCursorExpired(9, 1), [
    { type: "lost", head: 9, epoch: 1, reason: "cursor_expired" },
  ]);
  assert.equal(order.cursor, 9);
});

test("a fill that failed is asked for again by the next resume", () => {
  const order = new ChannelOrder("news", { cursor: 3, epoch: 1 });
  assert.deepEqual(order.resume(), [{ type: "fill", after: 3 }]);
  assert.deepEqual(order.resume(), []);
  order.onFillFailed();
  assert.equal(order.filling, false);
  assert.deepEqual(order.resume(), [{ type: "fill", after: 3 }]);
});

// `npm run typecheck` gives src/ the ES2022 and DOM types (no Node types); the DOM names that
// only browsers have must be reached through `globalThis` behind a check, which this test
// enforces on the code with its comments (and their JSDoc type imports) taken out.
test("src/ imports only src/ and names no platform-only global", () => {
  const src = new URL("../src/", import.meta.url);
  for (const name of readdirSync(src)) {
    const text = readFileSync(new URL(name, src), "utf8");
    for (const [, specifier] of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/gm)) {
      assert.match(specifier, /^\.\/[\w-]+\.js$/, `${name} imports ${specifier}`);
    }
    const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
    assert.doesNotMatch(code, /^\s*import\s+"/m, `${name} imports a module for its effects`);
    assert.doesNotMatch(code, /\brequire\(|\bimport\(/, `${name} loads a module`);
    const platformOnly = /(?<![.\w"'`])(?:window|document|localStorage|sessionStorage|navigator|process|Buffer|require|module)\b/;
    assert.doesNotMatch(code, platformOnly, `${name} names a platform-only global`);
  }
});

test("the package root exports the ordering core", async () => {
  const root = await import("../src/index.js");
  assert.equal(root.ChannelOrder, ChannelOrder);
});

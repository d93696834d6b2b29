// The ordering conformance scenarios (tests/conformance/ordering.json) run against the web
// client's ChannelOrder (src/ordering.js).
//
// The scenarios are language-neutral data shared with the Python client's pytest runner
// (tests/unit/test_conformance_ordering.py); this module is the JavaScript adapter: neutral
// events in, ChannelOrder calls; actions out, neutral actions. It reads the file in place and
// checks what the Python runner checks. See tests/conformance/README.md for the format.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { isDeepStrictEqual } from "node:util";

import { ChannelOrder } from "../src/ordering.js";

/** @typedef {import("../src/ordering.js").Action} Action */

const ORDERING = new URL("../../../tests/conformance/ordering.json", import.meta.url);
const DATA = JSON.parse(readFileSync(ORDERING, "utf8"));
const SCENARIOS = DATA.scenarios;

const EVENTS = new Set([
  "push",
  "reorder_window_elapsed",
  "resume",
  "fill_result",
  "cursor_expired",
  "fill_failed",
]);
const ANSWERS = new Set(["fill_result", "cursor_expired", "fill_failed"]);

/**
 * A JavaScript action as the scenario file spells it.
 * @param {Action} action
 */
function neutral(action) {
  switch (action.type) {
    case "deliver":
      return { deliver: { ...action.change } };
    case "fill":
      return { fill: { after: action.after } };
    case "awaitGap":
      return { await_gap: { after: action.after } };
    case "lost":
      return { lost: { head: action.head, epoch: action.epoch, reason: action.reason } };
    default:
      throw new assert.AssertionError({ message: `unknown action ${JSON.stringify(action)}` });
  }
}

/**
 * An action matches exactly, except a delivery: only the fields the scenario gives are
 * compared, and a field given as null must be absent.
 * @param {Record<string, any>} actual
 * @param {Record<string, any>} expected
 */
function matches(actual, expected) {
  if (!("deliver" in expected) || !("deliver" in actual)) {
    return isDeepStrictEqual(actual, expected);
  }
  const change = actual.deliver;
  return Object.entries(expected.deliver).every(([key, value]) =>
    isDeepStrictEqual(Object.hasOwn(change, key) ? change[key] : null, value),
  );
}

/**
 * Drives one ChannelOrder the way its owner would, checking the scenario's own consistency (a
 * fill answer answers the outstanding fill; the window ends only after a wait) and the
 * invariant every scenario shares: no change delivered twice, seqs rising per epoch.
 */
class Harness {
  /** @param {ChannelOrder} order */
  constructor(order) {
    this.order = order;
    /** @type {number | null} */
    this.outstandingFill = null;
    this.waits = 0;
    /** @type {Set<string>} "epoch:seq" */
    this.delivered = new Set();
    /** @type {[number, number] | null} */
    this.last = null;
  }

  /** @param {Record<string, any>} step */
  step(step) {
    const kinds = Object.keys(step).filter((key) => key !== "expect" && key !== "note");
    assert.equal(kinds.length, 1, `scenario error: a step has one event, not ${kinds}`);
    const [kind] = kinds;
    const event = step[kind];
    if (ANSWERS.has(kind)) {
      assert.equal(
        this.outstandingFill,
        event.after,
        `scenario error: ${kind} answers a fill after ${event.after}, ` +
          `but the outstanding fill is ${this.outstandingFill}`,
      );
      this.outstandingFill = null;
    }
    const actions = this.call(kind, event);
    const out = actions.map(neutral);
    for (const action of actions) {
      this.observe(action);
    }
    return out;
  }

  /**
   * @param {string} kind
   * @param {Record<string, any>} event
   * @returns {Action[]}
   */
  call(kind, event) {
    const order = this.order;
    switch (kind) {
      case "push":
        return order.onPush(event);
      case "reorder_window_elapsed":
        assert.ok(this.waits > 0, "scenario error: the window elapsed with no await_gap running");
        this.waits -= 1;
        return order.gapTimeout();
      case "resume":
        return order.resume();
      case "fill_result":
        return order.onFill(event.changes, event.head, event.epoch, event.more);
      case "cursor_expired":
        return order.onCursorExpired(event.head, event.epoch);
      case "fill_failed":
        order.onFillFailed();
        return [];
      default:
        throw new assert.AssertionError({ message: `unknown event ${JSON.stringify(kind)}` });
    }
  }

  /** @param {Action} action */
  observe(action) {
    if (action.type === "fill") {
      assert.equal(this.outstandingFill, null, "a second fill while one is outstanding");
      this.outstandingFill = action.after;
    } else if (action.type === "awaitGap") {
      this.waits += 1;
    } else if (action.type === "deliver") {
      const epoch = Number(action.change.epoch);
      const seq = Number(action.change.seq);
      const key = `${epoch}:${seq}`;
      assert.ok(!this.delivered.has(key), `delivered twice: epoch ${epoch} seq ${seq}`);
      if (this.last !== null && this.last[0] === epoch) {
        assert.ok(seq > this.last[1], `seq ${seq} delivered after ${this.last[1]}`);
      }
      this.delivered.add(key);
      this.last = [epoch, seq];
    }
  }
}

/** @param {Record<string, any>} scenario */
function run(scenario) {
  const { start } = scenario;
  const order = new ChannelOrder(scenario.name, { cursor: start.cursor, epoch: start.epoch });
  if ("max_buffer" in start) {
    order.maxBuffer = start.max_buffer;
  }
  const harness = new Harness(order);
  scenario.events.forEach((step, index) => {
    const actual = harness.step(step);
    const expected = step.expect;
    const ok = actual.length === expected.length && actual.every((a, i) => matches(a, expected[i]));
    assert.ok(
      ok,
      `event ${index + 1} ${JSON.stringify(step)}\n  produced ${JSON.stringify(actual)}`,
    );
  });
  const final = scenario.final ?? {};
  /** @type {Record<string, unknown>} */
  const state = { cursor: order.cursor, epoch: order.epoch, filling: order.filling };
  const seen = Object.fromEntries(Object.keys(final).map((key) => [key, state[key]]));
  assert.deepEqual(seen, final);
}

describe("ordering conformance (tests/conformance/ordering.json)", () => {
  test("the file is format version 1 with scenarios", () => {
    assert.equal(DATA.version, 1);
    assert.ok(Array.isArray(SCENARIOS) && SCENARIOS.length > 0);
  });

  test("scenario names are unique", () => {
    const names = SCENARIOS.map((/** @type {{name: string}} */ s) => s.name);
    assert.equal(new Set(names).size, names.length);
  });

  test("every step has one known event", () => {
    for (const scenario of SCENARIOS) {
      for (const step of scenario.events) {
        const kinds = Object.keys(step).filter((key) => key !== "expect" && key !== "note");
        assert.equal(kinds.length, 1, `${scenario.name}: ${JSON.stringify(step)}`);
        assert.ok(EVENTS.has(kinds[0]), `${scenario.name}: unknown event ${kinds[0]}`);
      }
    }
  });

  describe("scenarios", () => {
    for (const scenario of SCENARIOS) {
      test(scenario.name, () => run(scenario));
    }
  });
});

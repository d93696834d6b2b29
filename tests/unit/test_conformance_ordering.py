"""The ordering conformance scenarios (tests/conformance/ordering.json) run against the Python
client's :class:`~client_sdk._ordering.ChannelOrder`.

The scenarios are language-neutral data shared with the JavaScript client's ``node --test``
runner; this module is the Python adapter: neutral events in, :mod:`client_sdk._ordering`
calls; actions out, neutral actions. See tests/conformance/README.md for the format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from client_sdk._ordering import Action, AwaitGap, ChannelOrder, Deliver, Fill, Lost

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
DATA = json.loads((CONFORMANCE / "ordering.json").read_text(encoding="utf-8"))
SCHEMA = json.loads((CONFORMANCE / "ordering.schema.json").read_text(encoding="utf-8"))
SCENARIOS: list[dict[str, Any]] = DATA["scenarios"]


def neutral(action: Action) -> dict[str, Any]:
    """A Python action as the scenario file spells it."""
    if isinstance(action, Deliver):
        return {"deliver": dict(action.change)}
    if isinstance(action, Fill):
        return {"fill": {"after": action.after}}
    if isinstance(action, AwaitGap):
        return {"await_gap": {"after": action.after}}
    assert isinstance(action, Lost)
    return {"lost": {"head": action.head, "epoch": action.epoch, "reason": action.reason}}


def matches(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """An action matches exactly, except a delivery: only the fields the scenario gives are
    compared, and a field given as null must be absent."""
    if "deliver" not in expected or "deliver" not in actual:
        return actual == expected
    change = actual["deliver"]
    return all(change.get(key) == value for key, value in expected["deliver"].items())


@dataclass
class Harness:
    """Drives one :class:`ChannelOrder` the way its owner would, checking the scenario's own
    consistency (a fill answer answers the outstanding fill; the window ends only after a wait)
    and the invariant every scenario shares: no change delivered twice, seqs rising per epoch."""

    order: ChannelOrder
    outstanding_fill: int | None = None
    waits: int = 0
    delivered: set[tuple[int, int]] = field(default_factory=set)
    last: tuple[int, int] | None = None

    def step(self, step: Mapping[str, Any]) -> list[dict[str, Any]]:
        (kind,) = step.keys() - {"expect", "note"}
        event = step[kind]
        if kind in ("fill_result", "cursor_expired", "fill_failed"):
            assert self.outstanding_fill == event["after"], (
                f"scenario error: {kind} answers a fill after {event['after']}, "
                f"but the outstanding fill is {self.outstanding_fill}"
            )
            self.outstanding_fill = None
        actions = self.call(kind, event)
        out = [neutral(action) for action in actions]
        for action in actions:
            self.observe(action)
        return out

    def call(self, kind: str, event: Mapping[str, Any]) -> list[Action]:
        order = self.order
        if kind == "push":
            return order.on_push(event)
        if kind == "reorder_window_elapsed":
            assert self.waits > 0, "scenario error: the window elapsed with no await_gap running"
            self.waits -= 1
            return order.gap_timeout()
        if kind == "resume":
            return order.resume()
        if kind == "fill_result":
            return order.on_fill(event["changes"], event["head"], event["epoch"], event["more"])
        if kind == "cursor_expired":
            return order.on_cursor_expired(event["head"], event["epoch"])
        if kind == "fill_failed":
            order.on_fill_failed()
            return []
        raise AssertionError(f"unknown event {kind!r}")

    def observe(self, action: Action) -> None:
        if isinstance(action, Fill):
            assert self.outstanding_fill is None, "a second fill while one is outstanding"
            self.outstanding_fill = action.after
        elif isinstance(action, AwaitGap):
            self.waits += 1
        elif isinstance(action, Deliver):
            key = (int(action.change["epoch"]), int(action.change["seq"]))
            assert key not in self.delivered, f"delivered twice: epoch {key[0]} seq {key[1]}"
            if self.last is not None and self.last[0] == key[0]:
                assert key[1] > self.last[1], f"seq {key[1]} delivered after {self.last[1]}"
            self.delivered.add(key)
            self.last = key


def test_the_scenarios_follow_the_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(DATA)


def test_scenario_names_are_unique() -> None:
    names = [scenario["name"] for scenario in SCENARIOS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(scenario: dict[str, Any]) -> None:
    start = scenario["start"]
    order = ChannelOrder(scenario["name"], cursor=start["cursor"], epoch=start["epoch"])
    if "max_buffer" in start:
        order.max_buffer = start["max_buffer"]
    harness = Harness(order)
    for number, step in enumerate(scenario["events"], 1):
        actual = harness.step(step)
        expected = step["expect"]
        ok = len(actual) == len(expected) and all(map(matches, actual, expected))
        assert ok, f"event {number} {json.dumps(step)}\n  produced {json.dumps(actual)}"
    final = scenario.get("final", {})
    state = {"cursor": order.cursor, "epoch": order.epoch, "filling": order.filling}
    assert {key: state[key] for key in final} == final

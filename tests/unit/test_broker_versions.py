"""Lifecycle versionNumber counters: increasing per client id, bounded in number."""

from __future__ import annotations

import pytest

from infra.local.iot import broker as broker_module
from infra.local.iot.broker import Broker, BrokerConfig


def test_versions_increase_and_the_oldest_ids_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broker_module, "MAX_TRACKED_CLIENT_IDS", 2)
    broker = Broker(BrokerConfig())
    assert [broker.next_version("a"), broker.next_version("a")] == [1, 2]
    broker.next_version("b")
    broker.next_version("a")  # "a" is now the most recent
    broker.next_version("c")  # forgets "b", the least recent
    assert broker.next_version("a") == 4
    assert broker.next_version("b") == 1

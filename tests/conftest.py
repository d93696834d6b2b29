"""Shared fixtures: a running gateway on a free port, with its own credential store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.iot.broker import BrokerConfig
from infra.local.iot.gateway import Gateway, GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tidings-state")


@pytest.fixture(scope="module")
def gateway_thread(state_dir: Path) -> Iterator[GatewayThread]:
    config = GatewayConfig(port=0, state_dir=state_dir, broker=BrokerConfig())
    runner = GatewayThread(config, CredentialStore())
    runner.start()
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def gateway(gateway_thread: GatewayThread) -> Gateway:
    assert gateway_thread.gateway is not None
    return gateway_thread.gateway

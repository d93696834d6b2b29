"""Shared fixtures: a running gateway on a free port, with its own credential store; and the
acceptance suite's command-line options."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.iot.broker import BrokerConfig
from infra.local.iot.gateway import Gateway, GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread


def pytest_addoption(parser: pytest.Parser) -> None:
    """The acceptance suite's target (tests/acceptance/target.py); pytest reads options only
    from this, the root conftest."""
    group = parser.getgroup("tidings acceptance")
    group.addoption(
        "--stack",
        metavar="NAME",
        help="run tests/acceptance against this stack deployed with `tidings deploy` "
        "(default: the local stack)",
    )
    group.addoption("--region", metavar="R", help="the region of --stack")


# The slowest files first: pytest-xdist (``--dist loadfile``) hands files to its workers in
# collection order, so the long end-to-end files start at once and the many short unit and
# functional files fill the gaps, instead of a long file starting last and running alone.
_FIRST = ("tests/e2e/", "tests/security/", "tests/acceptance/", "tests/functional/")


def _rank(item: pytest.Item) -> int:
    where = item.nodeid
    return next((n for n, prefix in enumerate(_FIRST) if where.startswith(prefix)), len(_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files slowest folder first (a stable sort: order within a file is kept)."""
    items.sort(key=_rank)


@pytest.fixture(scope="session")
def shared_stack() -> Iterator[Any]:
    """One local stack with the template's own settings, for the modules that change nothing
    in it (each adds users of its own names); started on first use in each test process, so
    those modules do not each pay a start."""
    from infra.local.stack.local_stack import LocalStack
    from tests.support.local_stack import stack_config

    with LocalStack(stack_config()) as running:
        yield running


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

"""The acceptance suite's target: the local stack by default, or a deployed stack named with
``--stack NAME --region R`` (options registered in ``tests/conftest.py``) or
``TIDINGS_AWS_TESTS=1`` with ``TIDINGS_STACK``. See ``tests/acceptance/target.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.admin import Todos, Users
from tests.acceptance.target import (
    AwsChoice,
    Target,
    TargetError,
    aws_target,
    local_target,
    select_target,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every acceptance test carries the ``aws`` marker: it runs against any stack."""
    unmarked = [
        item.nodeid
        for item in items
        if HERE in item.path.parents and item.get_closest_marker("aws") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"acceptance tests without pytest.mark.aws (set pytestmark): {', '.join(unmarked)}"
        )


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The stack under test. AWS chosen but unusable is a failure that says why, not a skip."""
    deployed, problem = None, None
    try:
        choice = select_target(
            stack=request.config.getoption("stack", default=None),
            region=request.config.getoption("region", default=None),
            environ=os.environ,
        )
        deployed = aws_target(choice) if isinstance(choice, AwsChoice) else None
    except TargetError as exc:
        problem = str(exc)
    if problem is not None:  # outside the except: the message alone, not a chain
        pytest.fail(f"acceptance target: {problem}", pytrace=False)
    if deployed is not None:
        yield deployed
        return
    # the local stack every module with the template's own settings shares (tests/conftest.py)
    yield local_target(request.getfixturevalue("shared_stack"))


@pytest.fixture(scope="session")
def users(target: Target) -> Iterator[Users]:
    """Users of this run; removed at the end."""
    made = Users(target)
    yield made
    made.remove_all()


@pytest.fixture(scope="session")
def todos(target: Target) -> Iterator[Todos]:
    """Todos items written by this run; deleted at the end."""
    written = Todos(target)
    yield written
    written.remove_all()

"""Fixes to moto that the local stack needs: DynamoDB transactions and queries, streams, IoT.

Each fix is a module of its own, whose docstring says what moto does, what AWS does and what
the fix changes, and whose ``apply()`` installs it (idempotent):

- :mod:`.isolation`: DynamoDB item requests one at a time, so no read sees half a write;
- :mod:`.transactions`: ``TransactWriteItems`` all or nothing without whole-table copies,
  serialised, and a cancelled transaction leaves no stream record;
- :mod:`.query`: ``Query`` reads its one partition, found by bisection;
- :mod:`.item_responses`: item operations' answers written with ``json.dumps``;
- :mod:`.get_records`: DynamoDB Streams' ``GetRecords`` answers written with ``json.dumps``;
- :mod:`.condition_cache`: parsed condition expressions remembered, syntax errors as HTTP 400;
- :mod:`.stream_writes`: a stream write only appends its record, for the local stack's pump;
- :mod:`.routing`: the service of a host name looked up once;
- :mod:`.iot_cognito`: IoT policies attach to any Cognito identity id;
- :mod:`.mock_integrations`: API Gateway methods with a ``MOCK`` integration deploy;
- :mod:`.rest_api_body`: a REST API defined by its OpenAPI ``Body`` gets its methods;
- :mod:`.iot_device_ca`: IoT certificates signed by the stack's device CA, named by their DER;
- :mod:`.cloudformation_iot`: CloudFormation's IoT policies and role aliases have physical
  ids, are deleted with their stack, and keep their policy documents as JSON.

``apply_local_stack_fixes`` applies them all (in the order of :data:`FIX_MODULES`), in the
process that runs moto (``ThreadedMotoServer``), once. They are written for one moto release,
:data:`MOTO_VERSION`: :func:`check_moto_version` refuses any other (``tidings up`` and the
moto process call it before they start).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from infra.local.motohost.fixes import (
    cloudformation_iot,
    condition_cache,
    get_records,
    iot_cognito,
    iot_device_ca,
    isolation,
    item_responses,
    mock_integrations,
    query,
    rest_api_body,
    routing,
    stream_writes,
    transactions,
)
from infra.local.motohost.fixes.cloudformation_iot import apply_cloudformation_iot_fix
from infra.local.motohost.fixes.condition_cache import apply_condition_cache
from infra.local.motohost.fixes.get_records import (
    apply_get_records_response_fix,
    get_records_body,
)
from infra.local.motohost.fixes.iot_cognito import apply_iot_cognito_targets_fix
from infra.local.motohost.fixes.iot_device_ca import apply_iot_device_ca_fix
from infra.local.motohost.fixes.isolation import apply_dynamodb_isolation_fix
from infra.local.motohost.fixes.item_responses import apply_dynamodb_response_fix
from infra.local.motohost.fixes.mock_integrations import apply_mock_integrations_fix
from infra.local.motohost.fixes.query import apply_dynamodb_query_fix
from infra.local.motohost.fixes.rest_api_body import apply_rest_api_body_fix
from infra.local.motohost.fixes.routing import apply_routing_fix
from infra.local.motohost.fixes.stream_writes import apply_stream_fix
from infra.local.motohost.fixes.transactions import apply_dynamodb_transaction_fixes

__all__ = [
    "FIX_MODULES",
    "MOTO_VERSION",
    "MotoVersionError",
    "apply_cloudformation_iot_fix",
    "apply_condition_cache",
    "apply_dynamodb_isolation_fix",
    "apply_dynamodb_query_fix",
    "apply_dynamodb_response_fix",
    "apply_dynamodb_transaction_fixes",
    "apply_get_records_response_fix",
    "apply_iot_cognito_targets_fix",
    "apply_iot_device_ca_fix",
    "apply_local_stack_fixes",
    "apply_mock_integrations_fix",
    "apply_rest_api_body_fix",
    "apply_routing_fix",
    "apply_stream_fix",
    "check_moto_version",
    "get_records_body",
]

MOTO_VERSION = "5.2.5"
"""The moto release the fixes are written for: each replaces or wraps that release's code."""

FIX_MODULES: tuple[ModuleType, ...] = (
    isolation,
    transactions,
    query,
    item_responses,
    get_records,
    condition_cache,
    stream_writes,
    routing,
    iot_cognito,
    mock_integrations,
    iot_device_ca,
    cloudformation_iot,
    rest_api_body,
)
"""Every fix, in the order :func:`apply_local_stack_fixes` applies them."""


class MotoVersionError(RuntimeError):
    """The installed moto is not :data:`MOTO_VERSION`; the message says both and the fix."""


def _installed_moto_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("moto")
    except PackageNotFoundError:
        return None


def check_moto_version() -> None:
    """Raise :class:`MotoVersionError` unless the installed moto is :data:`MOTO_VERSION`."""
    installed = _installed_moto_version()
    if installed == MOTO_VERSION:
        return
    found = f"moto {installed} is installed" if installed else "moto is not installed"
    raise MotoVersionError(
        f"the local stack's moto fixes are written for moto {MOTO_VERSION}, but {found}: "
        f"install it with pip install 'tidings[local]' (which pins moto[server]=={MOTO_VERSION})"
    )


def apply_local_stack_fixes(notify: Any = None) -> None:
    """Apply every fix of :data:`FIX_MODULES`, in order (idempotent).

    ``notify`` goes to :func:`.stream_writes.apply_stream_fix`. Raises
    :class:`MotoVersionError` (before changing anything) if the installed moto is not the
    release the fixes are written for.
    """
    check_moto_version()
    for fix in FIX_MODULES:
        if fix is stream_writes:
            fix.apply(notify)
        else:
            fix.apply()

"""Each moto fix is one module, applied by ``apply_local_stack_fixes`` and named by a test.

The modules of ``infra/local/motohost/fixes/`` are the fixes: each says in its docstring what
moto does, what AWS does and what it changes, exposes ``apply()``, and has a test under
``tests/`` that names it by its import path (``infra.local.motohost.fixes.<name>``) or its
file (``infra/local/motohost/fixes/<name>.py``).
"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from infra.local.motohost import fixes

ROOT = Path(__file__).resolve().parents[2]
# The order the fixes were applied in when they were one file; the order must not change.
ORDER = [
    "isolation",
    "transactions",
    "query",
    "item_responses",
    "get_records",
    "condition_cache",
    "stream_writes",
    "routing",
    "iot_cognito",
    "mock_integrations",
    "iot_device_ca",
    "cloudformation_iot",
    "rest_api_body",
]


def short_name(module: ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def test_the_fix_modules_are_the_modules_on_disk_in_their_order() -> None:
    on_disk = {info.name for info in pkgutil.iter_modules(fixes.__path__)}
    assert [short_name(module) for module in fixes.FIX_MODULES] == ORDER
    assert set(ORDER) == on_disk


@pytest.mark.parametrize("module", fixes.FIX_MODULES, ids=short_name)
def test_each_fix_module_says_what_it_changes_and_has_apply(module: ModuleType) -> None:
    assert callable(module.apply)
    doc = module.__doc__ or ""
    assert "moto 5.2.5" in doc  # what moto does
    assert "DynamoDB" in doc or "AWS" in doc  # what AWS does
    assert re.search(r"\bThe fix\s", doc)  # what the fix changes


@pytest.mark.parametrize("module", fixes.FIX_MODULES, ids=short_name)
def test_each_fix_module_is_named_by_a_test(module: ModuleType) -> None:
    name = re.escape(short_name(module))
    naming = re.compile(rf"infra[./]local[./]motohost[./]fixes[./]{name}\b")
    tests = [
        path
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path != Path(__file__).resolve()
        and naming.search(path.read_text(encoding="utf-8"))
        and re.search(r"^def test_", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert tests, f"no test under tests/ names {module.__name__}"


def test_apply_local_stack_fixes_applies_every_fix_module_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fixes, "_installed_moto_version", lambda: fixes.MOTO_VERSION)
    applied: list[tuple[str, tuple[Any, ...]]] = []

    def recorder(name: str) -> Any:
        return lambda *args: applied.append((name, args))

    for module in fixes.FIX_MODULES:
        monkeypatch.setattr(module, "apply", recorder(short_name(module)))
    notify = object()
    fixes.apply_local_stack_fixes(notify)
    assert [name for name, _ in applied] == ORDER
    assert dict(applied)["stream_writes"] == (notify,)  # the pump's notification
    assert all(args == () for name, args in applied if name != "stream_writes")


def test_the_public_names_are_kept() -> None:
    assert set(fixes.__all__) >= {
        "MOTO_VERSION",
        "MotoVersionError",
        "apply_condition_cache",
        "apply_dynamodb_isolation_fix",
        "apply_dynamodb_query_fix",
        "apply_dynamodb_response_fix",
        "apply_dynamodb_transaction_fixes",
        "apply_get_records_response_fix",
        "apply_iot_cognito_targets_fix",
        "apply_local_stack_fixes",
        "apply_routing_fix",
        "apply_stream_fix",
        "check_moto_version",
        "get_records_body",
    }
    assert all(hasattr(fixes, name) for name in fixes.__all__)

"""Helpers for tests that run the whole local stack."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from infra.local.stack import LocalStack, StackConfig

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"


def stack_config(template: Path = TEMPLATE, **overrides) -> StackConfig:
    """A config on free ports with its own state directory."""
    options = dict(
        state_dir=Path(tempfile.mkdtemp(prefix="tidings-test-")),
        template=template,
        gateway_port=0,
        api_port=0,
        identity_port=0,
        moto_port=0,
    )
    options.update(overrides)
    return StackConfig(**options)


def edited_template(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    """A copy of the template with ``edit`` applied to its text (must change something)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    changed = edit(text)
    assert changed != text, "the edit did not change the template"
    path = tmp_path / "template.yaml"
    path.write_text(changed, encoding="utf-8")
    return path


def set_mapping_property(text: str, mapping: str, prop: str, value: str) -> str:
    """Change one property of one event source mapping in the template text."""
    block = re.search(rf"  {mapping}:\n(?:    .*\n|      .*\n|\n)+", text)
    assert block, mapping
    updated = re.sub(rf"(      {prop}: ).*", rf"\g<1>{value}", block.group(0), count=1)
    return text.replace(block.group(0), updated)


def add_user(stack: LocalStack, name: str, password: str, tenants: set[str]) -> None:
    from auth.passwords import hash_password
    from auth.store import UsersStore

    UsersStore(stack.client("dynamodb"), stack.tables["UsersTable"]).add_user(
        name, hash_password(password), frozenset(tenants)
    )

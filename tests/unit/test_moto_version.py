"""The local stack refuses a moto other than the one its fixes are written for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.local.motohost import fixes as moto_fixes
from infra.local.motohost.fixes import MOTO_VERSION, MotoVersionError, check_moto_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_moto_is_the_one_the_fixes_are_written_for() -> None:
    check_moto_version()  # the development environment installs the pinned release


def test_the_local_extra_and_the_constraints_pin_the_same_moto() -> None:
    import tomllib

    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    (pinned,) = re.findall(r"^moto==(\S+)", text, flags=re.MULTILINE)
    assert pinned == MOTO_VERSION
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["optional-dependencies"]["local"] == [f"moto[server]=={MOTO_VERSION}"]


def test_another_moto_is_refused_with_both_versions_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(moto_fixes, "_installed_moto_version", lambda: "5.3.0")
    with pytest.raises(MotoVersionError) as refused:
        check_moto_version()
    message = str(refused.value)
    assert "\n" not in message
    assert f"moto {MOTO_VERSION}" in message and "moto 5.3.0 is installed" in message
    assert f"moto[server]=={MOTO_VERSION}" in message  # what to do about it


def test_a_missing_moto_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto_fixes, "_installed_moto_version", lambda: None)
    with pytest.raises(MotoVersionError, match="moto is not installed"):
        check_moto_version()


def test_the_fixes_are_not_applied_to_another_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto_fixes, "_installed_moto_version", lambda: "4.2.14")
    applied: list[str] = []
    for fix in moto_fixes.FIX_MODULES:
        monkeypatch.setattr(fix, "apply", lambda *_, name=fix.__name__: applied.append(name))
    with pytest.raises(MotoVersionError, match=re.escape("4.2.14")):
        moto_fixes.apply_local_stack_fixes()
    assert applied == []

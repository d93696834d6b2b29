"""The two distributions' metadata agree with each other, with constraints.txt and with the
Lambda package's pins; every typed package ships py.typed; the data files are package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra import data_files

ROOT = Path(__file__).resolve().parents[2]


def project(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    return data


TIDINGS = project(ROOT / "pyproject.toml")
CLIENT = project(ROOT / "clients" / "python" / "pyproject.toml")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pin = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
            assert pin, f"{path.name}: {line!r} is not an exact pin"
            found[canonicalize_name(pin[1])] = pin[2]
    return found


CONSTRAINTS = pins(ROOT / "constraints.txt")


def requirements(meta: dict[str, Any]) -> list[Requirement]:
    listed = list(meta["project"]["dependencies"])
    for extra in meta["project"].get("optional-dependencies", {}).values():
        listed += extra
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize("meta", [TIDINGS, CLIENT], ids=["tidings", "tidings-client"])
def test_dependencies_are_ranges_that_the_constraints_satisfy(meta: dict[str, Any]) -> None:
    for requirement in requirements(meta):
        name = canonicalize_name(requirement.name)
        if name == "tidings-client":
            assert requirement.specifier.contains(CLIENT["project"]["version"])
            continue
        if name == "pip":
            continue  # the deploy extra: whatever pip the environment has, if new enough
        assert name in CONSTRAINTS, f"{name} has no exact version in constraints.txt"
        assert requirement.specifier.contains(CONSTRAINTS[name]), (str(requirement), name)
        exact = any(spec.operator == "==" for spec in requirement.specifier)
        assert not exact or name == "moto", f"{requirement}: a range, not a pin"


def test_the_client_brings_nothing_of_the_backend() -> None:
    names = {canonicalize_name(r.name) for r in requirements(CLIENT)}
    assert names == {"awscrt", "awsiotsdk", "awsiotpythonsdk"}
    assert CLIENT["project"]["optional-dependencies"] == {"v1": ["AWSIoTPythonSDK>=1.6.2,<2"]}
    # the client and its Greengrass component (with its recipe), nothing else
    assert CLIENT["tool"]["setuptools"]["packages"] == ["client_sdk", "client_sdk.greengrass"]
    assert CLIENT["tool"]["setuptools"]["package-data"]["client_sdk.greengrass"] == ["recipe.yaml"]


def test_the_two_distributions_are_released_together() -> None:
    assert TIDINGS["project"]["version"] == CLIENT["project"]["version"]
    assert TIDINGS["project"]["license"] == CLIENT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_bytes() == (ROOT / "clients/python/LICENSE").read_bytes()


def test_the_lambda_package_pins_the_tested_versions() -> None:
    lambda_pins = pins(data_files.data_file(data_files.LAMBDA_REQUIREMENTS))
    for name, version in lambda_pins.items():
        assert CONSTRAINTS.get(name) == version, name


@pytest.mark.parametrize("package", ["backend", "auth", "infra", "client_sdk"])
def test_every_typed_package_ships_py_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()
    shipped = {
        **TIDINGS["tool"]["setuptools"]["package-data"],
        **CLIENT["tool"]["setuptools"]["package-data"],
    }
    assert "py.typed" in shipped[package]


def test_the_data_files_are_package_data() -> None:
    globs = TIDINGS["tool"]["setuptools"]["package-data"]["infra"]
    for name in (data_files.TEMPLATE, data_files.ROUTES, data_files.LAMBDA_REQUIREMENTS):
        assert data_files.data_file(name).is_file(), name
        assert any(Path(name).match(glob) for glob in globs), name
    assert any(Path(data_files.OPENAPI).match(glob) for glob in globs)  # once it is written
    assert data_files.code_root() == ROOT

"""The client's public surface is explicit, and importing it stays lean (no boto3)."""

from __future__ import annotations

import subprocess
import sys
import types

import client_sdk
import client_sdk.testing


def public_names(module: types.ModuleType) -> set[str]:
    """Names a user can reach, submodules (``client_sdk.testing``) aside."""
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(getattr(module, name), types.ModuleType)
    }


def test_all_is_exactly_the_public_names() -> None:
    assert set(client_sdk.__all__) == public_names(client_sdk)
    assert {"Tidings", "AsyncTidings", "Password", "Change", "AccessDenied"} <= set(
        client_sdk.__all__
    )
    assert set(client_sdk.testing.__all__) == {
        "InMemoryAsyncTidings",
        "InMemoryStack",
        "InMemoryTidings",
    }


def test_every_public_name_has_a_docstring() -> None:
    for module in (client_sdk, client_sdk.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type):
                assert value.__doc__, name
                for attribute, member in vars(value).items():
                    if attribute.startswith("_") or (
                        not callable(member)
                        and not isinstance(member, property | classmethod | staticmethod)
                    ):
                        continue
                    assert getattr(value, attribute).__doc__, f"{name}.{attribute}"


def test_importing_the_client_does_not_import_boto3() -> None:
    code = (
        "import sys, client_sdk, client_sdk.testing; "
        "print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_options_from_env_and_overrides() -> None:
    options = client_sdk.ClientOptions.from_env(
        {"TIDINGS_CA_FILE": "/ca.pem", "AWS_ENDPOINT_URL_COGNITO_IDENTITY": "http://x"},
        fallback_after_s=2.0,
    )
    assert options.ca_file == "/ca.pem" and options.cognito_endpoint == "http://x"
    assert options.fallback_after_s == 2.0
    explicit = client_sdk.ClientOptions.from_env({"TIDINGS_CA_FILE": "/ca.pem"}, ca_file="/b")
    assert explicit.ca_file == "/b"  # an explicit argument beats the environment

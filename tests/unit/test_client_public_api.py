"""The client's public surface is explicit, and importing it stays lean (no boto3)."""

from __future__ import annotations

import subprocess
import sys

import client_sdk


def test_all_is_exactly_the_public_names() -> None:
    public = {name for name in dir(client_sdk) if not name.startswith("_")}
    assert set(client_sdk.__all__) == public - {"annotations"}
    assert "Tidings" in client_sdk.__all__ and "AccessDenied" in client_sdk.__all__


def test_importing_the_client_does_not_import_boto3() -> None:
    code = "import sys, client_sdk; print('boto3' in sys.modules, 'botocore' in sys.modules)"
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

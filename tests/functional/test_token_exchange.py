"""The local token exchange service's refusals over a real socket, and the client's container
credentials source reading them. (Issuing credentials, backed by the credentials provider, is
in tests/e2e/test_greengrass_component.py.)"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from client_sdk import ServiceUnavailable, SignInFailed
from client_sdk._iot_credentials import ContainerCredentialSource
from infra.local.awsauth.devices import DeviceCA
from infra.local.greengrass.token_exchange import (
    CREDENTIALS_PATH,
    CoreCertificate,
    TokenExchangeService,
)
from tests.support.devices import issue_device

TOKEN = "component-token-0123456789"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[TokenExchangeService]:
    """A token exchange service whose credentials provider does not answer."""
    ca = DeviceCA.load_or_create(tmp_path / "ca")
    files = issue_device(ca, tmp_path, "core-1")
    core = CoreCertificate("core-1", files.cert_file, files.key_file, ca.cert_file)
    url = f"https://127.0.0.1:{closed_port()}/role-aliases/alias/credentials"
    with TokenExchangeService(core, url, [TOKEN]) as running:
        yield running


def get(service: TokenExchangeService, path: str, token: str | None, method: str = "GET"):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        headers = {} if token is None else {"Authorization": token}
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


@pytest.mark.parametrize("token", [None, "", "component-token-012345678", TOKEN + "x"])
def test_a_token_no_component_holds_is_refused(service: TokenExchangeService, token) -> None:
    status, body = get(service, CREDENTIALS_PATH, token)
    assert status == 403 and "not a component's token" in body["message"]


def test_other_paths_and_methods_are_refused(service: TokenExchangeService) -> None:
    assert get(service, "/2016-11-01/other/", TOKEN)[0] == 404
    status, body = get(service, CREDENTIALS_PATH, TOKEN, method="POST")
    assert status == 405 and body["message"]
    status, body = get(service, CREDENTIALS_PATH, TOKEN, method="BREW")
    assert status == 405 and "GET" in body["message"]


def test_an_unreachable_credentials_provider_is_a_503_that_says_so(
    service: TokenExchangeService,
) -> None:
    status, body = get(service, CREDENTIALS_PATH, TOKEN)
    assert status == 503 and "cannot be reached" in body["message"]
    assert service.fetches == 1


def test_the_client_source_tells_a_refused_token_from_an_outage(
    service: TokenExchangeService,
) -> None:
    refused = ContainerCredentialSource(service.uri, "wrong-token", timeout=10)
    with pytest.raises(SignInFailed, match="token was refused"):
        refused.get()
    assert isinstance(refused.refused, SignInFailed)
    outage = ContainerCredentialSource(service.uri, TOKEN, timeout=10)
    with pytest.raises(ServiceUnavailable, match="cannot be reached"):
        outage.get()
    assert outage.refused is None  # an outage is retried, not a sign-out
    gone = ContainerCredentialSource(f"http://127.0.0.1:{closed_port()}/", TOKEN, timeout=10)
    with pytest.raises(ServiceUnavailable, match="cannot reach"):
        gone.get()

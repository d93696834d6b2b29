"""Slow and silent clients hold only their own connection, never a whole local service.

A TCP connection that never starts TLS, or starts a request and never finishes it, must not
stop anyone else's requests (the API gateway used to run every TLS handshake in its single
accept thread, with no timeout, so one idle socket stopped the whole API).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.local.apigateway.service import ApiGateway, ApiRoute
from infra.local.awsauth.credential_store import CredentialStore
from infra.local.functions.runtime import FunctionPool, FunctionSpec
from infra.local.net.certs import ensure_tls_files


@pytest.fixture(scope="module")
def api(state_dir: Path) -> Iterator[tuple[ApiGateway, Path]]:
    pool = FunctionPool(FunctionSpec("EchoFunction", "tests.support.echo_handler.handler"))
    pool.warm()
    tls = ensure_tls_files(state_dir, "us-east-1")
    gateway = ApiGateway(
        [ApiRoute("POST", "/v1/login", "NONE", pool.invoke)],
        CredentialStore(),
        tls.server_context(),
    )
    gateway.start()
    yield gateway, tls.ca_file
    gateway.stop()
    pool.close()


def login(gateway: ApiGateway, ca_file: Path) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/login", data=b"{}", verify=str(ca_file), timeout=5)


def test_a_connection_that_never_starts_tls_does_not_stop_the_api(api) -> None:
    gateway, ca_file = api
    silent = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(3)]
    try:
        for _ in range(3):
            assert login(gateway, ca_file).status_code == 200
    finally:
        for sock in silent:
            sock.close()


def test_a_half_sent_request_does_not_stop_the_api(api) -> None:
    gateway, ca_file = api
    context = ssl.create_default_context(cafile=str(ca_file))
    raw = socket.create_connection(("127.0.0.1", gateway.port))
    stalled = context.wrap_socket(raw, server_hostname="localhost")
    try:
        stalled.sendall(b"POST /dev/v1/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n")
        assert login(gateway, ca_file).status_code == 200
    finally:
        stalled.close()

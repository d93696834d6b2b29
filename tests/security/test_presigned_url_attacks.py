"""Presigned /mqtt URLs that must not open a WebSocket: each is an HTTP 403 with the
``{"error", "message"}`` body at the handshake, and no upgrade."""

from __future__ import annotations

import datetime
import json
from unittest import mock

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra.local.iot.gateway import Gateway
from tests.support.identities import Identity, new_identity
from tests.support.raw_mqtt import RawClient
from tests.support.real_clients import presigned_mqtt_path


def presigned(
    identity: Identity,
    port: int,
    *,
    region: str = "us-east-1",
    service: str = "iotdevicegateway",
    signed_at: datetime.datetime | None = None,
    expires: int = 300,
) -> str:
    """A /mqtt path presigned with botocore, optionally for another region, service or time."""
    request = AWSRequest(method="GET", url=f"https://localhost:{port}/mqtt")
    credentials = Credentials(identity.access_key, identity.secret_key, identity.token)
    signer = SigV4QueryAuth(credentials, service, region, expires=expires)
    if signed_at is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
            signer.add_auth(request)
    url: str = request.url
    return url[url.index("/mqtt") :]


def refused(gateway: Gateway, path: str) -> dict[str, str]:
    """Open the WebSocket with ``path``; assert a 403 JSON refusal; return its body."""
    client = RawClient(gateway.port, gateway.ca_file, None, path=path)
    try:
        assert client.status == 403, client.response_head
        body = json.loads(client.body)
        assert set(body) == {"error", "message"} and body["message"], body
        return dict(body)
    finally:
        client.close()


def test_the_valid_url_opens_so_the_refusals_below_mean_something(gateway: Gateway):
    identity = new_identity(gateway.credentials)
    client = RawClient(gateway.port, gateway.ca_file, None, path=presigned(identity, gateway.port))
    assert client.status == 101
    client.close()


def test_no_signature_is_refused(gateway: Gateway):
    refused(gateway, "/mqtt")


def test_a_tampered_signature_is_refused(gateway: Gateway):
    identity = new_identity(gateway.credentials)
    path = presigned_mqtt_path(identity, gateway.port)
    tampered = path.replace("X-Amz-Signature=", "X-Amz-Signature=0")[: len(path)]
    assert refused(gateway, tampered)["error"] in {"signature_mismatch", "malformed"}
    # one hex digit flipped in place
    head, _, signature = path.partition("X-Amz-Signature=")
    signature, sep, rest = signature.partition("&")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert refused(gateway, f"{head}X-Amz-Signature={flipped}{sep}{rest}")["error"] == (
        "signature_mismatch"
    )


def test_a_url_signed_long_ago_is_refused(gateway: Gateway):
    identity = new_identity(gateway.credentials)
    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        hours=1
    )
    body = refused(gateway, presigned(identity, gateway.port, signed_at=an_hour_ago))
    assert body["error"] == "request_expired", body


def test_a_url_signed_in_the_future_is_refused(gateway: Gateway):
    identity = new_identity(gateway.credentials)
    later = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(hours=1)
    body = refused(gateway, presigned(identity, gateway.port, signed_at=later))
    assert body["error"] == "request_expired", body


@pytest.mark.parametrize("region", ["eu-west-1", "us-west-2"])
def test_a_url_signed_for_another_region_is_refused(gateway: Gateway, region: str):
    identity = new_identity(gateway.credentials)
    body = refused(gateway, presigned(identity, gateway.port, region=region))
    assert body["error"] == "wrong_region", body
    # the same URL edited to name another region no longer matches its signature
    edited = presigned_mqtt_path(identity, gateway.port).replace("us-east-1", region)
    refused(gateway, edited)


@pytest.mark.parametrize("service", ["execute-api", "s3", "iot", "sts"])
def test_a_url_signed_for_another_service_is_refused(gateway: Gateway, service: str):
    identity = new_identity(gateway.credentials)
    body = refused(gateway, presigned(identity, gateway.port, service=service))
    assert body["error"] == "wrong_service", body

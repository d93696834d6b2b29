"""The X.509 device sign-in, offline: the ``X509`` value and the device file ``tidings devices
add`` writes, the 0.x ``method="x509"`` form, ``things/me`` for a device, and the AWS IoT
credentials provider's answers and renewals (with an injected clock and a fake request)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from client_sdk import (
    X509,
    ClientOptions,
    RateLimited,
    ServiceUnavailable,
    SignInFailed,
    Tidings,
)
from client_sdk import _iot_credentials as iot_credentials
from client_sdk._client import resolve_connect_arguments
from client_sdk._http import HttpResponse
from client_sdk._iot_credentials import DeviceCredentialSource, credentials_from_answer
from client_sdk._signin import login_body
from client_sdk.testing import InMemoryTidings
from infra.local.awsauth.devices import DeviceCA
from tests.support.devices import issue_device

AWS = {
    "endpoint": "a1b2c3-ats.iot.eu-west-1.amazonaws.com",
    "role_alias": "DeviceRoleAlias",
    "credentials_endpoint": "c1d2e3.credentials.iot.eu-west-1.amazonaws.com",
}


def answer(status: int, body: Any, **headers: str) -> HttpResponse:
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


CREDENTIALS = {
    "credentials": {
        "accessKeyId": "ASIAEXAMPLE",
        "secretAccessKey": "secret-key",
        "sessionToken": "session-token",
        "expiration": "2026-11-29T06:00:00Z",
    }
}


@pytest.fixture(scope="module")
def device_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real certificate and key (the TLS context loads them)."""
    directory = tmp_path_factory.mktemp("device")
    files = issue_device(DeviceCA.load_or_create(directory / "ca"), directory, "pump-1")
    return Path(files.cert_file), Path(files.key_file)


# ---------------------------------------------------------------------- the X509 value
def test_an_x509_value_reads_the_region_from_aws_host_names() -> None:
    device = X509("pump.cert.pem", "pump.private.key", "pump-1", **AWS)
    assert device.region == "eu-west-1" and device.port == 8883
    assert device.topic_prefix == "tidings/dev/" and device.ca_file is None
    assert device.credentials_url == (
        "https://c1d2e3.credentials.iot.eu-west-1.amazonaws.com/role-aliases/DeviceRoleAlias"
        "/credentials"
    )
    china = X509("c", "k", "t", **{**AWS, "endpoint": "x-ats.iot.cn-north-1.amazonaws.com.cn"})
    assert china.region == "cn-north-1"


def test_an_x509_value_is_frozen_and_its_repr_shows_file_names_only() -> None:
    device = X509(Path("/certs/pump.cert.pem"), Path("/certs/pump.private.key"), "pump-1", **AWS)
    assert device.cert_file == "/certs/pump.cert.pem"  # paths become text
    with pytest.raises(AttributeError):
        device.thing_name = "other"  # type: ignore[misc]
    assert "key_file='/certs/pump.private.key'" in repr(device)  # a file name, not the key
    assert device == X509("/certs/pump.cert.pem", "/certs/pump.private.key", "pump-1", **AWS)
    with pytest.raises(TypeError, match="does not use /v1/login"):
        login_body(device)


def test_an_x509_value_is_checked_at_once() -> None:
    with pytest.raises(ValueError, match="pass region="):
        X509("c", "k", "t", endpoint="localhost", role_alias="r", credentials_endpoint="lh:1")
    local = X509(
        "c", "k", "t", endpoint="localhost", role_alias="r", credentials_endpoint="lh:1",
        region="us-east-1",
    )  # fmt: skip
    assert local.region == "us-east-1"
    with pytest.raises(ValueError, match="thing_name is empty"):
        X509("c", "k", "", **AWS)
    with pytest.raises(ValueError, match="not a thing name"):
        X509("c", "k", "pump/1", **AWS)
    with pytest.raises(ValueError, match="port"):
        X509("c", "k", "t", **AWS, port=0)
    with pytest.raises(ValueError, match="end with '/'"):
        X509("c", "k", "t", **AWS, topic_prefix="tidings/prod")
    with pytest.raises(TypeError, match="cert_file must be a file name"):
        X509(None, "k", "t", **AWS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="credentials_endpoint is a host name"):
        X509("c", "k", "t", **{**AWS, "credentials_endpoint": "https://h/role-aliases/x"})
    # a URL's scheme is tolerated: the credentials endpoint is a host
    host = X509("c", "k", "t", **{**AWS, "credentials_endpoint": "https://h.example:8443/"})
    assert host.credentials_endpoint == "h.example:8443"
    with pytest.raises(TypeError):
        X509("c", "k", "t", "endpoint", "alias", "creds")  # type: ignore[misc]


def device_file(directory: Path, name: str, **extra: Any) -> Path:
    """What ``tidings devices add NAME --out DIR`` writes as ``DIR/NAME.json``."""
    path = directory / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "thingName": name,
                "certificateId": "ab" * 32,
                "certificateArn": f"arn:aws:iot:us-east-1:123456789012:cert/{'ab' * 32}",
                "policyName": "ThingPolicy",
                "endpoint": "localhost",
                "mqttPort": 48883,
                "wssPort": 48443,
                "roleAlias": "tidings-dev-DeviceRoleAlias",
                "credentialsEndpoint": "localhost:48444",
                **extra,
            }
        )
    )
    return path


def test_from_device_file_reads_what_devices_add_writes(tmp_path: Path) -> None:
    path = device_file(tmp_path, "pump-1")
    (tmp_path / "root-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    device = X509.from_device_file(path, region="us-east-1")
    assert device == X509(
        tmp_path / "pump-1.cert.pem",
        tmp_path / "pump-1.private.key",
        "pump-1",
        endpoint="localhost",
        port=48883,
        role_alias="tidings-dev-DeviceRoleAlias",
        credentials_endpoint="localhost:48444",
        region="us-east-1",
        ca_file=tmp_path / "root-ca.pem",
    )
    elsewhere = X509.from_device_file(
        str(path), "/etc/pump", region="us-east-1", topic_prefix="tidings/prod/", port=443
    )
    assert elsewhere.cert_file == "/etc/pump/pump-1.cert.pem" and elsewhere.ca_file is None
    assert elsewhere.port == 443 and elsewhere.topic_prefix == "tidings/prod/"


def test_from_device_file_takes_region_and_prefix_from_the_file_when_there(
    tmp_path: Path,
) -> None:
    path = device_file(tmp_path, "fan-2", region="eu-west-1", topicPrefix="tidings/prod/")
    device = X509.from_device_file(path)
    assert device.region == "eu-west-1" and device.topic_prefix == "tidings/prod/"
    with pytest.raises(ValueError, match="pass region="):
        X509.from_device_file(device_file(tmp_path, "fan-3"))


def test_from_device_file_refuses_what_is_not_a_device_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a device file"):
        X509.from_device_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        X509.from_device_file(tmp_path / "list.json")
    (tmp_path / "half.json").write_text(json.dumps({"thingName": "x", "endpoint": "e"}))
    with pytest.raises(ValueError, match="has no roleAlias, credentialsEndpoint"):
        X509.from_device_file(tmp_path / "half.json")
    with pytest.raises(FileNotFoundError):
        X509.from_device_file(tmp_path / "missing.json")


# ---------------------------------------------------------------------- connect()'s forms
LEGACY = {
    "cert_file": "c.pem",
    "key_file": "k.pem",
    "thing_name": "pump-1",
    **AWS,
}


def test_the_0x_form_method_x509_becomes_an_x509_value() -> None:
    typed, options, deprecated = resolve_connect_arguments(
        None, None, "x509", {**LEGACY, "port": 443, "ca_file": "/ca.pem"}
    )
    assert deprecated and typed == X509("c.pem", "k.pem", "pump-1", **AWS, port=443)
    assert options.ca_file == "/ca.pem"  # an option, as 0.x took it
    typed, _, _ = resolve_connect_arguments("x509", ClientOptions(), None, LEGACY)
    assert isinstance(typed, X509)
    missing = {k: v for k, v in LEGACY.items() if k != "role_alias"}
    with pytest.raises(TypeError, match="needs role_alias"):
        resolve_connect_arguments(None, None, "x509", missing)
    with pytest.raises(TypeError, match="'secret'"):
        resolve_connect_arguments(None, None, "x509", {**LEGACY, "secret": "s"})


def test_a_typed_x509_takes_no_other_keyword() -> None:
    device = X509("c", "k", "t", **AWS)
    with pytest.raises(TypeError, match="unexpected keyword argument 'thing_name'"):
        resolve_connect_arguments(device, None, None, {"thing_name": "t"})
    typed, _, deprecated = resolve_connect_arguments(device, ClientOptions(), None, {})
    assert typed is device and not deprecated


def test_a_missing_certificate_fails_before_anything_is_sent(tmp_path: Path) -> None:
    device = X509(tmp_path / "no.cert.pem", tmp_path / "no.key", "t", **AWS)
    with warnings.catch_warnings(), pytest.raises(FileNotFoundError):
        warnings.simplefilter("error")
        Tidings.connect("https://api.invalid", device, options=ClientOptions())


def test_a_key_that_is_not_the_certificate_s_is_a_value_error(
    tmp_path: Path, device_files: tuple[Path, Path]
) -> None:
    cert, _key = device_files
    other = issue_device(DeviceCA.load_or_create(tmp_path / "ca"), tmp_path, "other")
    device = X509(cert, other.key_file, "pump-1", **AWS)
    with pytest.raises(ValueError, match="cannot use the certificate"):
        DeviceCredentialSource(device, ca_file=None)


def test_things_me_is_the_device_s_thing() -> None:
    with InMemoryTidings() as tidings:
        tidings.stack.thing_name = "pump-1"
        with tidings.subscribe("things/me/settings", print) as sub:
            assert sub.channel == "things/pump-1/settings"
        with tidings.subscribe("users/me/todos", print) as sub:
            assert sub.channel == f"users/{tidings.identity_id}/todos"
    with InMemoryTidings() as user, user.subscribe("things/me/settings", print) as sub:
        assert sub.channel == "things/me/settings"  # a user is no thing: no expansion


# ---------------------------------------------------------------------- credentials provider
def test_the_credentials_provider_s_answer_is_parsed() -> None:
    creds = credentials_from_answer(answer(200, CREDENTIALS), "pump-1")
    assert (creds.access_key_id, creds.secret_access_key, creds.session_token) == (
        "ASIAEXAMPLE",
        "secret-key",
        "session-token",
    )
    assert creds.expiration == 1795932000.0  # 2026-11-29T06:00:00Z


def test_the_credentials_provider_s_refusals_are_typed() -> None:
    invalid = answer(
        403,
        {"message": "Certificate is invalid on this endpoint"},
        x_amzn_errortype="AccessDeniedException",
    )
    with pytest.raises(SignInFailed, match=r"Certificate is invalid.*AccessDeniedException"):
        credentials_from_answer(invalid, "pump-1")
    with pytest.raises(SignInFailed, match="Role alias does not exist"):
        credentials_from_answer(answer(404, {"message": "Role alias does not exist"}), "p")
    with pytest.raises(RateLimited) as limited:
        credentials_from_answer(answer(429, {"message": "slow down"}, retry_after="7"), "p")
    assert limited.value.retry_after == 7.0
    with pytest.raises(ServiceUnavailable) as failed:
        credentials_from_answer(answer(503, None), "p")
    assert not isinstance(failed.value, SignInFailed)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"credentials": None},
        {"credentials": {**CREDENTIALS["credentials"], "sessionToken": ""}},
        {"credentials": {**CREDENTIALS["credentials"], "expiration": "soon"}},
        "not an object",
    ],
)
def test_an_answer_without_credentials_is_service_unavailable(body: Any) -> None:
    with pytest.raises(ServiceUnavailable, match="has no credentials"):
        credentials_from_answer(answer(200, body), "pump-1")


class FakeProvider:
    """Stands in for the HTTPS request; records what was asked."""

    def __init__(self, *answers: HttpResponse) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        return self.answers.pop(0)


def valid_until(expiration: float) -> HttpResponse:
    raw = {**CREDENTIALS["credentials"], "expiration": expiration}
    return answer(200, {"credentials": raw})


def test_credentials_are_fetched_with_the_certificate_and_renewed_before_expiry(
    monkeypatch: pytest.MonkeyPatch, device_files: tuple[Path, Path]
) -> None:
    cert, key = device_files
    device = X509(cert, key, "pump-1", **AWS)
    now = [1000.0]
    fake = FakeProvider(valid_until(4600.0), valid_until(8200.0))
    monkeypatch.setattr(iot_credentials, "request_json", fake)
    source = DeviceCredentialSource(
        device, ca_file=None, refresh_margin_s=300, clock=lambda: now[0]
    )
    first = source.get()
    assert source.get() is first and source.refreshes == 1 and source.logins == 0
    request = fake.requests[0]
    assert request["method"] == "GET" and request["url"] == device.credentials_url
    assert request["headers"] == {"x-amzn-iot-thingname": "pump-1"}
    assert request["context"].verify_mode.name == "CERT_REQUIRED"
    now[0] = 4299.0
    assert source.get() is first  # 301 s left
    now[0] = 4300.0
    assert source.get().expiration == 8200.0 and source.refreshes == 2


def test_short_lived_credentials_are_renewed_at_half_their_life(
    monkeypatch: pytest.MonkeyPatch, device_files: tuple[Path, Path]
) -> None:
    device = X509(*device_files, "pump-1", **AWS)
    now = [0.0]
    fake = FakeProvider(valid_until(60.0), valid_until(120.0))
    monkeypatch.setattr(iot_credentials, "request_json", fake)
    source = DeviceCredentialSource(
        device, ca_file=None, refresh_margin_s=300, clock=lambda: now[0]
    )
    source.get()
    now[0] = 29.0
    source.get()
    assert len(fake.requests) == 1
    now[0] = 30.0
    assert source.get().expiration == 120.0 and len(fake.requests) == 2


def test_a_refusal_is_remembered_until_credentials_are_issued(
    monkeypatch: pytest.MonkeyPatch, device_files: tuple[Path, Path]
) -> None:
    device = X509(*device_files, "pump-1", **AWS)
    fake = FakeProvider(
        answer(403, {"message": "Certificate is invalid on this endpoint"}),
        answer(429, {"message": "throttled"}),
        valid_until(9e9),
    )
    monkeypatch.setattr(iot_credentials, "request_json", fake)
    source = DeviceCredentialSource(device, ca_file=None)
    with pytest.raises(SignInFailed):
        source.get()
    assert source.refused is not None
    with pytest.raises(RateLimited):
        source.get()
    assert source.refused is not None  # a throttle says nothing new
    source.get()
    assert source.refused is None
    source.invalidate()
    with pytest.raises(IndexError):  # invalidated: the next get() asks again
        source.get()


def test_an_unreachable_provider_is_service_unavailable(
    monkeypatch: pytest.MonkeyPatch, device_files: tuple[Path, Path]
) -> None:
    device = X509(*device_files, "pump-1", **AWS)

    def refused(*_args: Any, **_kwargs: Any) -> HttpResponse:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(iot_credentials, "request_json", refused)
    source = DeviceCredentialSource(device, ca_file=None)
    with pytest.raises(ServiceUnavailable, match="cannot reach") as caught:
        source.get()
    assert not isinstance(caught.value, SignInFailed) and source.refused is None

"""The local AWS IoT credentials provider over real mutual TLS, with curl and requests."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.awsauth.devices import Device, DeviceCA, certificate_id
from infra.local.awsauth.iam_policy import is_allowed
from infra.local.awsauth.sigv4 import verify_authorization_header
from infra.local.identity.credentials_provider import CredentialsProvider, RoleAlias
from infra.local.net.certs import TlsFiles, ensure_tls_files

REGION = "us-east-1"
ACCOUNT = "123456789012"
ALIAS = "TidingsDeviceAlias"
ROLE_NAME = "tidings-device-role"
API = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api/dev/GET"
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "execute-api:Invoke",
            "Resource": [
                API + "/things/${credentials-iot:ThingName}/*",
                API + "/certificates/${credentials-iot:AwsCertificateId}",
            ],
        }
    ],
}


def alias_arn(alias: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:rolealias/{alias}"


def assume_policy(resource: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate", "Resource": resource}
        ],
    }


THING_VARIABLE = "${iot:Connection.Thing.ThingName}"
CONNECT_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
}


class MemoryDevices:
    """A DeviceDirectory in memory: DER → Device."""

    def __init__(self) -> None:
        self.by_der: dict[bytes, Device] = {}

    def lookup(self, der: bytes) -> Device | None:
        return self.by_der.get(der)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        pass


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    certificate_id: str

    @property
    def pair(self) -> tuple[str, str]:
        return str(self.cert), str(self.key)


@dataclass
class Env:
    provider: CredentialsProvider
    store: CredentialStore
    tls: TlsFiles
    certs: dict[str, Cert]

    @property
    def ca(self) -> str:
        return str(self.tls.ca_file)

    def url(self, alias: str = ALIAS) -> str:
        return f"{self.provider.url}/role-aliases/{alias}/credentials"

    def get(
        self, who: str = "thing1", alias: str = ALIAS, thing: str | None = "thing1", **kw: Any
    ) -> requests.Response:
        headers = {} if thing is None else {"x-amzn-iot-thingname": thing}
        return requests.get(
            self.url(alias),
            cert=self.certs[who].pair,
            verify=self.ca,
            headers=headers,
            timeout=20,
            **kw,
        )


def _write(directory: Path, name: str, pem: tuple[str, str]) -> Cert:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_text(pem[0])
    key.write_text(pem[1])
    key.chmod(0o600)
    der = x509.load_pem_x509_certificate(pem[0].encode()).public_bytes(serialization.Encoding.DER)
    return Cert(cert, key, certificate_id(der))


def _der(cert: Cert) -> bytes:
    loaded = x509.load_pem_x509_certificate(cert.cert.read_bytes())
    return loaded.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("credentials-provider")
    tls = ensure_tls_files(root / "state", REGION)
    device_ca = DeviceCA.load_or_create(root / "state")
    other_ca = DeviceCA.load_or_create(root / "other")
    certs = {
        name: _write(root, name, device_ca.issue(name))
        for name in (
            "thing1",
            "inactive",
            "nopolicy",
            "unregistered",
            "wildcard",
            "cn-ok",
            "cn-wrong",
            "thingvar",
        )
    }
    certs["other_ca"] = _write(root, "other_ca", other_ca.issue("thing1"))
    certs["expired"] = _write(root, "expired", device_ca.issue("expired", days=-1))
    devices = MemoryDevices()
    cn_policy = assume_policy(alias_arn(ALIAS))
    cn_policy["Statement"][0]["Condition"] = {
        "StringEquals": {"iot:Certificate.Subject.CommonName": "cn-ok"}
    }

    def register(name: str, status: str, things: tuple[str, ...], policy: dict[str, Any]) -> None:
        cert = certs[name]
        devices.by_der[_der(cert)] = Device(
            cert.certificate_id,
            f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/{cert.certificate_id}",
            status,
            things,
            (policy,),
            common_name=name,
        )

    register("thing1", "ACTIVE", ("thing1",), assume_policy(alias_arn(ALIAS)))
    register("inactive", "INACTIVE", ("thing1",), assume_policy(alias_arn(ALIAS)))
    register("nopolicy", "ACTIVE", ("thing1",), CONNECT_ONLY)
    register("wildcard", "ACTIVE", ("thing2",), assume_policy(alias_arn("*")))
    register("expired", "ACTIVE", ("thing1",), assume_policy(alias_arn(ALIAS)))
    for name in ("cn-ok", "cn-wrong"):
        register(name, "ACTIVE", ("thing1",), cn_policy)
    # an IoT policy naming the alias after the thing: AWS resolves no thing variable here
    register("thingvar", "ACTIVE", ("thing3",), assume_policy(alias_arn(THING_VARIABLE)))
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
    aliases = {
        ALIAS: RoleAlias(role_arn, [ROLE_POLICY]),
        "Long": RoleAlias(role_arn, [ROLE_POLICY], duration_s=7200, role_max_session_s=43200),
        "TooLong": RoleAlias(role_arn, [ROLE_POLICY], duration_s=7200),
        "thing3": RoleAlias(role_arn, [ROLE_POLICY]),
        "NoRole": RoleAlias(f"arn:aws:iam::{ACCOUNT}:user/someone", [ROLE_POLICY]),
    }
    store = CredentialStore()
    provider = CredentialsProvider(
        devices,
        aliases,
        store,
        tls,
        device_ca.cert_file,
        region=REGION,
        account_id=ACCOUNT,
        request_timeout_s=3.0,
    )
    with provider:
        yield Env(provider, store, tls, certs)


def _assert_good(env: Env) -> None:
    response = env.get()
    assert response.status_code == 200, response.text


def _signed_headers(credentials: dict[str, str], url: str) -> dict[str, str]:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(
        Credentials(
            credentials["accessKeyId"],
            credentials["secretAccessKey"],
            credentials["sessionToken"],
        ),
        "execute-api",
        REGION,
    ).add_auth(request)
    return {**dict(request.headers.items()), "Host": "localhost"}  # as an HTTP client sends


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _exchange(env: Env, raw_request: bytes) -> bytes:
    """Send ``raw_request`` over mutual TLS as thing1 and read until the server closes."""
    cert = env.certs["thing1"]
    context = ssl.create_default_context(cafile=env.ca)
    context.load_cert_chain(cert.cert, cert.key)
    with (
        socket.create_connection(("127.0.0.1", env.provider.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(raw_request)
        return _read_all(tls)


# --- the good path, with curl ---------------------------------------------------------------


def test_curl_gets_credentials_that_verify_and_resolve_the_thing_name(env: Env) -> None:
    cert = env.certs["thing1"]
    before = time.time()
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--cert",
            str(cert.cert),
            "--key",
            str(cert.key),
            "--cacert",
            env.ca,
            "-H",
            "x-amzn-iot-thingname: thing1",
            "-w",
            "\n%{http_code}",
            f"https://127.0.0.1:{env.provider.port}/role-aliases/{ALIAS}/credentials",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "200", done.stdout + done.stderr
    answer = json.loads(body)
    assert list(answer) == ["credentials"]
    credentials = answer["credentials"]
    assert set(credentials) == {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", credentials["accessKeyId"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", credentials["expiration"])
    expires = datetime.fromisoformat(credentials["expiration"].replace("Z", "+00:00"))
    assert before + 3600 - 2 <= expires.timestamp() <= time.time() + 3600 + 1

    stored = env.store.get(credentials["accessKeyId"])
    assert stored is not None
    assert stored.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/{cert.certificate_id}"
    assert stored.variables == {
        "credentials-iot:ThingName": "thing1",
        "credentials-iot:AwsCertificateId": cert.certificate_id,
    }

    # the credentials sign a request that the local SigV4 verifier accepts
    url = "https://localhost/dev/things/thing1/channels"
    verified = verify_authorization_header(
        "GET",
        "/dev/things/thing1/channels",
        "",
        list(_signed_headers(credentials, url).items()),
        b"",
        lookup=env.store.get,
        region=REGION,
        services=("execute-api",),
    )
    signer = verified.credential
    assert signer.access_key_id == credentials["accessKeyId"]

    # ${credentials-iot:ThingName} and ${credentials-iot:AwsCertificateId} resolve
    def invoke(resource: str) -> bool:
        return is_allowed(
            signer.policy_sets, "execute-api:Invoke", f"{API}/{resource}", signer.variables
        )

    assert invoke("things/thing1/channels")
    assert not invoke("things/thing2/channels")
    assert invoke(f"certificates/{cert.certificate_id}")
    assert not invoke("certificates/" + "0" * 64)


def test_without_a_thing_name_the_credentials_carry_only_the_certificate_id(env: Env) -> None:
    """AWS: the header is needed only when policies use the thing's variables."""
    response = env.get(thing=None)
    assert response.status_code == 200, response.text
    stored = env.store.get(response.json()["credentials"]["accessKeyId"])
    assert stored is not None
    cert_id = env.certs["thing1"].certificate_id
    assert stored.variables == {"credentials-iot:AwsCertificateId": cert_id}
    assert not is_allowed(
        stored.policy_sets, "execute-api:Invoke", f"{API}/things/thing1/x", stored.variables
    )
    assert is_allowed(
        stored.policy_sets, "execute-api:Invoke", f"{API}/certificates/{cert_id}", stored.variables
    )


def test_duration_is_the_role_alias_duration(env: Env) -> None:
    before = time.time()
    response = env.get(who="wildcard", thing="thing2", alias="Long")
    assert response.status_code == 200, response.text
    expiration = response.json()["credentials"]["expiration"]
    expires = datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp()
    assert before + 7200 - 2 <= expires <= time.time() + 7200 + 1
    stored = env.store.get(response.json()["credentials"]["accessKeyId"])
    assert stored is not None and stored.expiration == expires


def test_each_request_gets_new_credentials_and_a_connection_serves_several(env: Env) -> None:
    with requests.Session() as session:
        session.cert = env.certs["thing1"].pair
        headers = {"x-amzn-iot-thingname": "thing1"}
        keys = {
            session.get(env.url(), headers=headers, verify=env.ca, timeout=20).json()[
                "credentials"
            ]["accessKeyId"]
            for _ in range(3)
        }
    assert len(keys) == 3


# --- AWS's refusals -------------------------------------------------------------------------

REFUSALS = [
    pytest.param(
        {"who": "unregistered"},
        403,
        "AccessDeniedException",
        "Certificate is invalid on this endpoint",
        id="unknown-certificate",
    ),
    pytest.param(
        {"who": "inactive"},
        403,
        "AccessDeniedException",
        "Certificate is invalid on this endpoint",
        id="inactive-certificate",
    ),
    pytest.param(
        {"thing": "thing2"},
        403,
        "AccessDeniedException",
        "Invalid thing name passed",
        id="thing-not-attached",
    ),
    pytest.param(
        {"thing": ""}, 403, "AccessDeniedException", "Invalid thing name passed", id="empty-thing"
    ),
    pytest.param(
        {"thing": "thing2", "alias": "NoSuchAlias"},
        403,
        "AccessDeniedException",
        "Invalid thing name passed",
        id="thing-checked-before-alias",
    ),
    pytest.param(
        {"who": "nopolicy"},
        403,
        "AccessDeniedException",
        "Access Denied",
        id="policy-lacks-assume-role",
    ),
    pytest.param(
        {"alias": "NoSuchAlias"},
        403,
        "AccessDeniedException",
        "Access Denied",
        id="policy-checked-before-alias",
    ),
    pytest.param(
        {"who": "wildcard", "thing": "thing2", "alias": "NoSuchAlias"},
        404,
        "ResourceNotFoundException",
        "Role alias does not exist",
        id="unknown-alias",
    ),
    pytest.param(
        {"who": "wildcard", "thing": "thing2", "alias": "NoRole"},
        400,
        "InvalidRequestException",
        "Unable to assume the role, or the role to assume does not exist",
        id="alias-role-is-no-role",
    ),
    pytest.param(
        {"who": "wildcard", "thing": "thing2", "alias": "TooLong"},
        400,
        "InvalidRequestException",
        "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role",
        id="duration-over-role-maximum",
    ),
]


@pytest.mark.parametrize(("request_kw", "status", "error_type", "message"), REFUSALS)
def test_refusals_in_aws_shape(
    env: Env, request_kw: dict[str, Any], status: int, error_type: str, message: str
) -> None:
    keys = len(env.store)
    response = env.get(**request_kw)
    assert response.status_code == status, response.text
    assert response.json() == {"message": message}
    assert response.headers["x-amzn-ErrorType"] == error_type
    assert response.headers["x-amzn-RequestId"]
    assert response.headers["Content-Type"] == "application/json"
    assert len(env.store) == keys  # nothing minted
    _assert_good(env)


def test_iot_policies_see_the_certificate_common_name_but_no_thing_variables(env: Env) -> None:
    assert env.get(who="cn-ok").status_code == 200
    assert env.get(who="cn-wrong").json() == {"message": "Access Denied"}
    refused = env.get(who="thingvar", thing="thing3", alias="thing3")
    assert refused.status_code == 403
    assert refused.json() == {"message": "Access Denied"}


def test_a_wildcard_policy_and_another_attached_thing_get_credentials(env: Env) -> None:
    response = env.get(who="wildcard", thing="thing2")
    assert response.status_code == 200, response.text


def test_two_different_thing_names_are_refused(env: Env) -> None:
    answer = _exchange(
        env,
        f"GET /role-aliases/{ALIAS}/credentials HTTP/1.1\r\nHost: localhost\r\n"
        "x-amzn-iot-thingname: thing1\r\nx-amzn-iot-thingname: thing2\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert answer.endswith(b'{"message":"Invalid thing name passed"}')


# --- the TLS handshake ----------------------------------------------------------------------


@pytest.mark.parametrize("who", ["other_ca", "expired", None], ids=["other-ca", "expired", "none"])
def test_handshake_refuses_certificates_the_device_ca_did_not_sign_or_that_expired(
    env: Env, who: str | None
) -> None:
    cert = env.certs[who].pair if who is not None else None
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(
            env.url(),
            cert=cert,
            verify=env.ca,
            headers={"x-amzn-iot-thingname": "thing1"},
            timeout=20,
        )
    _assert_good(env)


def test_curl_without_a_client_certificate_fails_the_handshake(env: Env) -> None:
    done = subprocess.run(
        ["curl", "-sS", "--cacert", env.ca, env.url()],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0  # curl reports the TLS alert (exit 35 or 56)
    _assert_good(env)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "PATCH", "BREW"])
def test_other_methods_are_405(env: Env, method: str) -> None:
    response = requests.request(
        method,
        env.url(),
        cert=env.certs["thing1"].pair,
        verify=env.ca,
        headers={"x-amzn-iot-thingname": "thing1"},
        timeout=20,
    )
    assert response.status_code == 405
    assert response.headers["x-amzn-ErrorType"] == "MethodNotAllowedException"
    if method != "HEAD":
        assert "use GET" in response.json()["message"]
    _assert_good(env)


@pytest.mark.parametrize(
    "path",
    ["/", "/role-aliases/x", "/role-aliases//credentials", "/role-aliases/a/b/credentials"],
)
def test_unknown_paths_are_404(env: Env, path: str) -> None:
    response = requests.get(
        env.provider.url + path, cert=env.certs["thing1"].pair, verify=env.ca, timeout=20
    )
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert "GET /role-aliases/<role alias>/credentials" in response.json()["message"]
    _assert_good(env)


def test_oversized_headers_are_431(env: Env) -> None:
    response = env.get(thing="t" * 70000)
    assert response.status_code == 431
    assert response.headers["x-amzn-ErrorType"] == "RequestHeaderFieldsTooLargeException"
    assert response.json()["message"]
    many = {f"x-h{i}": "v" for i in range(120)}
    response = requests.get(
        env.url(), cert=env.certs["thing1"].pair, verify=env.ca, headers=many, timeout=20
    )
    assert response.status_code == 431
    answer = _exchange(env, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert b"RequestUriTooLongException" in answer
    _assert_good(env)


def test_a_body_too_large_for_a_get_is_413(env: Env) -> None:
    answer = _exchange(
        env,
        f"GET /role-aliases/{ALIAS}/credentials HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Length: 100000\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"x-amzn-ErrorType: RequestEntityTooLargeException" in answer
    _assert_good(env)


@pytest.mark.parametrize(
    "payload",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 1000, b""],
    ids=["plain-http", "broken-hello", "zeros", "silence"],
)
def test_garbage_instead_of_tls_is_dropped(env: Env, payload: bytes) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", env.provider.port), timeout=10) as raw:
        raw.sendall(payload)
        if not payload:
            raw.shutdown(socket.SHUT_WR)
        answer = _read_all(raw)
    assert b"credentials" not in answer
    assert time.monotonic() - started < 8
    _assert_good(env)


def test_a_stalled_client_is_cut_and_others_are_served_meanwhile(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.provider.port), timeout=10) as stalled:
        _assert_good(env)  # the silent connection holds only its own thread
        started = time.monotonic()
        assert _read_all(stalled) == b""  # handshake timeout (3 s here) closes it
        assert time.monotonic() - started < 8


def test_role_alias_duration_bounds() -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:role/r"
    for bad in (899, 43201):
        with pytest.raises(ValueError, match="900-43200"):
            RoleAlias(arn, [], duration_s=bad)
    assert RoleAlias(arn, []).duration_s == 3600


def test_stopped_provider_refuses_connections(env: Env, tmp_path: Path) -> None:
    provider = CredentialsProvider(
        MemoryDevices(),
        {},
        CredentialStore(),
        env.tls,
        DeviceCA.load_or_create(tmp_path).cert_file,
    )
    with pytest.raises(RuntimeError):
        _ = provider.port
    with provider:
        port = provider.port
        assert provider.endpoint == f"localhost:{port}"
    provider.stop()  # twice is harmless
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass

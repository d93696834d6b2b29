"""The differential test of the device-CA fix (``infra.local.motohost.fixes.iot_device_ca``).

The same IoT calls go to the local stack's moto process (``infra.local.motohost.process``,
every fix applied, ``TIDINGS_DEVICE_CA_DIR`` naming a device CA) and to moto as released
(``python -m moto.server``): the first answers as AWS IoT does (the certificate chains to the
CA that signs device certificates, its id is the SHA-256 of its DER, its validity its own),
moto as released does not.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from infra.local.awsauth.devices import DeviceCA, certificate_id
from infra.local.motohost.fixes.iot_device_ca import AWS_IOT_COMMON_NAME, DEVICE_CA_DIR_ENV
from tests.functional.test_moto_patches import wait_until_serving
from tests.support.moto_server import free_port

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@dataclass
class Motos:
    patched: str
    plain: str
    ca: DeviceCA


def client(url: str) -> Any:
    return boto3.client(
        "iot",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def motos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Motos]:
    ca = DeviceCA.load_or_create(tmp_path_factory.mktemp("device-ca"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    patched = subprocess.Popen(
        [sys.executable, "-m", "infra.local.motohost.process", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**env, DEVICE_CA_DIR_ENV: str(ca.cert_file.parent)},
    )
    port = free_port()
    plain = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    try:
        assert patched.stdout is not None
        line = patched.stdout.readline().strip()
        assert line.startswith("READY "), line
        plain_url = f"http://127.0.0.1:{port}"
        wait_until_serving(plain_url)
        yield Motos(f"http://127.0.0.1:{line.split()[1]}", plain_url, ca)
    finally:
        for process in (patched, plain):
            process.terminate()
            process.wait(timeout=10)


def der_of(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def signed_by(certificate: x509.Certificate, ca: DeviceCA) -> bool:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_file.read_bytes())
    if certificate.issuer != ca_cert.subject:
        return False
    try:
        certificate.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError):
        return False
    return True


def test_create_keys_and_certificate_signs_with_the_device_ca_and_names_it_by_its_der(
    motos: Motos,
) -> None:
    """``apply_iot_device_ca_fix``: AWS IoT's certificate, key pair and id; moto's are not."""
    answers = {
        url: client(url).create_keys_and_certificate(setAsActive=True)
        for url in (motos.patched, motos.plain)
    }
    for answer in answers.values():
        assert set(answer) >= {"certificateArn", "certificateId", "certificatePem", "keyPair"}
        assert set(answer["keyPair"]) == {"PublicKey", "PrivateKey"}

    patched = answers[motos.patched]
    certificate = x509.load_pem_x509_certificate(patched["certificatePem"].encode())
    assert signed_by(certificate, motos.ca)
    assert certificate.subject.rfc4514_string() == f"CN={AWS_IOT_COMMON_NAME}"
    der = der_of(patched["certificatePem"])
    assert patched["certificateId"] == certificate_id(der)
    assert patched["certificateArn"] == (
        f"arn:aws:iot:{REGION}:123456789012:cert/{patched['certificateId']}"
    )
    private_key: Any = serialization.load_pem_private_key(
        patched["keyPair"]["PrivateKey"].encode(), None
    )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public = private_key.public_key().public_bytes(serialization.Encoding.PEM, spki)
    assert patched["keyPair"]["PublicKey"].encode() == public
    assert certificate.public_key().public_bytes(serialization.Encoding.PEM, spki) == public
    assert patched["keyPair"]["PrivateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert private_key.key_size == 2048

    plain = answers[motos.plain]
    plain_certificate = x509.load_pem_x509_certificate(plain["certificatePem"].encode())
    assert not signed_by(plain_certificate, motos.ca)  # moto's own throwaway issuer
    assert plain["certificateId"] != certificate_id(der_of(plain["certificatePem"]))


def test_describe_certificate_answers_the_certificates_id_pem_and_validity(
    motos: Motos,
) -> None:
    """``apply_iot_device_ca_fix``: DescribeCertificate finds the certificate by the DER id
    and reports the certificate's own validity (moto: yesterday to tomorrow)."""
    iot = client(motos.patched)
    made = iot.create_keys_and_certificate(setAsActive=False)
    description = iot.describe_certificate(certificateId=made["certificateId"])[
        "certificateDescription"
    ]
    certificate = x509.load_pem_x509_certificate(made["certificatePem"].encode())
    assert description["status"] == "INACTIVE"
    assert description["certificatePem"] == made["certificatePem"]
    assert description["certificateArn"] == made["certificateArn"]
    assert description["validity"]["notAfter"] == certificate.not_valid_after_utc
    assert description["validity"]["notBefore"] == certificate.not_valid_before_utc
    assert certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > (
        datetime.timedelta(days=365 * 10)
    )


def test_a_registered_certificate_is_named_by_its_der_as_on_aws(
    motos: Motos, tmp_path: Path
) -> None:
    """``apply_iot_device_ca_fix``: RegisterCertificateWithoutCA's id is AWS's on the patched
    moto, the SHA-256 of the PEM text on moto as released; a thing and a policy attach to it
    by its ARN on both."""
    other_ca = DeviceCA.load_or_create(tmp_path)
    pem, _ = other_ca.issue("registered-device")
    expected = certificate_id(der_of(pem))
    ids = {}
    for url in (motos.patched, motos.plain):
        iot = client(url)
        answer = iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")
        ids[url] = answer["certificateId"]
        iot.create_thing(thingName=f"registered-{len(ids)}")
        iot.attach_thing_principal(
            thingName=f"registered-{len(ids)}", principal=answer["certificateArn"]
        )
        things = iot.list_principal_things(principal=answer["certificateArn"])["things"]
        assert things == [f"registered-{len(ids)}"]
    assert ids[motos.patched] == expected
    assert ids[motos.plain] != expected


def test_the_device_ca_key_is_an_ec_key_kept_by_its_owner_only(motos: Motos) -> None:
    """The CA the fix signs with (``DeviceCA``): its key file is 0600, its certificate a CA."""
    assert motos.ca.key_file.stat().st_mode & 0o777 == 0o600
    ca_cert = x509.load_pem_x509_certificate(motos.ca.cert_file.read_bytes())
    assert isinstance(ca_cert.public_key(), ec.EllipticCurvePublicKey)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

"""X.509 devices: the certificates the local stack issues, and who a presented one belongs to.

On AWS a device holds a certificate that AWS IoT issued (``CreateKeysAndCertificate``: signed
by a CA only Amazon holds) or that was registered; the certificate is ``ACTIVE``, ``INACTIVE``
or ``REVOKED``, things are attached to it, and IoT policies are attached to it. AWS IoT Core
(MQTT over mutual TLS) and the AWS IoT credentials provider both start from the certificate
the client presented in the TLS handshake.

Locally the same facts live in the IoT control plane (moto, with the stack's fix that makes
``CreateKeysAndCertificate`` sign with :class:`DeviceCA`), and the services that accept device
certificates (the gateway's mutual-TLS listeners, the credentials provider) ask a
:class:`DeviceDirectory` about the certificate they were shown:

- :class:`DeviceCA` — the CA that signs device certificates. Its key stays in the stack's state
  directory (``device-ca.key``, mode 0600); servers that accept device certificates trust its
  certificate (``device-ca.pem``) for client authentication only. It is not the CA devices
  trust to verify the servers (that is the stack's server CA, ``ca.pem``, which plays
  AmazonRootCA1's part).
- :func:`certificate_id` — AWS IoT's ``certificateId``: the SHA-256 of the certificate's DER,
  in lowercase hex (64 characters).
- :class:`Device` — what the directory knows about one certificate.
- :class:`DeviceDirectory` — the protocol the services use: ``lookup(der)`` and
  ``add_listener(fn)`` (called with a certificate id whose status, things or policies changed,
  so a service can close the connections that certificate holds).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ACTIVE",
    "Device",
    "DeviceCA",
    "DeviceDirectory",
    "PeekingDeviceDirectory",
    "certificate_id",
]

ACTIVE = "ACTIVE"
"""The only certificate status AWS IoT lets connect (others: INACTIVE, REVOKED, ...)."""


def certificate_id(der: bytes) -> str:
    """AWS IoT's ``certificateId`` of a certificate: SHA-256 of its DER, lowercase hex."""
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Device:
    """One registered certificate, as the IoT control plane describes it."""

    certificate_id: str
    certificate_arn: str
    status: str
    """``ACTIVE``, ``INACTIVE``, ``REVOKED`` (or another status AWS IoT knows)."""
    things: tuple[str, ...]
    """The things attached to the certificate (``iot:Connection.Thing.ThingName`` is the
    client id's thing among them, when the client id names one)."""
    policies: tuple[Mapping[str, Any], ...]
    """The IoT policy documents attached to the certificate."""
    common_name: str = ""
    """The certificate subject's CN (``iot:Certificate.Subject.CommonName``)."""

    @property
    def active(self) -> bool:
        """Whether AWS IoT would let it connect."""
        return self.status == ACTIVE


class DeviceDirectory(Protocol):
    """Who a presented certificate belongs to (see the module doc)."""

    def lookup(self, der: bytes) -> Device | None:
        """The registered certificate with this DER, or None when it is not registered."""
        ...

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(certificate_id)`` whenever that certificate's status, things or
        policies changed (or it was deleted)."""
        ...


class PeekingDeviceDirectory(DeviceDirectory, Protocol):
    """A directory that can also answer without I/O when it already knows (its cache): the
    gateway then identifies a device on its own loop instead of a thread hop per handshake."""

    def peek(self, der: bytes) -> tuple[bool, Device | None]:
        """``(True, lookup(der))`` when that needs no I/O; ``(False, None)`` otherwise."""
        ...


@dataclass(frozen=True)
class DeviceCA:
    """The CA that signs device certificates; only the stack holds its key."""

    cert_file: Path
    key_file: Path

    @classmethod
    def load_or_create(cls, directory: Path) -> DeviceCA:
        """The CA kept in ``directory`` (``device-ca.pem``, ``device-ca.key``), made on first
        use: an EC P-256 key, a self-signed CA certificate valid for 10 years."""
        cert_file = directory / "device-ca.pem"
        key_file = directory / "device-ca.key"
        if cert_file.is_file() and key_file.is_file():
            return cls(cert_file, key_file)
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tidings local stack"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Tidings local device CA"),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(cert_file, key_file)

    def issue(self, common_name: str, *, days: float = 365 * 30) -> tuple[str, str]:
        """A new key pair and a client certificate for it signed by this CA, as
        ``CreateKeysAndCertificate`` makes them (RSA 2048, as AWS IoT's); ``(certificate PEM,
        private key PEM)``. ``days`` may be negative or tiny for tests of expired
        certificates."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        ca_key: Any = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(minutes=5)
        end = now + datetime.timedelta(days=days)
        if end <= start:
            start = end - datetime.timedelta(days=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return (
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
        )

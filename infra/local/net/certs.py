"""A local certificate authority and the server certificate the local endpoints present.

Real clients verify the server's certificate and host name, so the local stack creates its own
CA on first start and a server certificate whose SANs cover ``localhost``, ``127.0.0.1`` and an
AWS-style IoT endpoint name (AWSIoTPythonSDK only accepts ``*.iot.<region>.amazonaws.*``).
Clients are pointed at the CA file; nothing is added to the system trust store.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"


def aws_style_iot_host(region: str) -> str:
    """The AWS-looking host name the server certificate also carries."""
    return f"local-ats.iot.{region}.amazonaws.com"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the local CA and the server certificate/key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context for the local endpoints (TLS 1.2+)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        context.options |= ssl.OP_NO_COMPRESSION
        return context

    def mutual_tls_context(self, client_ca_file: str | Path) -> ssl.SSLContext:
        """:meth:`server_context` that also requires a client certificate chaining to
        ``client_ca_file`` (the device CA: the gateway's MQTT port, the credentials provider)."""
        context = self.server_context()
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca_file))
        return context

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts only the local CA (for tests and tools)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def ensure_tls_files(state_dir: str | Path, region: str) -> TlsFiles:
    """Create the CA and server certificate in ``state_dir`` unless they already exist.

    An existing server certificate is reused only when it still covers the names required for
    ``region`` and is valid for at least another day; otherwise it is issued again from the
    same CA, so clients that already trust the CA keep working.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_file=directory / CA_FILE,
        cert_file=directory / SERVER_CERT_FILE,
        key_file=directory / SERVER_KEY_FILE,
    )
    ca_key_path = directory / CA_KEY_FILE
    if files.ca_file.exists() and ca_key_path.exists():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path} is not an EC key; delete {directory} to start over")
    else:
        ca_key, ca_cert = _new_ca()
        _write_private(ca_key_path, _key_pem(ca_key))
        files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    names = ("localhost", aws_style_iot_host(region))
    if not _server_cert_is_usable(files, names):
        key, cert = _new_server_cert(ca_key, ca_cert, names)
        _write_private(files.key_file, _key_pem(key))
        files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tidings local CA")])
    now = _now()
    cert = (
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
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: tuple[str, ...]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _server_cert_is_usable(files: TlsFiles, names: tuple[str, ...]) -> bool:
    if not (files.cert_file.exists() and files.key_file.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    present = set(sans.get_values_for_type(x509.DNSName))
    fresh = cert.not_valid_after_utc - _now() > datetime.timedelta(days=1)
    return set(names) <= present and fresh and cert.issuer == ca_cert.subject


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)

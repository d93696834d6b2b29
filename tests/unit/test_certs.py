"""The local CA and server certificate."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from infra.local.net.certs import aws_style_iot_host, ensure_tls_files


def test_certificate_names_and_reuse(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, "eu-west-1")
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", aws_style_iot_host("eu-west-1")} <= set(
        sans.get_values_for_type(x509.DNSName)
    )
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    before = files.cert_file.read_bytes()
    assert ensure_tls_files(tmp_path, "eu-west-1").cert_file.read_bytes() == before
    # a new region needs a new server certificate from the same CA
    ca = files.ca_file.read_bytes()
    again = ensure_tls_files(tmp_path, "us-west-2")
    assert again.cert_file.read_bytes() != before and again.ca_file.read_bytes() == ca
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0

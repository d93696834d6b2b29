"""IoT certificates as AWS makes them: signed by the stack's device CA, named by their DER.

moto 5.2.5's ``CreateKeysAndCertificate`` signs each certificate with a throwaway key of its
own (issuer ``CN=Moto``, so nothing can verify the chain), and names every certificate
(``certificateId``, the end of ``certificateArn``) by the SHA-256 of its PEM text; its
``DescribeCertificate`` reports a validity of "yesterday to tomorrow" whatever the
certificate says. AWS IoT signs the certificates it creates with a CA only Amazon holds,
names a certificate by the SHA-256 of its DER (lowercase hex), and reports the certificate's
own ``notBefore``/``notAfter``.

The fix (in the local stack's moto process):

- ``CreateKeysAndCertificate`` issues the certificate with the stack's
  :class:`~infra.local.awsauth.devices.DeviceCA` (subject ``CN=AWS IoT Certificate``, an RSA
  2048 key, as AWS's) when :data:`DEVICE_CA_DIR_ENV` names the folder that holds it (the
  stack sets it when it starts the process); the answer keeps AWS's shape (``certificateArn``,
  ``certificateId``, ``certificatePem``, ``keyPair.PublicKey``, ``keyPair.PrivateKey``).
  Without the variable (a bare moto) the certificate is moto's own.
- every certificate moto holds (created, registered, CA) is named by
  :func:`~infra.local.awsauth.devices.certificate_id` of its DER, and its validity is read
  from it; a PEM that does not parse (moto's tests register such text) keeps moto's name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infra.local.awsauth.devices import DeviceCA, certificate_id

__all__ = ["AWS_IOT_COMMON_NAME", "DEVICE_CA_DIR_ENV", "apply", "apply_iot_device_ca_fix"]

DEVICE_CA_DIR_ENV = "TIDINGS_DEVICE_CA_DIR"
"""The folder of the stack's device CA (``device-ca.pem``, ``device-ca.key``), set by the
stack in the moto process's environment."""

AWS_IOT_COMMON_NAME = "AWS IoT Certificate"
"""The subject AWS IoT gives the certificates ``CreateKeysAndCertificate`` makes."""


def _device_ca() -> DeviceCA | None:
    directory = os.environ.get(DEVICE_CA_DIR_ENV)
    return DeviceCA.load_or_create(Path(directory)) if directory else None


def _parsed(certificate_pem: str) -> Any:
    """The certificate, or None when the text is not a PEM certificate."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(certificate_pem.encode("utf-8"))
    except (ValueError, TypeError):
        return None


def apply_iot_device_ca_fix() -> None:
    """``CreateKeysAndCertificate`` signs with the stack's device CA; certificates are named by
    the SHA-256 of their DER and report their own validity, as on AWS (see the module doc)."""
    from cryptography.hazmat.primitives import serialization
    from moto.iot import models as iot_models

    certificate_class: Any = iot_models.FakeCertificate
    backend: Any = iot_models.IoTBackend
    if getattr(backend, "_tidings_device_ca_fixed", False):
        return
    original_init = certificate_class.__init__
    original_create = backend.create_keys_and_certificate

    def init(self: Any, certificate_pem: str, *args: Any, **kwargs: Any) -> None:
        original_init(self, certificate_pem, *args, **kwargs)
        parsed = _parsed(certificate_pem)
        if parsed is None:
            return
        self.certificate_id = certificate_id(parsed.public_bytes(serialization.Encoding.DER))
        self.arn = f"{self.arn.rpartition('/')[0]}/{self.certificate_id}"
        self.validity_not_before = parsed.not_valid_before_utc.replace(tzinfo=None)
        self.validity_not_after = parsed.not_valid_after_utc.replace(tzinfo=None)

    def create_keys_and_certificate(self: Any, set_as_active: bool) -> tuple[Any, dict[str, str]]:
        ca = _device_ca()
        if ca is None:
            return original_create(self, set_as_active)  # type: ignore[no-any-return]
        certificate_pem, private_key_pem = ca.issue(AWS_IOT_COMMON_NAME)
        private_key = serialization.load_pem_private_key(private_key_pem.encode(), None)
        public_key_pem = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("utf-8")
        )
        certificate = iot_models.FakeCertificate(
            certificate_pem,
            "ACTIVE" if set_as_active else "INACTIVE",
            self.account_id,
            self.region_name,
        )
        self.certificates[certificate.certificate_id] = certificate
        return certificate, {"PublicKey": public_key_pem, "PrivateKey": private_key_pem}

    certificate_class.__init__ = init
    backend.create_keys_and_certificate = create_keys_and_certificate
    backend._tidings_device_ca_fixed = True


apply = apply_iot_device_ca_fix

"""IoT ``AttachPolicy``/``DetachPolicy`` accept any Cognito identity id as a target.

moto 5.2.5 accepts only the identity ids its own cognito-identity issued, and answers any
other with ``ResourceNotFoundException``. AWS IoT accepts a Cognito identity id as a policy
target. The local stack's identity service (``infra/local/identity/``), not moto, issues the
identity ids, so the login could not attach an identity's IoT policy.

The fix wraps ``IoTBackend._get_principal``: a target shaped like an identity id
(``<region>:<uuid>``) is taken as is; any other target is moto's to judge. The identity comes
back as moto's own identities do (``{"IdentityId": ...}``), with ``certificate_id = None``:
moto's ``DeleteCertificate`` asks every principal with a policy for its ``certificate_id``, and
failed with a 500 once any identity had one (AWS deletes the certificate).
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply", "apply_iot_cognito_targets_fix"]

_COGNITO_IDENTITY_ID = r"^[a-z]{2}(-[a-z]+)+-\d:[0-9a-f-]{36}$"


class _Identity(dict[str, str]):
    """A Cognito identity as moto's IoT backend holds one, that is not a certificate."""

    certificate_id = None


def apply_iot_cognito_targets_fix() -> None:
    """IoT ``AttachPolicy``/``DetachPolicy`` accept any Cognito identity id, as AWS does.

    moto 5.2.5 accepts only identity ids its own cognito-identity issued; the local stack's
    identity service issues them instead.
    """
    import re

    from moto.iot import models as iot_models

    backend: Any = iot_models.IoTBackend
    if getattr(backend, "_tidings_fixed", False):
        return
    original = backend._get_principal
    pattern = re.compile(_COGNITO_IDENTITY_ID)

    def get_principal(self: Any, principal_arn: str) -> Any:
        if pattern.match(principal_arn):
            return _Identity(IdentityId=principal_arn)
        return original(self, principal_arn)

    backend._get_principal = get_principal
    backend._tidings_fixed = True


apply = apply_iot_cognito_targets_fix
